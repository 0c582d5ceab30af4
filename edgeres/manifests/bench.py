"""bench.json (versioned, raw samples kept) and its flat CSV twin bench.csv: the bench stage's output."""
import csv
import io
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from edgeres._io import write_text
from edgeres.manifests._base import (
    integer,
    number,
    read_manifest,
    rows,
    table,
    text,
    write_manifest,
)

CSV_COLUMNS = ("target", "resolution", "batch", "backend", "provider", "precision", "p50_ms", "p90_ms", "p99_ms",
               "mean_ms", "std_ms", "min_ms", "median_of_medians_ms", "count", "img_per_s", "macs", "gflops_per_s",
               "latency_ratio", "macs_ratio", "top1", "top1_low", "top1_high", "top1_images", "peak_rss_mb",
               "avg_power_w", "energy_per_image_mj")


def write_bench(report: dict[str, Any], out: str | os.PathLike) -> dict[str, Path]:
    """Write `out/bench.json` (kind "bench", format 1) and `out/bench.csv`; returns their paths."""
    out = Path(out)
    body = {k: v for k, v in report.items() if not k.startswith("_") and k not in ("kind", "format_version",
                                                                                  "edgeres_version")}
    paths = {"json": write_manifest(out / "bench.json", "bench", body),
             "csv": write_text(out / "bench.csv", to_csv(flat_rows(report)))}
    return paths


def read_bench(path: str | os.PathLike) -> dict[str, Any]:
    """A validated bench report (a bench.json file or a directory holding one)."""
    report = read_manifest(path, "bench")
    where = report["_path"]
    for row in rows(report, "rows", where):
        text(row, "target", f"{where} row")
        integer(row, "resolution", f"{where} row", 1)
        integer(row, "batch", f"{where} row", 1)
        number(table(row, "stats", f"{where} row"), "p50", f"{where} row stats", 0.0)
    return report


def flat_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat dict per row with CSV_COLUMNS (timm-style benchmark rows)."""
    return [_flat(row) for row in report["rows"]]


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    stats, accuracy = row["stats"], row.get("accuracy") or {}
    memory, power = row.get("memory") or {}, row.get("power") or {}
    flat = {k: row.get(k) for k in ("target", "resolution", "batch", "backend", "provider", "precision", "img_per_s",
                                     "macs", "gflops_per_s", "latency_ratio", "macs_ratio")}
    flat.update({f"{k}_ms": stats.get(k) for k in ("p50", "p90", "p99", "mean", "std", "min", "median_of_medians")})
    interval = accuracy.get("top1_ci95") or (None, None)
    flat.update(count=stats.get("count"), top1=accuracy.get("top1"), top1_low=interval[0], top1_high=interval[1],
                top1_images=accuracy.get("count"), peak_rss_mb=memory.get("peak_rss_mb"),
                avg_power_w=power.get("avg_power_w"), energy_per_image_mj=power.get("energy_per_image_mj"))
    return flat


def to_csv(rows: Iterable[dict[str, Any]], columns: Sequence[str] = CSV_COLUMNS) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row.get(k)) for k in columns})
    return buffer.getvalue()


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value


