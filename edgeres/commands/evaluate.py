"""`edgeres eval`: top-1/top-5 per resolution of a checkpoint, or of ONNX artifacts (export/build outputs)."""
import click

from edgeres.options import data_option, json_option, res_option, trust_arch_option


@click.command("eval")
@click.argument("checkpoint", type=click.Path(exists=True))
@data_option()
@res_option(help_text="Resolutions to test (default: the trained ones); one between two trained ones uses "
                      "interpolated BNs.")
@click.option("--split", type=click.Choice(["val", "train"]), default="val", show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Evaluate N images only, each class in its share (seed 0).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--nearest", is_flag=True, help="Outside the trained range, use the nearest trained BN instead of failing.")
@click.option("--target", "targets", multiple=True, help="Build targets to evaluate (repeatable; default: every "
              "artifact this machine can run). TensorRT targets need the device the engines were built on.")
@json_option()
@trust_arch_option()
def command(checkpoint, data, res, split, limit, batch_size, nearest, targets, json_path) -> None:
    """Evaluate CHECKPOINT (a directory from train/import) at each resolution.

    CHECKPOINT may also be an export or build directory (export.json / build.json) or one .onnx they list:
    then every ONNX graph is evaluated with ONNX Runtime (no torch needed).

    \b
    Examples:
      edgeres eval runs/rs                       # its own data, its trained resolutions
      edgeres eval runs/rs --res 28,22,12 --json runs/rs/eval.json
      edgeres eval build/rs --limit 500          # every ONNX artifact in build/rs/build.json
      edgeres eval build/rs --target trt-fp16    # on the Jetson: the TensorRT engines
    """
    from edgeres._io import check_result_file, write_json
    from edgeres.evaluate import evaluate, evaluate_onnx, is_onnx_source, results_json
    from edgeres.report.tables import print_accuracy_table

    if json_path:
        check_result_file(json_path, "eval", "--json")  # never over a manifest or the user's file
    if is_onnx_source(checkpoint):
        results = evaluate_onnx(checkpoint, data=data, resolutions=res, split=split, batch_size=batch_size,
                                limit=limit, targets=targets or None)
    else:
        results = evaluate(checkpoint, data=data, resolutions=res, split=split, batch_size=batch_size, limit=limit,
                           allow_nearest=nearest)
    print_accuracy_table(results, title=f"{checkpoint} ({split})")
    if json_path:
        write_json(json_path, results_json(results, checkpoint, split, limit))
