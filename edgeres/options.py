"""Option decorators and value types shared by several commands."""
import math
from typing import Callable

import click


class FiniteFloat(click.ParamType):
    """A float that is a number (not nan/inf), optionally bounded: click.FloatRange lets nan through, since
    every comparison with nan is false."""

    name = "float"

    def __init__(self, min: float | None = None, min_open: bool = False, max: float | None = None):
        self.min, self.min_open, self.max = min, min_open, max

    def convert(self, value, param, ctx):
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        low_bad = self.min is not None and (number <= self.min if self.min_open else number < self.min)
        if low_bad or (self.max is not None and number > self.max):
            self.fail(f"{number:g} is not in {self._range()}", param, ctx)
        return number

    def _range(self) -> str:
        low = "-inf" if self.min is None else f"{self.min:g}"
        high = "inf" if self.max is None else f"{self.max:g}"
        return f"{'(' if self.min_open or self.min is None else '['}{low}, {high}]"


class CountOrAll(click.ParamType):
    """A positive image count, or `all` (None: no limit)."""

    name = "N|all"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, int) or value == "all":
            return None if value == "all" else value
        try:
            count = int(value)
        except ValueError:
            self.fail(f"{value!r} is neither a count nor 'all'", param, ctx)
        if count < 1:
            self.fail(f"{count} is not >= 1 (or pass 'all')", param, ctx)
        return count


def positive_ints(value: str, what: str) -> tuple[int, ...]:
    """'1,8,64' -> (1, 8, 64) for a list option; anything else is a usage error (exit 2) naming `what`."""
    try:
        numbers = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{what} must be comma-separated integers, got {value!r}") from None
    if not numbers or min(numbers) < 1:
        raise click.BadParameter(f"{what} needs integers >= 1, e.g. 1,8; got {value!r}")
    return numbers


def _non_empty(_ctx, param, value):
    """--res "" would otherwise mean "the default" without a word: refuse it."""
    if value is not None and not str(value).strip(" ,"):
        raise click.BadParameter("is empty: pass resolutions such as 224,128, or leave the option out for the "
                                 "default", param=param)
    return value


def res_option(required: bool = False, help_text: str = "Resolutions in pixels, e.g. 224,192,160,128,96 (any order).") -> Callable:
    return click.option("--res", "res", required=required, default=None, metavar="R1,R2,...", help=help_text,
                        callback=_non_empty)


def data_option(required: bool = False) -> Callable:
    return click.option("--data", default=None, required=required, metavar="NAME|DIR", callback=_non_empty_data,
                        help="Built-in dataset (fashion-mnist-mini) or an ImageFolder root with train/ and val/.")


def _non_empty_data(_ctx, param, value):
    if value is not None and not str(value).strip():
        raise click.BadParameter("is empty: pass a built-in dataset name or an ImageFolder directory", param=param)
    return value


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
