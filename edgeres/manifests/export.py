"""export.json: the export stage's output, read by build, eval, bench and the cascade through `read_export`.

Version 1: checkpoint{path,sha256,arch,resolutions}, data, classes, normalization{mean,std}, eval_crop_ratio,
opset, dynamic_batch, quant, graphs[{resolution, file, sha256, bytes, input{name,shape}, output{name,shape},
macs, params, bn, ...}], switchable{...}|null. Files are relative to the manifest's directory.
"""
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeres._io import contained, sha256_file
from edgeres.errors import EdgeresError
from edgeres.manifests._base import (
    integer,
    read_manifest,
    rows,
    table,
    text,
    texts,
    write_manifest,
)
from edgeres.manifests.preprocessing import CarriesCheckpoint, Preprocessing


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple  # ints, or strings for dynamic axes

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str) -> "TensorSpec":
        shape = data.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, (int, str)) and not isinstance(d, bool)
                                                  for d in shape):
            raise EdgeresError(f"{where}: tensor shape {shape!r} is not a list of sizes: regenerate the manifest")
        return cls(text(data, "name", where), tuple(shape))


@dataclass(frozen=True)
class GraphRecord:
    """One exported graph. `file` is absolute (resolved inside the manifest's directory)."""

    resolution: int
    file: Path
    sha256: str
    input: TensorSpec
    output: TensorSpec
    macs: int | None
    params: int | None
    raw: dict[str, Any]  # the whole entry, for what build copies through (input/output, bn, fp16 range)

    def check_unchanged(self, where: str) -> None:
        """The file still exists and has the sha256 export recorded."""
        if not self.file.is_file():
            raise EdgeresError(f"{where}: graph {self.file} is missing: re-run edgeres export")
        if sha256_file(self.file) != self.sha256:
            raise EdgeresError(f"{where}: {self.file.name} changed since export (sha256 differs): re-run edgeres "
                               "export")


@dataclass(frozen=True)
class ExportManifest(CarriesCheckpoint):
    path: Path  # export.json
    checkpoint: dict[str, Any]  # {path, sha256, arch, resolutions}: where the graphs came from
    data: str
    classes: tuple[str, ...]
    preprocessing: Preprocessing
    opset: int | None
    quant: str | None
    graphs: tuple[GraphRecord, ...]
    switchable: dict[str, Any] | None
    raw: dict[str, Any]

    kind = "export"


def read_export(path: str | os.PathLike) -> ExportManifest:
    """export.json (or a directory holding it), every field later stages use checked, in one place."""
    return parse_export(read_manifest(path, "export"))


def parse_export(data: dict[str, Any]) -> ExportManifest:
    """The typed manifest from its JSON (`_path` = where it lives); one-line EdgeresError on any bad field."""
    where = data["_path"]
    base = Path(where).parent
    graphs = tuple(_graph(g, base, f"{where} graph") for g in rows(data, "graphs", where))
    if not graphs:
        raise EdgeresError(f"{where} lists no graph: re-run edgeres export")
    checkpoint = table(data, "checkpoint", where)
    return ExportManifest(Path(where), checkpoint, text(data, "data", where, ""), texts(data, "classes", where),
                          Preprocessing.from_manifest(data, where), integer(data, "opset", where, 7, optional=True),
                          data.get("quant") if isinstance(data.get("quant"), str) else None, graphs,
                          table(data, "switchable", where, optional=True), data)


def _graph(raw: dict[str, Any], base: Path, where: str) -> GraphRecord:
    return GraphRecord(integer(raw, "resolution", where, 1), contained(base, text(raw, "file", where)),
                       text(raw, "sha256", where), TensorSpec.from_json(table(raw, "input", where), where),
                       TensorSpec.from_json(table(raw, "output", where), where),
                       integer(raw, "macs", where, 0, optional=True), integer(raw, "params", where, 0, optional=True),
                       raw)


def write_export(path: str | os.PathLike, body: dict[str, Any]) -> ExportManifest:
    """Validate `body` with the reader's rules, then write export.json atomically."""
    manifest = parse_export({**body, "_path": str(path)})
    write_manifest(path, "export", body)
    return manifest
