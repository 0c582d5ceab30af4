"""`edgeres build`: not implemented yet (issue #5)."""
import click

from ..options import not_implemented


@click.command("build", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def command(args) -> None:
    """Build deployable variants (ORT INT8/FP16, LQ-Net low-bit, TensorRT engines) from export.json.

    Not implemented yet (issue #5): exits 1.
    """
    not_implemented("build", 5)
