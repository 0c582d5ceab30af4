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
import math
import os
from pathlib import Path
from typing import Any

from edgeres import __version__
from edgeres._io import read_json, write_json
from edgeres.errors import EdgeresError

FORMAT_VERSIONS = {"checkpoint": 1, "export": 1, "build": 2, "bench": 1, "cascade": 1, "select": 1}
FILE_NAMES = {kind: f"{kind}.json" for kind in FORMAT_VERSIONS}


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
        raise EdgeresError(f"{path} is not a {kind}.json: it is not a {kind} manifest (kind={found!r}); pass the "
                           f"output of the {kind} stage")
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
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise EdgeresError(f"{where}: field {key!r} has type {type(value).__name__}, expected {names}: the manifest is "
                           "damaged, regenerate it")
    return value


# ---------------------------------------------------------------- typed field readers (one-line errors)

def text(data: dict[str, Any], key: str, where: str, default: Any = ...) -> str:
    """A string field (or `default` when it is absent and a default is given)."""
    if default is not ... and data.get(key) is None:
        return default
    return require(data, key, str, where)


def number(data: dict[str, Any], key: str, where: str, low: float | None = None, high: float | None = None,
           low_open: bool = False) -> float:
    """A finite number within [low, high] (low excluded when `low_open`)."""
    value = require(data, key, (int, float), where)
    return check_number(value, f"{where}: field {key!r}", low, high, low_open)


def check_number(value: Any, what: str, low: float | None = None, high: float | None = None,
                 low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise EdgeresError(f"{what} is {value!r}, not a finite number: the manifest is damaged, regenerate it")
    below = low is not None and (value <= low if low_open else value < low)
    if below or (high is not None and value > high):
        bounds = f"{'(' if low_open else '['}{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        raise EdgeresError(f"{what} = {value} is outside {bounds}: the manifest is damaged, regenerate it")
    return float(value)


def integer(data: dict[str, Any], key: str, where: str, low: int | None = None, optional: bool = False) -> int | None:
    """An integer field >= low (None when optional and absent/null)."""
    if optional and data.get(key) is None:
        return None
    value = require(data, key, int, where)
    if low is not None and value < low:
        raise EdgeresError(f"{where}: field {key!r} = {value} is below {low}: the manifest is damaged, regenerate it")
    return value


def numbers(data: dict[str, Any], key: str, where: str, low: float | None = None, low_open: bool = False,
            optional: bool = False) -> tuple[float, ...] | None:
    """A non-empty list of finite numbers (None when optional and absent/null)."""
    if optional and data.get(key) is None:
        return None
    values = require(data, key, list, where)
    if not values:
        raise EdgeresError(f"{where}: field {key!r} is empty: the manifest is damaged, regenerate it")
    return tuple(check_number(v, f"{where}: field {key!r} item", low, None, low_open) for v in values)


def texts(data: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    """A list of strings."""
    values = require(data, key, list, where)
    if not all(isinstance(v, str) for v in values):
        raise EdgeresError(f"{where}: field {key!r} must be a list of strings: the manifest is damaged, regenerate it")
    return tuple(values)


def table(data: dict[str, Any], key: str, where: str, optional: bool = False) -> dict[str, Any] | None:
    """A JSON object field (None when optional and absent/null)."""
    if optional and data.get(key) is None:
        return None
    return require(data, key, dict, where)


def rows(data: dict[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    """A list of JSON objects."""
    values = require(data, key, list, where)
    if not all(isinstance(v, dict) for v in values):
        raise EdgeresError(f"{where}: every item of {key!r} must be an object: the manifest is damaged, regenerate it")
    return values
