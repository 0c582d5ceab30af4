"""build.json: the build stage's output, and everything later stages need, carried forward.

Version 2: export{path,sha256}, checkpoint{path,sha256,arch,resolutions,metrics} (carried from export.json),
data, classes, normalization{mean,std}, eval_crop_ratio, eval{images,subset}, artifacts[{target, resolution,
file, sha256, bytes, backend ("ort"|"trt"), precision, macs, params, input, output, calibration{...}|null,
accuracy{top1,top5,count,measured_with,run_as}|null}]. Bench, eval, select and the cascade read this file alone.
"""
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeres._io import contained
from edgeres.errors import EdgeresError
from edgeres.manifests._base import (
    check_number,
    integer,
    read_manifest,
    rows,
    table,
    text,
    texts,
    write_manifest,
)
from edgeres.manifests.preprocessing import CarriesCheckpoint, Preprocessing

BACKENDS = ("ort", "trt")


@dataclass(frozen=True)
class ArtifactRecord:
    """One built file. `file` is absolute (resolved inside the manifest's directory)."""

    target: str
    resolution: int
    file: Path
    sha256: str
    backend: str
    precision: str
    macs: int | None
    params: int | None
    accuracy: dict[str, Any] | None  # {top1, top5 (percent), count, measured_with}
    raw: dict[str, Any]


@dataclass(frozen=True)
class BuildManifest(CarriesCheckpoint):
    path: Path  # build.json
    export: dict[str, Any]  # {path, sha256} of the export.json it was built from
    checkpoint: dict[str, Any]  # carried from export.json; may be {} for exports that did not record it
    data: str
    classes: tuple[str, ...]
    preprocessing: Preprocessing
    artifacts: tuple[ArtifactRecord, ...]
    raw: dict[str, Any]

    kind = "build"


def read_build(path: str | os.PathLike) -> BuildManifest:
    """build.json (or a directory holding it), validated in one place."""
    return parse_build(read_manifest(path, "build"))


def parse_build(data: dict[str, Any]) -> BuildManifest:
    where = data["_path"]
    base = Path(where).parent
    export = table(data, "export", where)
    text(export, "sha256", f"{where} export")
    artifacts = tuple(_artifact(a, base, f"{where} artifact") for a in rows(data, "artifacts", where))
    return BuildManifest(Path(where), export, table(data, "checkpoint", where, optional=True) or {},
                         text(data, "data", where, ""), texts(data, "classes", where),
                         Preprocessing.from_manifest(data, where), artifacts, data)


def _artifact(raw: dict[str, Any], base: Path, where: str) -> ArtifactRecord:
    backend = text(raw, "backend", where)
    if backend not in BACKENDS:
        raise EdgeresError(f"{where}: backend {backend!r} is not one of {', '.join(BACKENDS)}: regenerate build.json")
    return ArtifactRecord(text(raw, "target", where), integer(raw, "resolution", where, 1),
                          contained(base, text(raw, "file", where)), text(raw, "sha256", where), backend,
                          text(raw, "precision", where, "fp32"), integer(raw, "macs", where, 0, optional=True),
                          integer(raw, "params", where, 0, optional=True), accuracy(raw.get("accuracy"), where), raw)


def accuracy(value: Any, where: str) -> dict[str, Any] | None:
    """A validated accuracy block (top-1/top-5 in percent), or None when not measured."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise EdgeresError(f"{where}: accuracy must be an object or null: regenerate the manifest")
    block = {k: check_number(value.get(k), f"{where}: accuracy {k}", 0.0, 100.0) for k in ("top1", "top5")
             if k in value or k == "top1"}
    return {**value, **block}


def write_build(path: str | os.PathLike, body: dict[str, Any]) -> BuildManifest:
    """Validate `body` with the reader's rules, then write build.json atomically."""
    manifest = parse_build({**body, "_path": str(path)})
    write_manifest(path, "build", body)
    return manifest
