"""`edgeres cascade`: not implemented yet (issue #7)."""
import click

from ..options import not_implemented


@click.command("cascade", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def command(args) -> None:
    """Run low resolution first and escalate only unconfident images.

    Not implemented yet (issue #7): exits 1.
    """
    not_implemented("cascade", 7)
