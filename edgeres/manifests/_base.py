"""Versioned JSON manifests: the only thing one stage hands to the next.

Every manifest carries `kind`, `format_version` and `edgeres_version`. Readers refuse a different kind or
an unknown version instead of guessing, and check the fields they use (`require`).

Shapes (version 1); file names inside a manifest are relative to its directory (read with `_io.contained`):

checkpoint.json  arch{name,num_classes,in_channels,width_mult,small_input}, resolutions [high->low],
                 normalization{mean,std}, eval_crop_ratio, data, classes, ensemble_weights, metrics{"28":{top1,top5}},
                 training{...}, weights{file,sha256,bytes}
export.json      checkpoint{path,sha256,arch,resolutions}, data, classes, normalization{mean,std}, eval_crop_ratio,
                 opset, graphs[{resolution, file, sha256, bytes, input{name,shape}, output{name,shape}, macs, params,
                 bn ("exact"|"interpolated"|"nearest"), max_abs_diff, top1_agreement}], switchable{...}|null
build.json       export{path,sha256}, data, classes, normalization{mean,std}, eval_crop_ratio,
                 artifacts[{target, resolution, file, sha256, bytes, backend ("ort"|"trt"), precision, macs, params,
                 calibration{...}|null, accuracy{top1,top5,count,measured_with}|null}]
bench.json       machine{...}, rows[{target, resolution, batch, backend, samples_ms[...], stats{p50,p90,p99,mean,std},
                 throughput, macs, ...}]
"""
import os
from pathlib import Path
from typing import Any

from edgeres import __version__
from edgeres._io import read_json, write_json
from edgeres.errors import EdgeresError

FORMAT_VERSIONS = {"checkpoint": 1, "export": 1, "build": 1, "bench": 1}
FILE_NAMES = {"checkpoint": "checkpoint.json", "export": "export.json", "build": "build.json", "bench": "bench.json"}


def write_manifest(path: str | os.PathLike, kind: str, body: dict[str, Any]) -> Path:
    header = {"kind": kind, "format_version": FORMAT_VERSIONS[kind], "edgeres_version": __version__}
    return write_json(path, {**header, **body})


def read_manifest(path: str | os.PathLike, kind: str) -> dict[str, Any]:
    """Read `path` (or `path/<kind>.json` when `path` is a directory) and check its kind and version."""
    path = Path(path)
    if path.is_dir():
        path = path / FILE_NAMES[kind]
    data = read_json(path, f"{kind} manifest")
    if not isinstance(data, dict) or data.get("kind") != kind:
        found = data.get("kind") if isinstance(data, dict) else type(data).__name__
        raise EdgeresError(f"{path} is not a {kind} manifest (kind={found!r}): pass the output of the {kind} stage")
    if data.get("format_version") != FORMAT_VERSIONS[kind]:
        raise EdgeresError(
            f"{path} has {kind} format_version {data.get('format_version')!r}, this edgeres reads "
            f"{FORMAT_VERSIONS[kind]}: regenerate it with edgeres {__version__}")
    data["_path"] = str(path)
    return data


def require(data: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """Return data[key] if present and of `kind`, else a one-line error naming the manifest and field."""
    if key not in data:
        raise EdgeresError(f"{where}: field {key!r} is missing: the manifest is damaged, regenerate it")
    value = data[key]
    if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
        raise EdgeresError(f"{where}: field {key!r} has type {type(value).__name__}, expected {kind}")
    return value
