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
