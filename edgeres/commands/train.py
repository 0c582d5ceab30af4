"""`edgeres train`: not implemented yet (issue #3)."""
import click

from ..options import not_implemented


@click.command("train", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def command(args) -> None:
    """Train an RS-Net (parallel training + MRED) or per-resolution baselines.

    Not implemented yet (issue #3): exits 1.
    """
    not_implemented("train", 3)
