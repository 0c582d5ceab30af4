"""Build deployable precision variants from export.json and record them, with measured accuracy, in build.json.

    from edgeres.build import build
    manifest = build("build/rsnet", "build/rsnet-built", ["ort-int8", "int8-qdq", "fp16"], calib_images=512)

Targets are one table (`targets.py`); every precision decision is made here on the host, in ONNX that
ONNX Runtime can run and measure; TensorRT (`trt-*`) only turns those graphs into engines on the device.
No torch: this stage runs on the Jetson too.
"""
import os
from pathlib import Path
from typing import Sequence

from edgeres._io import contained, sha256_file
from edgeres.build.targets import (
    TARGETS,
    Artifact,
    BuildContext,
    CalibSettings,
    GraphEntry,
    Target,
    get_target,
    resolve_builder,
    target_names,
    with_prerequisites,
)
from edgeres.data import open_images
from edgeres.errors import EdgeresError
from edgeres.evaluate import check_classes
from edgeres.manifests._base import read_manifest, require, write_manifest
from edgeres.resolutions import parse_resolutions

__all__ = ["build", "TARGETS", "Artifact", "BuildContext", "CalibSettings", "GraphEntry", "Target",
           "get_target", "target_names"]


def build(export_dir: str | os.PathLike, out: str | os.PathLike, targets: Sequence[str], data: str | None = None,
          calib_images: int = 512, calib_method: str = "minmax", eval_images: int | None = None,
          calib_data: str | None = None, calib_dir: str | os.PathLike | None = None,
          resolutions: Sequence[int] | str | None = None, recalibrate: bool = False,
          evaluate: bool = True, options: dict | None = None) -> dict:
    """Build `targets` for every graph (or `resolutions`) of export.json into `out`; write out/build.json.

    data: eval data (default: the export's); calib_data: calibration images (default: the export's data,
    train split); eval_images: evaluate on the first N val images (None: all); evaluate=False skips top-1.
    Returns the build manifest (dict). A target's prerequisites (e.g. int8-qdq for trt-int8) are built too.
    """
    if not targets:
        raise EdgeresError(f"no build target given: choose from {', '.join(target_names())}")
    order = with_prerequisites(list(targets))  # unknown names fail here, before any work
    check_extras(order)
    export = read_manifest(export_dir, "export")
    export_path = Path(export["_path"])
    graphs = graph_entries(export, export_path.parent, resolutions)
    calib = CalibSettings(calib_method, calib_images, calib_data, Path(calib_dir) if calib_dir else None)
    base = BuildContext(export, export_path.parent, Path(out), "", calib, data,
                        {**(options or {}), "eval_images": eval_images})
    preflight(base, graphs, recalibrate)
    images = open_eval_images(export, data) if evaluate else None
    rows = [row_for(t, graph, run_builder(t, base, graph), images, base)
            for t in order for graph in graphs]
    body = manifest_body(export, export_path, data, kept_rows(Path(out), export_path, rows) + rows)
    write_manifest(Path(out) / "build.json", "build", body)
    return body


def graph_entries(export: dict, export_dir: Path, resolutions=None) -> list[GraphEntry]:
    """export.json graphs (all, or the requested resolutions), each checked against its recorded sha256."""
    where = f"export manifest {export['_path']}"
    graphs = [graph_entry(g, export_dir, where) for g in require(export, "graphs", list, where)]
    if resolutions:
        wanted = parse_resolutions(resolutions)
        have = {g.resolution for g in graphs}
        missing = [r for r in wanted if r not in have]
        if missing:
            raise EdgeresError(f"{where} has no graph at {missing} px (it has {sorted(have, reverse=True)}): "
                               f"export those resolutions first")
        graphs = [g for g in graphs if g.resolution in wanted]
    return graphs


def graph_entry(raw: dict, export_dir: Path, where: str) -> GraphEntry:
    file = contained(export_dir, require(raw, "file", str, where))
    sha = require(raw, "sha256", str, where)
    if not file.exists():
        raise EdgeresError(f"{where}: graph {file} is missing: re-run edgeres export")
    if sha256_file(file) != sha:
        raise EdgeresError(f"{where}: {file.name} changed since export (sha256 differs): re-run edgeres export")
    io_in, io_out = require(raw, "input", dict, where), require(raw, "output", dict, where)
    return GraphEntry(require(raw, "resolution", int, where), file, sha, io_in["name"], tuple(io_in["shape"]),
                      io_out["name"], raw.get("macs"), raw.get("params"), raw)


