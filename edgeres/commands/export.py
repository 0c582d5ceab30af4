"""`edgeres export`: not implemented yet (issue #4)."""
import click

from ..options import not_implemented


@click.command("export", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def command(args) -> None:
    """Export one ONNX graph per resolution with the private BNs folded, verified against PyTorch.

    Not implemented yet (issue #4): exits 1.
    """
    not_implemented("export", 4)
