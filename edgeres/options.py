"""Option decorators shared by several commands."""
from typing import Callable

import click


def res_option(required: bool = False, help_text: str = "Resolutions in pixels, e.g. 224,192,160,128,96 (any order).") -> Callable:
    return click.option("--res", "res", required=required, default=None, metavar="R1,R2,...", help=help_text)


def data_option(required: bool = False) -> Callable:
    return click.option("--data", default=None, required=required, metavar="NAME|DIR",
                        help="Built-in dataset (fashion-mnist-mini) or an ImageFolder root with train/ and val/.")


def out_option(required: bool = True, help_text: str = "Output directory.") -> Callable:
    return click.option("--out", "out", required=required, type=click.Path(file_okay=False), help=help_text)


def json_option() -> Callable:
    return click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
                        help="Also write the result as JSON to this file.")


def arch_option(required: bool = False, default: str | None = None) -> Callable:
    """--arch in the one grammar of edgeres.arch.ARCH_HELP (torchvision NAME, timm:NAME, module.path:factory)."""
    from edgeres.arch import ARCH_HELP
    return click.option("--arch", required=required, default=default, show_default=default is not None,
                        metavar="NAME|timm:NAME|module:factory", help=ARCH_HELP)


def arch_kwargs_option() -> Callable:
    return click.option("--arch-kwargs", default=None, metavar="JSON",
                        help="Keyword arguments of the architecture's builder as a JSON object, e.g. "
                             "'{\"width_mult\": 0.5}'; recorded in checkpoint.json.")


def _trust_arch(ctx: click.Context, _param, value: bool) -> bool:
    """--trust-arch: checkpoints loaded by this command may import the factory they name (until it ends)."""
    if value:
        from edgeres.arch import trusting_arch_code
        ctx.with_resource(trusting_arch_code())
    return value


def trust_arch_option() -> Callable:
    return click.option("--trust-arch", is_flag=True, expose_value=False, callback=_trust_arch,
                        help="Allow a checkpoint whose arch is a module.path:factory to import that module "
                             "(your code; never imported without this flag).")
