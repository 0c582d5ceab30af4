"""cascade.json and select.json: the run-time choices, written and read here with their kind and version.

cascade.json (version 1): source{path,target}, stages[{resolution,file,macs,threads?}], confidence, max_drop,
thresholds[float|null] (null = that stage never answers), tuning{...}, report_split, random_seed, rows[...].
select.json (version 1): statistic, budgets, chosen, front, candidates, without_accuracy.
"""
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeres.errors import EdgeresError
from edgeres.manifests._base import (
    check_number,
    integer,
    number,
    read_manifest,
    require,
    rows,
    table,
    text,
    write_manifest,
)


@dataclass(frozen=True)
class CascadeManifest:
    path: Path
    source: Path  # the build/export manifest the stages come from (absolute)
    target: str | None
    confidence: str
    thresholds: tuple[float | None, ...]
    resolutions: tuple[int, ...]  # the stages, low -> high
    report_split: str
    rows: tuple[dict[str, Any], ...]  # method, top1 (%), mean_latency_ms, mean_macs, ... measured on report_split
    raw: dict[str, Any]
    stage_threads: tuple[int | None, ...] = ()  # ORT intra-op threads each stage was measured with (None: default)


def read_cascade(path: str | os.PathLike) -> CascadeManifest:
    """cascade.json (or a directory holding it), validated; the source path is resolved from its directory."""
    data = read_manifest(path, "cascade")
    where = data["_path"]
    source = table(data, "source", where)
    raw_path = text(source, "path", f"{where} source")
    resolved = (Path(raw_path) if Path(raw_path).is_absolute() else Path(where).parent / raw_path).resolve()
    target = source.get("target")
    if target is not None and not isinstance(target, str):
        raise EdgeresError(f"{where}: source target must be a name or null: regenerate cascade.json")
    thresholds = tuple(None if t is None else check_number(t, f"{where}: threshold", 0.0, 1.0)
                       for t in require(data, "thresholds", list, where))
    stage_rows = rows(data, "stages", where)
    stages = tuple(integer(s, "resolution", f"{where} stage", 1) for s in stage_rows)
    stage_threads = tuple(integer(s, "threads", f"{where} stage", 1, optional=True) for s in stage_rows)
    if len(thresholds) != len(stages) - 1:
        raise EdgeresError(f"{where}: {len(stages)} stages need {len(stages) - 1} thresholds, not {len(thresholds)}: "
                           "regenerate cascade.json")
    number(data, "max_drop", where, 0.0)
    measured = tuple(_row(r, f"{where} row") for r in rows(data, "rows", where))
    return CascadeManifest(Path(where), resolved, target, text(data, "confidence", where), thresholds, stages,
                           text(data, "report_split", where), measured, data, stage_threads)


def _row(row: dict[str, Any], where: str) -> dict[str, Any]:
    text(row, "method", where)
    number(row, "top1", where, 0.0, 100.0)
    number(row, "mean_latency_ms", where, 0.0)
    number(row, "mean_macs", where, 0.0)
    return row


def write_cascade(path: str | os.PathLike, body: dict[str, Any]) -> Path:
    """Write cascade.json; thresholds must be finite or null (strict JSON has no Infinity)."""
    if any(t is not None and not math.isfinite(t) for t in body.get("thresholds", [])):
        raise ValueError("cascade thresholds must be finite or None")
    return write_manifest(path, "cascade", body)


def write_select(path: str | os.PathLike, body: dict[str, Any]) -> Path:
    return write_manifest(path, "select", body)


def read_select(path: str | os.PathLike) -> dict[str, Any]:
    """select.json (or a directory holding it), validated: the chosen deployment and the Pareto front."""
    data = read_manifest(path, "select")
    where = data["_path"]
    text(data, "statistic", where)
    for name, budget in table(data, "budgets", where).items():
        check_number(budget, f"{where}: budget {name}", 0.0, low_open=True)
    chosen = table(data, "chosen", where, optional=True)
    for row in ([chosen] if chosen else []) + rows(data, "front", where) + rows(data, "candidates", where):
        _deployment(row, f"{where} deployment")
    return data


def _deployment(row: dict[str, Any], where: str) -> None:
    text(row, "target", where)
    integer(row, "resolution", where, 1)
    number(row, "latency_ms", where, 0.0)
    if row.get("top1") is not None:
        number(row, "top1", where, 0.0, 100.0)
