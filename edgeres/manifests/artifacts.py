"""The one reader of deployable artifacts: rows of a build dir (build.json) or an export dir (export.json).

Bench, eval, cascade and select all read their inputs here, through the typed readers of build.json and
export.json; neither walks back further (build.json carries the checkpoint reference and its metrics). An export
dir yields one row per graph under the target name `onnx-fp32` (the verified, BN-folded graph as exported,
before any build step). Torch-free.
"""
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeres._io import sha256_file
from edgeres.errors import EdgeresError
from edgeres.manifests.build import BuildManifest, read_build
from edgeres.manifests.export import ExportManifest, read_export

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


Manifest = BuildManifest | ExportManifest


def read_inputs(directory: str | os.PathLike) -> tuple[dict[str, Any], list[Artifact]]:
    """(source description, artifacts) from a build dir or an export dir; one-line error otherwise."""
    manifest, artifacts = read_artifacts(directory)
    return source_of(manifest), artifacts


def source_of(manifest: "Manifest") -> dict[str, Any]:
    """What a bench report records about its input manifest."""
    return {"kind": manifest.kind, "path": str(manifest.path), "sha256": sha256_file(manifest.path)}


def read_manifest_of(directory: str | os.PathLike) -> Manifest:
    """The typed build.json or export.json of a directory (or the file itself)."""
    directory = Path(directory)
    if (directory / "build.json").is_file() or directory.name == "build.json":
        manifest = read_build(directory)
        _check_export_unchanged(manifest)
        return manifest
    if (directory / "export.json").is_file() or directory.name == "export.json":
        return read_export(directory)
    raise EdgeresError(f"{directory} has neither build.json nor export.json: pass the output directory of "
                       "`edgeres build` or `edgeres export`")


def read_artifacts(directory: str | os.PathLike) -> tuple[Manifest, list[Artifact]]:
    """(the typed manifest, its artifacts) from a build dir/build.json or an export dir/export.json."""
    manifest = read_manifest_of(directory)
    rows = _from_build(manifest) if manifest.kind == "build" else _from_export(manifest)
    return manifest, rows


def _check_export_unchanged(build: BuildManifest) -> None:
    """build.json records the sha256 of the export.json it was built from: a re-export since (other graphs,
    maybe another checkpoint) makes its artifacts stale. An export that is not there (a build copied to the
    device alone) cannot be checked."""
    path, sha = build.export.get("path"), build.export.get("sha256")
    if not isinstance(path, str):
        return
    export = Path(path) if Path(path).is_absolute() else build.directory / path
    if export.is_file() and sha256_file(export) != sha:
        again = " ".join(f"--target {t}" for t in sorted({a.target for a in build.artifacts})) or "--target ..."
        again += "" if build.directory.resolve() == export.parent.resolve() else f" --out {build.directory}"
        raise EdgeresError(f"{build.path} is stale: {export} changed after this build (re-exported?): "
                           f"rebuild with edgeres build {export.parent} {again}")


def _from_build(manifest: BuildManifest) -> list[Artifact]:
    checkpoint = manifest.checkpoint_dir()
    return [Artifact(a.target, a.resolution, a.backend, str(a.file), a.macs, a.params, a.precision,
                     _accuracy(a.accuracy, "build.json"), None if checkpoint is None else str(checkpoint))
            for a in manifest.artifacts]


def _from_export(manifest: ExportManifest) -> list[Artifact]:
    checkpoint = manifest.checkpoint_dir()
    metrics = checkpoint_metrics(manifest.checkpoint)
    return [Artifact(EXPORT_TARGET, g.resolution, "ort", str(g.file), g.macs, g.params,
                     accuracy=metrics.get(g.resolution), checkpoint=None if checkpoint is None else str(checkpoint))
            for g in manifest.graphs]


def _accuracy(value: dict | None, source: str) -> dict | None:
    if not value or value.get("top1") is None:
        return None
    kept = {"top1": float(value["top1"]), "measured_with": value.get("measured_with", source)}
    interval, count = value.get("top1_ci95"), value.get("count")
    if isinstance(interval, list) and len(interval) == 2 and all(isinstance(v, (int, float)) for v in interval):
        kept["top1_ci95"] = [float(v) for v in interval]  # how many images pin the top-1 down (build's Wilson)
    if isinstance(count, int) and count > 0:
        kept["count"] = count
    return kept


def checkpoint_metrics(checkpoint: dict[str, Any]) -> dict[int, dict]:
    """Top-1 per resolution that export.json/build.json carried from checkpoint.json (PyTorch-measured; the
    graphs agree top-1 by export's checks). Malformed entries are skipped: they only label rows."""
    metrics = checkpoint.get("metrics") if isinstance(checkpoint.get("metrics"), dict) else {}
    out = {}
    for res, m in metrics.items():
        if str(res).isdigit() and isinstance(m, dict) and isinstance(m.get("top1"), (int, float)):
            out[int(res)] = {"top1": float(m["top1"]), "measured_with": "checkpoint.json (PyTorch)"}
    return out


def torch_rows(artifacts: list[Artifact], manifest: Manifest | None = None) -> list[Artifact]:
    """PyTorch eager rows (the RS-Net switched per resolution), one per resolution, with the checkpoint's own
    (PyTorch-measured) top-1, not a built artifact's."""
    checkpoints = {a.checkpoint for a in artifacts if a.checkpoint}
    if not checkpoints:
        raise EdgeresError("the PyTorch eager backend needs the checkpoint the graphs came from, and the "
                           "manifest's checkpoint path does not exist here: drop --backend torch")
    checkpoint = sorted(checkpoints)[0]
    metrics = checkpoint_metrics(manifest.checkpoint) if manifest is not None else {}
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


__all__ = ["Artifact", "EXPORT_TARGET", "TORCH_TARGET", "read_artifacts", "read_inputs", "read_manifest_of",
           "select", "source_of", "torch_rows"]