def check_extras(order: list[Target]) -> None:
    """A trt target without TensorRT fails now, in one line, not after the ONNX targets were built."""
    if any(t.backend == "trt" for t in order):
        from edgeres.build.trt import require_tensorrt
        require_tensorrt(next(t.name for t in order if t.backend == "trt"))


def preflight(ctx: BuildContext, graphs: list[GraphEntry], recalibrate: bool) -> None:
    """Stale calibration caches are dropped when asked (`recalibrate`), before any builder runs."""
    if recalibrate:
        from edgeres.build.calib import cache_file
        from edgeres.build.ort import calib_dir
        for graph in graphs:
            cache_file(calib_dir(ctx), graph, ctx.calib.method).unlink(missing_ok=True)


def run_builder(target: Target, base: BuildContext, graph: GraphEntry) -> Artifact:
    ctx = BuildContext(base.export, base.export_dir, base.out, target.name, base.calib, base.data, base.options,
                       base.built)
    artifact = resolve_builder(target)(ctx, graph)
    base.built[(target.name, graph.resolution)] = artifact
    return artifact


def open_eval_images(export: dict, data: str | None):
    images = open_images(data or export["data"], "val")
    check_classes(images, len(export["classes"]), export["_path"])
    return images


def row_for(target: Target, graph: GraphEntry, artifact: Artifact, images, ctx: BuildContext) -> dict:
    """One build.json artifact row; ORT artifacts are evaluated here with ONNX Runtime."""
    accuracy, note = artifact.accuracy, artifact.accuracy_note
    if accuracy is None and target.backend == "ort" and images is not None:
        from edgeres.build.measure import accuracy_json
        from edgeres.runtimes.ort import OrtRunner
        # spinning off: 0.57x the time on a shared 2-core box (paired, ResNet18 INT8 at 224 px)
        accuracy = accuracy_json(graph, OrtRunner(artifact.file, spinning=False).infer, images, ctx.export,
                                 ctx.options.get("eval_images"), "onnxruntime-cpu")
    elif accuracy is None and note is None:
        note = "not evaluated (evaluate=False)" if images is None else "TensorRT engine: measured only on the device"
    return {"target": target.name, "resolution": graph.resolution, "file": relative(artifact.file, ctx.out),
            "sha256": sha256_file(artifact.file), "bytes": artifact.file.stat().st_size,
            "backend": target.backend, "precision": artifact.precision, "macs": graph.macs, "params": graph.params,
            "input": graph.raw["input"], "output": graph.raw["output"],
            "calibration": artifact.calibration, "accuracy": accuracy, "accuracy_note": note, **artifact.extra}


def kept_rows(out: Path, export_path: Path, rows: list[dict]) -> list[dict]:
    """Rows of an earlier build.json in `out` (same export, file unchanged) that this build did not redo,
    so `--target int8-qdq` on the host and `--target trt-int8` on the device end up in one manifest."""
    if not (out / "build.json").exists():
        return []
    old = read_manifest(out, "build")
    if old["export"]["sha256"] != sha256_file(export_path):
        return []
    redone = {(r["target"], r["resolution"]) for r in rows}
    return [r for r in old["artifacts"] if (r["target"], r["resolution"]) not in redone
            and (out / r["file"]).is_file() and sha256_file(out / r["file"]) == r["sha256"]]


def relative(path: Path, base: Path) -> str:
    """Manifest paths are relative to the manifest's directory when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path(base).resolve()))
    except ValueError:
        return str(path)


def manifest_body(export: dict, export_path: Path, data: str | None, rows: list[dict]) -> dict:
    return {"export": {"path": str(export_path.resolve()), "sha256": sha256_file(export_path)},
            "data": data or export["data"], "classes": export["classes"], "normalization": export["normalization"],
            "eval_crop_ratio": export["eval_crop_ratio"], "artifacts": rows}
