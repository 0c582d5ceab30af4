"""`edgeres build`: precision variants (INT8 QDQ, FP16, LQ-Net low-bit, TensorRT engines) from export.json."""
import re

import click

from edgeres.defaults import BUILD_CALIB_IMAGES, BUILD_EVAL_IMAGES
from edgeres.options import CountOrAll, data_option, positive_ints, res_option


def _targets_help() -> str:
    from edgeres.build.targets import LQ_EXAMPLES, TARGETS
    lines = [f"  {t.name:<10} {t.description}" for t in TARGETS.values()]
    lines.append(f"  lq-w<K>a<J> LQ-Net learned K-bit weights / J-bit activations ({', '.join(LQ_EXAMPLES)})")
    lines.append("  trt-lq-w<K>a<J> TensorRT engine from that LQ graph")
    return "\n".join(lines)


@click.command("build", epilog="\b\nTargets:\n" + _targets_help())
@click.argument("export_dir", type=click.Path(exists=True))
@click.option("--target", "targets", multiple=True, required=True, metavar="NAME",
              help="Build target (repeatable); see the list below.")
@click.option("--calib-data", default=None, metavar="NAME|DIR",
              help="Calibration images (train split); default: the export's data.")
@click.option("--calib-images", type=click.IntRange(min=1), default=BUILD_CALIB_IMAGES, show_default=True,
              help="Calibration images per resolution.")
@click.option("--calib-method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax",
              show_default=True)
@click.option("--calib-dir", type=click.Path(file_okay=False), default=None,
              help="Calibration cache directory (default: OUT/calib).")
@click.option("--recalibrate", is_flag=True, help="Replace calibration caches that do not match instead of failing.")
@res_option(help_text="Only these exported resolutions (default: all in export.json).")
@click.option("--out", "out", type=click.Path(file_okay=False), default=None,
              help="Output directory (default: EXPORT_DIR, so build.json sits beside export.json).")
@data_option()
@click.option("--eval-images", type=CountOrAll(), default=str(BUILD_EVAL_IMAGES), show_default=True, metavar="N|all",
              help="Measure top-1 on N val images, each class in its share (seed 0; build.json records the 95% "
                   "interval), or on all of them.")
@click.option("--no-eval", is_flag=True, help="Skip the accuracy measurement.")
@click.option("--trt-version", default=None, metavar="X.Y[.Z]",
              help="Check TensorRT-bound graphs against this TensorRT (default: the installed one, else 8.5/8.6/10.x).")
@click.option("--profile-batches", default=None, metavar="B,B,...",
              help="trt-* engines of dynamic-batch graphs: the batches to profile (min/opt/max; default 1,8,64).")
@click.option("--trt-int8-mix", type=click.Choice(["fp16", "fp32"]), default=None,
              help="trt-int8 on TensorRT 10.x: layers outside Q/DQ in fp32 (strongly typed, the default) or fp16.")
@click.option("--workspace-mib", type=click.IntRange(min=1), default=None, help="TensorRT builder workspace (MiB).")
@click.option("--int8-full-range", is_flag=True,
              help="ort-int8 with 8-bit weights (default 7-bit: exact on x86 CPUs without VNNI too).")
def command(export_dir, targets, calib_data, calib_images, calib_method, calib_dir, recalibrate, res, out, data,
            eval_images, no_eval, trt_version, profile_batches, trt_int8_mix, workspace_mib, int8_full_range) -> None:
    """Build deployable variants of EXPORT_DIR's graphs and record them, with ORT top-1, in OUT/build.json.

    \b
    Examples:
      edgeres build build/rsnet --target ort-int8 --target int8-qdq --eval-images all
      edgeres build build/rsnet --target trt-fp16 --target trt-int8     # on the Jetson
    """
    from edgeres.build import build

    out = out or export_dir
    manifest = build(export_dir, out, list(targets), data=data, calib_images=calib_images,
                     calib_method=calib_method, eval_images=eval_images, calib_data=calib_data, calib_dir=calib_dir,
                     resolutions=res, recalibrate=recalibrate, evaluate=not no_eval,
                     options={**trt_options(trt_version, profile_batches, trt_int8_mix, workspace_mib),
                              **({"int8_full_range": True} if int8_full_range else {})})
    print_build_table(manifest, out)
    click.echo(f"next: edgeres bench {out} --device cpu", err=True)


def trt_options(trt_version, profile_batches, trt_int8_mix, workspace_mib) -> dict:
    """build()'s `options` from the TensorRT flags; a malformed value is a usage error (exit 2)."""
    options = {"trt_int8_mix": trt_int8_mix, "workspace_mib": workspace_mib}
    if trt_version is not None:
        if not re.fullmatch(r"\d+\.\d+(\.\d+){0,2}", trt_version):
            raise click.BadParameter(f"{trt_version!r} is not a TensorRT version like 8.6 or 10.3.0",
                                     param_hint="--trt-version")
        options["trt_version"] = trt_version
    if profile_batches is not None:
        options["profile_batches"] = list(positive_ints(profile_batches, "--profile-batches"))
    return {k: v for k, v in options.items() if v is not None}


def print_build_table(manifest: dict, out: str) -> None:
    from rich.console import Console
    from rich.table import Table
    table = Table(title=f"{out}/build.json")
    for column in ("target", "res", "precision", "MB", "top-1 %", "top-5 %", "file"):
        table.add_column(column, justify="left" if column in ("target", "precision", "file") else "right")
    for row in manifest["artifacts"]:
        acc = row["accuracy"] or {}
        top1 = f"{acc['top1']:.2f}" if acc else (row.get("accuracy_note") or "-")[:28]
        table.add_row(row["target"], str(row["resolution"]), row["precision"], f"{row['bytes'] / 1e6:.2f}", top1,
                      f"{acc['top5']:.2f}" if acc else "-", row["file"])
    Console().print(table)
