"""`edgeres export`: one verified ONNX graph per resolution (BNs folded), optionally one switchable graph."""
import click

from edgeres.defaults import DEFAULT_OPSET
from edgeres.options import data_option, out_option, res_option, trust_arch_option


@click.command("export")
@click.argument("checkpoint", type=click.Path())  # a missing one gets the one-line checkpoint error
@res_option(help_text="Resolutions to export (default: the trained ones). One between two trained resolutions "
                      "gets interpolated BNs.")
@out_option(help_text="Output directory (new, empty, or a previous export, which is replaced atomically).")
@click.option("--opset", type=int, default=DEFAULT_OPSET, show_default=True,
              help="ONNX opset, 13..20: 17 for TensorRT 8.5+ (JetPack 5/6), 13 for TensorRT 8.2 (JetPack 4.6).")
@click.option("--dynamic-batch", is_flag=True, help="Dynamic batch dimension (default: static batch 1).")
@click.option("--switchable", is_flag=True,
              help="Also export one graph with dynamic H/W, weights stored once and per-resolution BN affine "
                   "tables chosen by a second input `res_index` (index into the trained resolutions, high->low).")
@click.option("--nearest", is_flag=True,
              help="Outside the trained range, use the nearest trained BN instead of failing.")
@click.option("--verify-images", type=click.IntRange(min=1), default=64, show_default=True,
              help="Real images per resolution on which ONNX Runtime must match PyTorch.")
@data_option()
@trust_arch_option()
def command(checkpoint, res, out, opset, dynamic_batch, switchable, nearest, verify_images, data) -> None:
    """Export CHECKPOINT to ONNX: per resolution, the RS-Net with that resolution's BNs folded into the convs.

    Every graph is checked before it counts: onnx.checker, no BatchNormalization node left, and ONNX Runtime
    equal to the PyTorch RS-Net on real images (max abs diff within tolerance, top-1 agreement 100%; LQ-Net
    step activations get a stated looser rule). OUT/export.json lists each graph with its MACs
    (multiply-accumulates), parameters and checks; `edgeres build` reads it.

    \b
    Examples:
      edgeres export runs/rs --out build/rs                       # the trained resolutions
      edgeres export runs/rs --res 28,24,12 --out build/rs --switchable
      edgeres export runs/r18 --res 224,160,96 --opset 13 --out build/r18
    """
    from edgeres.export import export

    manifest = export(checkpoint, out, res, opset=opset, dynamic_batch=dynamic_batch, switchable=switchable,
                      allow_nearest=nearest, verify_images=verify_images, data=data)
    _print_summary(manifest, out)


def _print_summary(manifest: dict, out: str) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{out}/export.json", box=box.SIMPLE_HEAD)
    for column in ("res", "file", "BN", "MACs", "params", "max|diff|", "top-1"):
        table.add_column(column, justify="left" if column in ("file", "BN") else "right",
                         no_wrap=True, min_width=len(column))
    for g in manifest["graphs"]:
        table.add_row(str(g["resolution"]), g["file"], g["bn"], _si(g["macs"]), _si(g["params"]),
                      f"{g['max_abs_diff']:.1e}", f"{100 * g['top1_agreement']:.0f}%")
    console = Console()
    if not console.is_terminal:  # piped/captured: do not cut file names at rich's 80-column default
        console = Console(width=120)
    console.print(table)
    sw = manifest.get("switchable")
    if sw:
        total = sw["folded_bytes_total"]
        versus = f" vs {total / 1e6:.2f} MB for {len(sw['resolutions'])} folded graphs" if total else ""
        console.print(f"switchable: {sw['file']} ({sw['bytes'] / 1e6:.2f} MB{versus}), res_index over "
                      f"{sw['resolutions']}, max abs diff vs folded {sw['max_abs_diff']:.1e}")
        for res, t in sw["latency_ms"].items():
            console.print(f"  {res} px: switchable {t['switchable_ms']:.3f} ms, folded {t['folded_ms']:.3f} ms "
                          "(indicative)")
    quant = manifest.get("quant")
    targets = f"--target lq-{quant.removeprefix('lq:')}" if quant else "--target ort-int8 --target trt-fp16"
    console.print(f"next: edgeres build {out} {targets}")


def _si(n: int) -> str:
    """1234567 -> '1.23M' (MACs, parameters)."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.2f}{suffix}"
    return str(n)
