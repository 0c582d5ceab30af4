"""The one reader of deployable artifacts: rows of a build dir (build.json) or an export dir (export.json).

Bench, eval of ONNX artifacts, cascade and select all read their inputs here. An export dir yields one row per
graph under the target name `onnx-fp32` (the verified, BN-folded graph as exported, before any build step).
Files are resolved inside the manifest's directory (`_io.contained`). Torch-free.
"""
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgeres._io import contained, sha256_file
from edgeres.errors import EdgeresError
from edgeres.manifests._base import read_manifest, require

EXPORT_TARGET = "onnx-fp32"
TORCH_TARGET = "torch-eager"


@dataclass(frozen=True)
class Artifact:
    """One measurable thing at one resolution. `file` is None for the PyTorch eager row."""

    target: str
    resolution: int
    backend: str  # "ort" | "trt" | "torch"
    file: str | None
    macs: int | None = None  # per image, from the manifest (one MAC = 2 FLOPs)
    params: int | None = None
    precision: str = "fp32"
    accuracy: dict | None = None  # {"top1": %, "measured_with": ...} when known
    checkpoint: str | None = None  # checkpoint directory (PyTorch eager rows)
    extra: dict = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("target", "resolution", "backend", "file", "macs", "params",
                                               "precision", "accuracy", "checkpoint")}


def read_inputs(directory: str | os.PathLike) -> tuple[dict[str, Any], list[Artifact]]:
    """(source description, artifacts) from a build dir or an export dir; one-line error otherwise."""
    manifest, artifacts = read_artifacts(directory)
    return _source(manifest, manifest["kind"]), artifacts


def read_artifacts(directory: str | os.PathLike) -> tuple[dict[str, Any], list[Artifact]]:
    """(the manifest as read, its artifacts) from a build dir/build.json or an export dir/export.json."""
    directory = Path(directory)
    if (directory / "build.json").is_file() or directory.name == "build.json":
        manifest = read_manifest(directory, "build")
        _check_export_unchanged(manifest)
        return manifest, _from_build(manifest)
    if (directory / "export.json").is_file() or directory.name == "export.json":
        manifest = read_manifest(directory, "export")
        return manifest, _from_export(manifest)
    raise EdgeresError(f"{directory} has neither build.json nor export.json: pass the output directory of "
                       "`edgeres build` or `edgeres export`")


def _check_export_unchanged(build: dict) -> None:
    """build.json records the sha256 of the export.json it was built from: a re-export since (other graphs,
    maybe another checkpoint) makes its artifacts stale. An export that is not there (a build copied to the
    device alone) cannot be checked."""
    recorded = build.get("export") if isinstance(build.get("export"), dict) else {}
    path, sha = recorded.get("path"), recorded.get("sha256")
    if not (isinstance(path, str) and isinstance(sha, str)):
        return
    export = Path(path) if Path(path).is_absolute() else Path(build["_path"]).parent / path
    if export.is_file() and sha256_file(export) != sha:
        rows = build.get("artifacts") if isinstance(build.get("artifacts"), list) else []
        targets = sorted({r["target"] for r in rows if isinstance(r, dict) and isinstance(r.get("target"), str)})
        again = " ".join(f"--target {t}" for t in targets) or "--target ..."
        out = Path(build["_path"]).parent
        again += "" if out.resolve() == export.parent.resolve() else f" --out {out}"
        raise EdgeresError(f"{build['_path']} is stale: {export} changed after this build (re-exported?): "
                           f"rebuild with edgeres build {export.parent} {again}")


def _source(manifest: dict, kind: str) -> dict[str, Any]:
    path = Path(manifest["_path"])
    return {"kind": kind, "path": str(path), "sha256": sha256_file(path)}


def _from_build(manifest: dict) -> list[Artifact]:
    where, base = manifest["_path"], Path(manifest["_path"]).parent
    rows = []
    for item in require(manifest, "artifacts", list, where):
        file = str(contained(base, require(item, "file", str, where)))
        rows.append(Artifact(target=require(item, "target", str, where),
                             resolution=int(require(item, "resolution", int, where)),
                             backend=str(item.get("backend", "ort")), file=file, macs=item.get("macs"),
                             params=item.get("params"), precision=str(item.get("precision", "fp32")),
                             accuracy=_accuracy(item.get("accuracy"), "build.json")))
    return _with_checkpoint(rows, _checkpoint_of_build(manifest))


