"""`edgeres select`: not implemented yet (issue #7)."""
import click

from ..options import not_implemented


@click.command("select", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def command(args) -> None:
    """Pick the most accurate deployment under a latency or MACs budget.

    Not implemented yet (issue #7): exits 1.
    """
    not_implemented("select", 7)
