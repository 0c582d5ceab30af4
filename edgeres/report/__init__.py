"""Reports over bench.json files (read by edgeres.manifests.bench): a rich table, Markdown, plots, `report()`.

Python twin of `edgeres report`: `edgeres.report.report(["build/rsnet/bench/bench.json"], "report/")`
writes a Markdown table, results.csv and the plots (latency vs MACs; accuracy vs latency with the Pareto
front when accuracy is known). Torch-free; matplotlib is imported only to draw.
"""
import os
from pathlib import Path
from typing import Any, Sequence

from edgeres._io import check_out_dir, staged_dir, write_text
from edgeres.choose.pareto import pareto_front
from edgeres.errors import EdgeresError
from edgeres.manifests.bench import CSV_COLUMNS, flat_rows, read_bench, to_csv

MARKERS = ("report.md",)
OWN_FILES = ("report.md", "results.csv", "latency_vs_macs.png", "latency_vs_macs.svg", "accuracy_vs_latency.png",
             "accuracy_vs_latency.svg")  # replaced, or dropped when a new report has no accuracy plot
TABLE_COLUMNS = (("target", "target"), ("res", "resolution"), ("batch", "batch"), ("p50 ms", "p50_ms"),
                 ("p90 ms", "p90_ms"), ("p99 ms", "p99_ms"), ("img/s", "img_per_s"), ("MMACs", "macs"),
                 ("GFLOP/s", "gflops_per_s"), ("lat ratio", "latency_ratio"), ("MACs ratio", "macs_ratio"),
                 ("top-1 %", "top1"), ("top-1 95%", "top1_interval"))


def _cell(key: str, value: Any, row: dict[str, Any] | None = None) -> str:
    if key == "top1_interval":  # the Wilson interval build.json records with each top-1
        low, high = ((row or {}).get("top1_low"), (row or {}).get("top1_high"))
        return "-" if low is None or high is None else f"{low:.1f}-{high:.1f}"
    if value is None:
        return "-"
    if key == "macs":
        return f"{value / 1e6:.2f}"
    if key.endswith("_ms"):
        return f"{value:.3f}"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def print_bench_table(report: dict[str, Any], title: str | None = None) -> None:
    """Rich table of the report's rows on stdout (results go to stdout, logs to stderr)."""
    from rich.table import Table

    from edgeres.report.tables import wide_console
    machine, ref = report.get("machine", {}), report.get("reference", {})
    table = Table(title=title or f"{machine.get('device', '?')}: {machine.get('device_name', '')}, "
                                 f"{machine.get('threads')} threads, reference GEMM {ref.get('gflops_per_s')} GFLOP/s")
    for header, _ in TABLE_COLUMNS:
        table.add_column(header, justify="left" if header == "target" else "right")
    for row in flat_rows(report):
        table.add_row(*(_cell(key, row.get(key), row) for _, key in TABLE_COLUMNS))
    wide_console().print(table)  # pipes/CI logs: don't squash to 80 cols


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """GitHub Markdown table of flat rows (same columns as the stdout table)."""
    lines = ["| " + " | ".join(h for h, _ in TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    lines += ["| " + " | ".join(_cell(k, r.get(k), r) for _, k in TABLE_COLUMNS) + " |" for r in rows]
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


def report(inputs: Sequence[str | os.PathLike], out: str | os.PathLike, *,
           cascades: Sequence[str | os.PathLike] = ()) -> dict[str, Path]:
    """Write report.md, results.csv, latency_vs_macs.{png,svg} and, when accuracy is known,
    accuracy_vs_latency.{png,svg} into `out`; returns the written paths by name.

    cascades: cascade.json files from `edgeres cascade`; their rows (highest only, random, cascade) join the
    accuracy plot as their own series and get a table in report.md.
    """
    from edgeres.report.plots import plot_accuracy_vs_latency, plot_latency_vs_macs
    out = check_out_dir(out, MARKERS, "report")
    rows, extra = combined_rows(inputs), cascade_rows(cascades)
    with staged_dir(out, MARKERS, "report", keep=lambda name: name not in OWN_FILES) as tmp:
        paths = {"csv": write_text(tmp / "results.csv", to_csv(rows, ("series",) + CSV_COLUMNS))}
        paths.update(plot_latency_vs_macs(rows, tmp / "latency_vs_macs"))
        front = accuracy_front(rows)
        if front:
            paths.update(plot_accuracy_vs_latency(rows, front, tmp / "accuracy_vs_latency", extra))
        paths["markdown"] = write_text(tmp / "report.md", _markdown(inputs, rows, front, paths) + _cascade_md(extra))
    return {name: out / path.name for name, path in paths.items()}


def cascade_rows(paths: Sequence[str | os.PathLike]) -> list[dict[str, Any]]:
    """Flat rows (series, method, top1, mean_ms, mmacs, split) of cascade.json files."""
    from edgeres.manifests.choose import read_cascade
    rows = []
    for path in paths:
        saved = read_cascade(path)
        series = f"run-time choice, {saved.target} {'/'.join(map(str, saved.resolutions))} px"
        rows += [{"series": series, "method": r["method"], "top1": r["top1"], "mean_ms": r["mean_latency_ms"],
                  "mmacs": r["mean_macs"] / 1e6, "split": saved.report_split} for r in saved.rows]
    return rows


def _cascade_md(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    lines = ["\n## Choosing the resolution at run time (`edgeres cascade`)\n",
             "Wall time per image through the Python runner (batch 1; the resize, crop and normalise of every "
             "stage an image reaches included, decoding not), measured on "
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
