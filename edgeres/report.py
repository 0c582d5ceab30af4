"""Bench reports: bench.json (versioned, raw samples kept), flat CSV rows, a rich table, and `report()`.

Python twin of `edgeres report`: `edgeres.report.report(["build/rsnet/bench/bench.json"], "report/")`
writes a Markdown table, results.csv and the plots (latency vs MACs; accuracy vs latency with the Pareto
front when accuracy is known). Torch-free; matplotlib is imported only to draw.
"""
import csv
import io
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from ._io import write_text
from .errors import EdgeresError
from .manifest import read_manifest, require, write_manifest
from .pareto import pareto_front

CSV_COLUMNS = ("target", "resolution", "batch", "backend", "provider", "precision", "p50_ms", "p90_ms", "p99_ms",
               "mean_ms", "std_ms", "min_ms", "median_of_medians_ms", "count", "img_per_s", "macs", "gflops_per_s",
               "latency_ratio", "macs_ratio", "top1", "peak_rss_mb", "avg_power_w", "energy_per_image_mj")


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
    for row in require(report, "rows", list, where):
        for key, kind in (("target", str), ("resolution", int), ("batch", int), ("stats", dict)):
            require(row, key, kind, f"{where} row")
        require(row["stats"], "p50", (int, float), f"{where} row stats")
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
    flat.update(count=stats.get("count"), top1=accuracy.get("top1"), peak_rss_mb=memory.get("peak_rss_mb"),
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


TABLE_COLUMNS = (("target", "target"), ("res", "resolution"), ("batch", "batch"), ("p50 ms", "p50_ms"),
                 ("p90 ms", "p90_ms"), ("p99 ms", "p99_ms"), ("img/s", "img_per_s"), ("MMACs", "macs"),
                 ("GFLOP/s", "gflops_per_s"), ("lat ratio", "latency_ratio"), ("MACs ratio", "macs_ratio"),
                 ("top-1 %", "top1"))


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key == "macs":
        return f"{value / 1e6:.2f}"
    if key.endswith("_ms"):
        return f"{value:.3f}"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def print_bench_table(report: dict[str, Any], title: str | None = None) -> None:
    """Rich table of the report's rows on stdout (results go to stdout, logs to stderr)."""
    from .report_table import wide_console
    from rich.table import Table
    machine, ref = report.get("machine", {}), report.get("reference", {})
    table = Table(title=title or f"{machine.get('device', '?')}: {machine.get('device_name', '')}, "
                                 f"{machine.get('threads')} threads, reference GEMM {ref.get('gflops_per_s')} GFLOP/s")
    for header, _ in TABLE_COLUMNS:
        table.add_column(header, justify="left" if header == "target" else "right")
    for row in flat_rows(report):
        table.add_row(*(_cell(key, row.get(key)) for _, key in TABLE_COLUMNS))
    wide_console().print(table)  # pipes/CI logs: don't squash to 80 cols


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """GitHub Markdown table of flat rows (same columns as the stdout table)."""
    lines = ["| " + " | ".join(h for h, _ in TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    lines += ["| " + " | ".join(_cell(k, r.get(k)) for _, k in TABLE_COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def combined_rows(inputs: Sequence[str | os.PathLike]) -> list[dict[str, Any]]:
    """Flat rows of several bench reports. `series` names a plot line: the target, plus which report it came
    from (its device, or else its source directory) when the same target appears in several reports."""
    reports = [read_bench(p) for p in inputs]
    labels = _report_labels(reports)
    seen: dict[str, set[int]] = {}
    for i, report in enumerate(reports):
        for row in report["rows"]:
            seen.setdefault(row["target"], set()).add(i)
    rows = []
    for i, report in enumerate(reports):
        for row in flat_rows(report):
            suffix = f" [{labels[i]}]" if len(seen[row["target"]]) > 1 else ""
            batch = f" b{row['batch']}" if row["batch"] != 1 else ""
            rows.append({**row, "series": f"{row['target']}{suffix}{batch}"})
    if not rows:
        raise EdgeresError("the bench reports have no rows: re-run `edgeres bench`")
    return rows


def _report_labels(reports: list[dict[str, Any]]) -> list[str]:
    devices = [str(r.get("device")) for r in reports]
    if len(set(devices)) == len(devices):
        return devices
    return [Path((r.get("source") or {}).get("path") or r["_path"]).parent.name or str(i) for i, r in enumerate(reports)]


def accuracy_front(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pareto front (lower p50 latency, higher top-1) across resolutions x targets, batch-1 rows with accuracy."""
    return pareto_front([r for r in rows if r["batch"] == 1 and r.get("top1") is not None],
                        cost=lambda r: r["p50_ms"], value=lambda r: r["top1"])


def report(inputs: Sequence[str | os.PathLike], out: str | os.PathLike,
           cascades: Sequence[str | os.PathLike] = ()) -> dict[str, Path]:
    """Write report.md, results.csv, latency_vs_macs.{png,svg} and, when accuracy is known,
    accuracy_vs_latency.{png,svg} into `out`; returns the written paths by name.

    cascades: cascade.json files from `edgeres cascade`; their rows (highest only, random, cascade) join the
    accuracy plot as their own series and get a table in report.md.
    """
    from .report_plots import plot_accuracy_vs_latency, plot_latency_vs_macs
    out, rows = Path(out), combined_rows(inputs)
    extra = cascade_rows(cascades)
    paths = {"csv": write_text(out / "results.csv", to_csv(rows, ("series",) + CSV_COLUMNS))}
    paths.update(plot_latency_vs_macs(rows, out / "latency_vs_macs"))
    front = accuracy_front(rows)
    if front:
        paths.update(plot_accuracy_vs_latency(rows, front, out / "accuracy_vs_latency", extra))
    paths["markdown"] = write_text(out / "report.md", _markdown(inputs, rows, front, paths) + _cascade_md(extra))
    return paths


def cascade_rows(paths: Sequence[str | os.PathLike]) -> list[dict[str, Any]]:
    """Flat rows (series, method, top1, mean_ms, mmacs, split) of cascade.json files."""
    from ._io import read_json
    rows = []
    for path in paths:
        data = read_json(path, "cascade result")
        if not isinstance(data, dict) or data.get("kind") != "cascade":
            raise EdgeresError(f"{path} is not a cascade.json from `edgeres cascade`")
        stages = "/".join(str(s["resolution"]) for s in data["stages"])
        series = f"run-time choice, {data['source']['target']} {stages} px"
        rows += [{"series": series, "method": r["method"], "top1": r["top1"], "mean_ms": r["mean_latency_ms"],
                  "mmacs": r["mean_macs"] / 1e6, "split": data["report_split"]} for r in data["rows"]]
    return rows


def _cascade_md(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    lines = ["\n## Choosing the resolution at run time (`edgeres cascade`)\n",
             "Mean wall time per image through the Python runner (batch 1, preprocessing excluded), measured on "
             "the split named; not the same timing as the bench rows above.\n",
             "| series | method | top-1 % | MMACs/img | ms/img (mean) | images |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['series']} | {r['method']} | {r['top1']:.2f} | {r['mmacs']:.3f} | {r['mean_ms']:.3f} | "
              f"{r['split']} |" for r in rows]
    return "\n".join(lines) + "\n"


def _markdown(inputs, rows, front, paths) -> str:
    parts = ["# edgeres bench report\n", "Inputs: " + ", ".join(f"`{p}`" for p in inputs) + "\n",
             "Latency in ms per batch (p50/p90/p99, linear-interpolation percentiles); GFLOP/s = 2 x MACs / p50; "
             "lat ratio / MACs ratio are relative to the highest resolution of the same target.\n",
             markdown_table(rows), f"\n![latency vs MACs]({paths['png'].name})\n"]
    if front:
        parts.append("\n## Pareto front (accuracy vs latency, batch 1)\n")
        parts.append(markdown_table(front))
        parts.append(f"\n![accuracy vs latency]({paths['accuracy_png'].name})\n")
    else:
        parts.append("\nNo accuracy known (build.json accuracy or checkpoint metrics): no accuracy plot.\n")
    return "\n".join(parts)
