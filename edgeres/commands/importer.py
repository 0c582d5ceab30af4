"""`edgeres import`: not implemented yet (issue #3)."""
import click

from ..options import not_implemented


@click.command("import", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def command(args) -> None:
    """Turn a torchvision BN CNN into an RS-Net, with per-resolution BN recalibration.

    Not implemented yet (issue #3): exits 1.
    """
    not_implemented("import", 3)
