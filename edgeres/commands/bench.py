"""`edgeres bench`: not implemented yet (issue #6)."""
import click

from ..options import not_implemented


@click.command("bench", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def command(args) -> None:
    """Measure latency (p50/p90/p99), throughput and memory per resolution and precision.

    Not implemented yet (issue #6): exits 1.
    """
    not_implemented("bench", 6)
