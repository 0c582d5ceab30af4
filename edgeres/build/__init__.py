"""Build deployable precision variants from export.json and record them, with measured accuracy, in build.json.

    from edgeres.build import build
    manifest = build("build/rsnet", "build/rsnet-built", ["ort-int8", "int8-qdq", "fp16"], calib_images=256)

Targets are one table (`targets.py`); every precision decision is made here on the host, in ONNX that
ONNX Runtime can run and measure; TensorRT (`trt-*`) only turns those graphs into engines on the device.
No torch: this stage runs on the Jetson too.
"""
import os
import tempfile
from pathlib import Path
from typing import Sequence

from edgeres._io import check_out_dir, relative_to, sha256_file, staged_dir
from edgeres.build import staging
from edgeres.build.targets import (
    TARGETS,
    BuildContext,
    BuildOutput,
    CalibSettings,
    GraphEntry,
    Target,
    get_target,
    resolve_builder,
    target_names,
    with_prerequisites,
)
from edgeres.build.trt_rules import check_built
from edgeres.data import open_images
from edgeres.defaults import BUILD_CALIB_IMAGES, BUILD_EVAL_IMAGES
from edgeres.errors import EdgeresError, EdgeresUsageError
from edgeres.evaluate import check_channels, check_classes
from edgeres.manifests.build import read_build, write_build
from edgeres.manifests.export import ExportManifest, read_export
from edgeres.resolutions import parse_resolutions

__all__ = ["build", "TARGETS", "BuildOutput", "BuildContext", "CalibSettings", "GraphEntry", "Target",
           "get_target", "target_names"]

MARKERS = ("build.json", "export.json")  # a previous build, or the export directory itself
CALIBRATED = ("ort-int8", "int8-qdq")  # targets that calibrate on images (the others reuse their graphs)


def build(export_dir: str | os.PathLike, out: str | os.PathLike, targets: Sequence[str], *, data: str | None = None,
          calib_images: int = BUILD_CALIB_IMAGES, calib_method: str = "minmax",
          eval_images: int | None = BUILD_EVAL_IMAGES,
          calib_data: str | None = None, calib_dir: str | os.PathLike | None = None,
          resolutions: Sequence[int] | str | None = None, recalibrate: bool = False,
          evaluate: bool = True, options: dict | None = None) -> dict:
    """Build `targets` for every graph (or `resolutions`) of export.json into `out`; write out/build.json.

    data: eval data (default: the export's); calib_data: calibration images (default: the export's data,
    train split); eval_images: evaluate on N val images, each class in its share (data.SUBSET_RULE; None:
    all; each row records its 95% interval); evaluate=False skips top-1.
    Returns the build manifest (dict). A target's prerequisites (e.g. int8-qdq for trt-int8) are built too.
    """
    if not targets:
        raise EdgeresUsageError(f"no build target given: choose from {', '.join(target_names())}")
    order = with_prerequisites(list(targets))  # unknown names fail here, before any work
    check_extras(order)
    export = read_export(export_dir)
    graphs = graph_entries(export, resolutions)
    out = check_out_dir(out, MARKERS, "build")
    calib = CalibSettings(calib_method, calib_images, calib_data, Path(calib_dir) if calib_dir else None)
    check_calibration_data(order, calib, export, graphs)
    images = open_eval_images(export, data, graphs) if evaluate else None
    with staged_dir(out, MARKERS, "build", keep=None) as root, tempfile.TemporaryDirectory(prefix="edgeres-") as tmp:
        stage, calib = staging.begin(root, out, calib)
        with staging.errors_name_external_calib(stage):
            base = BuildContext(export, export.directory, root, "", calib, data,
                                {**(options or {}), "eval_images": eval_images})
            preflight(base, graphs, recalibrate)
            if any(t.name in CALIBRATED for t in order):
                from edgeres.build.ort import prepare_int8
                prepare_int8(base, graphs, Path(tmp))
            rows = [row_for(t, graph, run_builder(t, base, graph), images, base, stage)
                    for t in order for graph in graphs]
            body = manifest_body(export, data, kept_rows(out, export.path, rows) + rows, out)
            write_build(root / "build.json", body)
            staging.publish(stage)
    return body


def graph_entries(export: ExportManifest, resolutions=None) -> list[GraphEntry]:
    """export.json graphs (all, or the requested resolutions), each checked against its recorded sha256."""
    where = f"export manifest {export.path}"
    records = list(export.graphs)
    if resolutions is not None:  # "" is refused by parse_resolutions, not taken for "all"
        wanted = parse_resolutions(resolutions)
        have = {g.resolution for g in records}
        missing = [r for r in wanted if r not in have]
        if missing:
            raise EdgeresError(f"{where} has no graph at {missing} px (it has {sorted(have, reverse=True)}): "
                               f"export those resolutions first")
        records = [g for g in records if g.resolution in wanted]
    for record in records:
        record.check_unchanged(where)
    return [GraphEntry(g.resolution, g.file, g.sha256, g.input.name, g.input.shape, g.output.name, g.macs,
                       g.params, g.raw) for g in records]