def _from_export(manifest: dict) -> list[Artifact]:
    where, base = manifest["_path"], Path(manifest["_path"]).parent
    checkpoint = _checkpoint_dir(manifest)
    metrics = _checkpoint_metrics(checkpoint)
    rows = []
    for graph in require(manifest, "graphs", list, where):
        res = int(require(graph, "resolution", int, where))
        rows.append(Artifact(target=EXPORT_TARGET, resolution=res, backend="ort",
                             file=str(contained(base, require(graph, "file", str, where))), macs=graph.get("macs"),
                             params=graph.get("params"), accuracy=metrics.get(res)))
    return _with_checkpoint(rows, checkpoint)


def _accuracy(value: Any, source: str) -> dict | None:
    if not isinstance(value, dict) or value.get("top1") is None:
        return None
    return {"top1": float(value["top1"]), "measured_with": value.get("measured_with", source)}


def _checkpoint_dir(export: dict) -> str | None:
    """The export's checkpoint directory (absolute, or relative to export.json), if it still exists."""
    path = (export.get("checkpoint") or {}).get("path")
    if not path:
        return None
    resolved = Path(path) if Path(path).is_absolute() else Path(export["_path"]).parent / path
    return str(resolved) if (resolved / "checkpoint.json").is_file() else None


def _checkpoint_of_build(build: dict) -> str | None:
    path = (build.get("export") or {}).get("path")
    if not path:
        return None
    resolved = Path(path) if Path(path).is_absolute() else Path(build["_path"]).parent / path
    try:
        return _checkpoint_dir(read_manifest(resolved, "export"))
    except EdgeresError:
        return None  # the export dir moved: eager rows are then unavailable, ORT rows still work


def _checkpoint_metrics(checkpoint: str | None) -> dict[int, dict]:
    """Top-1 per resolution from checkpoint.json (PyTorch-measured; the graphs agree top-1 by export checks)."""
    if checkpoint is None:
        return {}
    from edgeres.manifests.checkpoint import read_checkpoint_info  # torch-free
    info = read_checkpoint_info(checkpoint)
    return {int(r): {"top1": float(m["top1"]), "measured_with": "checkpoint.json (PyTorch)"}
            for r, m in info.metrics.items() if isinstance(m, dict) and "top1" in m}


def _with_checkpoint(rows: list[Artifact], checkpoint: str | None) -> list[Artifact]:
    return [replace(r, checkpoint=checkpoint) for r in rows]


def torch_rows(artifacts: list[Artifact]) -> list[Artifact]:
    """PyTorch eager rows (the RS-Net switched per resolution), one per resolution, with the checkpoint's own
    (PyTorch-measured) top-1, not a built artifact's."""
    checkpoints = {a.checkpoint for a in artifacts if a.checkpoint}
    if not checkpoints:
        raise EdgeresError("the PyTorch eager backend needs the checkpoint the graphs came from, and the "
                           "manifest's checkpoint path does not exist here: drop --backend torch")
    checkpoint = sorted(checkpoints)[0]
    metrics = _checkpoint_metrics(checkpoint)
    by_res = {a.resolution: a for a in artifacts}
    return [Artifact(TORCH_TARGET, r, "torch", None, a.macs, a.params, "fp32", metrics.get(r), checkpoint)
            for r, a in sorted(by_res.items(), reverse=True)]


def select(artifacts: list[Artifact], targets=None, resolutions=None) -> list[Artifact]:
    """Keep the requested targets/resolutions; an unknown name lists the valid ones."""
    for wanted, have, what in ((targets, {a.target for a in artifacts}, "target"),
                               (resolutions, {a.resolution for a in artifacts}, "resolution")):
        unknown = sorted(set(wanted or ()) - have)
        if unknown:
            raise EdgeresError(f"no {what} {', '.join(map(str, unknown))} in the manifest; available: "
                               f"{', '.join(map(str, sorted(have)))}")
    return [a for a in artifacts if (not targets or a.target in targets)
            and (not resolutions or a.resolution in resolutions)]
