"""`edgeres report`: not implemented yet (issue #6)."""
import click

from ..options import not_implemented


@click.command("report", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def command(args) -> None:
    """Turn bench reports into tables and latency-vs-MACs / accuracy-vs-latency plots.

    Not implemented yet (issue #6): exits 1.
    """
    not_implemented("report", 6)