def check_extras(order: list[Target]) -> None:
    """A trt target without TensorRT fails now, in one line, not after the ONNX targets were built."""
    if any(t.backend == "trt" for t in order):
        from edgeres.build.trt import require_tensorrt
        require_tensorrt(next(t.name for t in order if t.backend == "trt"))


def check_calibration_data(order: list[Target], calib: CalibSettings, export: ExportManifest,
                           graphs: list[GraphEntry]) -> None:
    """Calibration images that the graphs can take, checked before any target is built."""
    if any(t.name in CALIBRATED for t in order):
        images = open_images(calib.data or export.data, "train")
        check_channels(images, graph_channels(graphs), f"the graphs of {export.path}", "--calib-data")


def graph_channels(graphs: list[GraphEntry]) -> int | None:
    """The image channels the graphs take (NCHW input), None when the shape does not say."""
    channels = {g.input_shape[1] for g in graphs if len(g.input_shape) == 4 and isinstance(g.input_shape[1], int)}
    return channels.pop() if len(channels) == 1 else None


def preflight(ctx: BuildContext, graphs: list[GraphEntry], recalibrate: bool) -> None:
    """Stale calibration caches are dropped when asked (`recalibrate`), before any builder runs; `ctx.out` is
    the staging copy, so the previous build keeps its caches if this one fails."""
    if recalibrate:
        from edgeres.build.calib import cache_file
        from edgeres.build.ort import calib_dir
        for graph in graphs:
            cache_file(calib_dir(ctx), graph, ctx.calib.method).unlink(missing_ok=True)


def run_builder(target: Target, base: BuildContext, graph: GraphEntry) -> BuildOutput:
    ctx = BuildContext(base.export, base.export_dir, base.out, target.name, base.calib, base.data, base.options,
                       base.built, base.prepared)
    artifact = resolve_builder(target)(ctx, graph)
    check_built(target.name, artifact.file, base.options)  # graphs meant for TensorRT must pass its rules
    base.built[(target.name, graph.resolution)] = artifact
    return artifact


def open_eval_images(export: ExportManifest, data: str | None, graphs: list[GraphEntry]):
    images = open_images(data or export.data, "val")
    check_classes(images, len(export.classes), export.path)
    check_channels(images, graph_channels(graphs), f"the graphs of {export.path}")
    return images


def row_for(target: Target, graph: GraphEntry, artifact: BuildOutput, images, ctx: BuildContext,
            stage: staging.Stage) -> dict:
    """One build.json artifact row; ORT artifacts are evaluated here with ONNX Runtime. Paths are recorded
    relative to the build directory (as they will be after the staging copy is swapped in)."""
    accuracy, note = artifact.accuracy, artifact.accuracy_note
    if accuracy is None and target.backend == "ort" and images is not None:
        from edgeres.build.measure import ort_accuracy_json
        # 7-bit weights cannot saturate ORT's fast INT8 kernels, which then give the exact ones' logits, faster
        exact = artifact.extra.get("weight_bits", 8) > 7
        accuracy = ort_accuracy_json(graph, artifact.file, images, ctx.export, ctx.options.get("eval_images"), exact)
    elif accuracy is None and note is None:
        note = "not evaluated (evaluate=False)" if images is None else "TensorRT engine: measured only on the device"
    return {"target": target.name, "resolution": graph.resolution, "file": stage.recorded(artifact.file),
            "sha256": sha256_file(artifact.file), "bytes": artifact.file.stat().st_size,
            "backend": target.backend, "precision": artifact.precision, "macs": graph.macs, "params": graph.params,
            "input": graph.raw["input"], "output": graph.raw["output"],
            "calibration": recorded_calibration(artifact.calibration, stage), "accuracy": accuracy,
            "accuracy_note": note, **artifact.extra}


def recorded_calibration(calibration: dict | None, stage: staging.Stage) -> dict | None:
    """The calibration block with its cache paths as build.json records them (relative, final)."""
    if not calibration:
        return calibration
    return {**calibration, **{k: stage.recorded(calibration[k]) for k in ("cache", "trt_cache") if calibration.get(k)}}


def kept_rows(out: Path, export_path: Path, rows: list[dict]) -> list[dict]:
    """Rows of an earlier build.json in `out` (same export, file unchanged) that this build did not redo,
    so `--target int8-qdq` on the host and `--target trt-int8` on the device end up in one manifest."""
    if not (out / "build.json").exists():
        return []
    old = read_build(out)
    if old.export["sha256"] != sha256_file(export_path):
        return []
    redone = {(r["target"], r["resolution"]) for r in rows}
    return [a.raw for a in old.artifacts if (a.target, a.resolution) not in redone
            and a.file.is_file() and sha256_file(a.file) == a.sha256]


def manifest_body(export: ExportManifest, data: str | None, rows: list[dict], out: Path) -> dict:
    """build.json: carries forward what bench, eval, select and the cascade need (no walking back); paths are
    relative to the build directory, so a build copied together with its export keeps working."""
    checkpoint = export.checkpoint_dir()
    carried = {**export.checkpoint, "path": None if checkpoint is None else relative_to(checkpoint, out)}
    return {"export": {"path": relative_to(export.path, out), "sha256": sha256_file(export.path)},
            "checkpoint": carried, "data": data or export.data, "classes": list(export.classes),
            **export.preprocessing.to_json(), "artifacts": rows}
