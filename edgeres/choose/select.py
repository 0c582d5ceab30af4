"""Choose a deployment (target x resolution) for a latency or compute budget, from bench reports. Torch-free.

A deployment is one batch-1 row of a bench.json: its latency (a chosen statistic of the raw samples) joined
with its top-1 (carried by the row from build.json/checkpoint.json, or read from `accuracy_sources`).
The accuracy-vs-latency Pareto front comes from `edgeres.choose.pareto`; under a budget the most accurate
deployment wins, ties going to the faster one.

Compute budgets: MACs are multiply-accumulates per image as the export manifest counts them. RS-Nets tables
call them "FLOPs (Multiply-Adds)"; edgeres bench counts 1 MAC = 2 FLOPs. So `budget_mmacs` is in millions of
MACs (= RS-Nets "MFLOPs"), and `budget_mflops` is in millions of FLOPs = 2 x MACs, like bench's GFLOP/s.
"""
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from edgeres._io import check_result_file, text_marker, write_text
from edgeres.choose.pareto import pareto_front
from edgeres.errors import EdgeresError, EdgeresUsageError
from edgeres.manifests.choose import write_select

SELECT_FILE = "select.json"


@dataclass(frozen=True)
class Deployment:
    """One measured, batch-1 deployment option."""

    target: str  # build target, e.g. ort-int8; onnx-fp32 for an export's graphs
    resolution: int  # px
    backend: str
    precision: str
    device: str  # the bench report's device (cpu, cuda, jetson)
    latency_ms: float  # the chosen statistic of batch-1 latency
    stats: dict  # every statistic the bench report has for this row, ms
    macs: int | None  # per image
    top1: float | None  # percent
    accuracy_from: str | None  # where top1 was measured
    report: str  # the bench.json it came from

    @property
    def label(self) -> str:
        return f"{self.target} @ {self.resolution} px ({self.device})"


@dataclass(frozen=True)
class Selection:
    statistic: str
    budgets: dict  # {"ms": x, "mmacs": y, "mflops": z}, only those given
    candidates: tuple[Deployment, ...]  # with known accuracy
    front: tuple[Deployment, ...]  # Pareto front, by increasing latency
    chosen: Deployment | None  # None when no budget was given
    without_accuracy: tuple[str, ...]  # labels of rows left out because no top-1 is known

    def to_json(self) -> dict[str, Any]:
        front = {id(d) for d in self.front}
        return {"statistic": self.statistic, "budgets": self.budgets,
                "chosen": _deployment_json(self.chosen, True) if self.chosen else None,
                "front": [_deployment_json(d, True) for d in self.front],
                "candidates": [_deployment_json(d, id(d) in front) for d in self.candidates],
                "without_accuracy": list(self.without_accuracy)}

    def to_markdown(self) -> str:
        """The Pareto front as a Markdown table, the chosen row marked."""
        lines = [text_marker("select"),
                 f"Pareto front (top-1 up, {self.statistic} latency down), budgets: {budget_text(self.budgets)}", "",
                 f"| deployment | top-1 % | {self.statistic} ms | p90 ms | MMACs | |", "|---|---:|---:|---:|---:|---|"]
        for d in self.front:
            mark = "**chosen**" if d == self.chosen else ""
            lines.append(f"| {d.label} | {d.top1:.2f} | {d.latency_ms:.3f} | {d.stats.get('p90', float('nan')):.3f} "
                         f"| {mmacs_text(d)} | {mark} |")
        return "\n".join(lines) + "\n"

    def write(self, json_path: str | os.PathLike | None = None, markdown_path: str | os.PathLike | None = None):
        check_outputs(json_path, markdown_path)
        if json_path:
            write_select(json_path, self.to_json())
        if markdown_path:
            write_text(markdown_path, self.to_markdown())


def check_outputs(json_path: str | os.PathLike | None, markdown_path: str | os.PathLike | None) -> None:
    """--json / --markdown may be new files or earlier select results, never a manifest or the user's file."""
    for path, flag in ((json_path, "--json"), (markdown_path, "--markdown")):
        if path:
            check_result_file(path, "select", flag)


def select(bench_reports: Sequence[str | os.PathLike | dict], accuracy_sources: Iterable[str | os.PathLike] = (), *,
           budget_ms: float | None = None, budget_mflops: float | None = None, statistic: str = "p50",
           budget_mmacs: float | None = None) -> Selection:
    """The Pareto front of batch-1 rows of `bench_reports` and, under the budgets given, the most accurate.

    bench_reports: bench.json paths (or dirs holding one, or loaded dicts). accuracy_sources: build or export
    directories whose top-1 overrides the rows' own. budget_ms applies to `statistic` (ms per image);
    several budgets must all hold. Raises EdgeresError when nothing fits, naming the fastest/cheapest option.
    """
    budgets = {k: v for k, v in (("ms", budget_ms), ("mmacs", budget_mmacs), ("mflops", budget_mflops)) if v is not None}
    for name, value in budgets.items():
        if not (math.isfinite(value) and value > 0):
            raise EdgeresUsageError(f"--budget-{name} must be a finite number > 0, got {value}")
    rows = [d for report in _unique(bench_reports) for d in deployments(report, statistic)]
    rows = _with_accuracy(rows, accuracy_table(accuracy_sources or ()))
    known = tuple(d for d in rows if d.top1 is not None)
    if not known:
        raise EdgeresError("no bench row has a known top-1: pass --build DIR (a build.json with measured accuracy), "
                           "or bench an export whose checkpoint.json has metrics")
    front = tuple(pareto_front(known, cost=lambda d: d.latency_ms, value=lambda d: d.top1))
    chosen = choose(known, budgets) if budgets else None
    return Selection(statistic, budgets, known, front, chosen, tuple(d.label for d in rows if d.top1 is None))


def choose(candidates: Sequence[Deployment], budgets: dict) -> Deployment:
    """Most accurate candidate within every budget; ties -> lower latency, then fewer MACs, then by name."""
    fits = [d for d in candidates if _fits(d, budgets)]
    if not fits:
        raise EdgeresError(_nothing_fits(candidates, budgets))
    return min(fits, key=lambda d: (-d.top1, d.latency_ms, d.macs or 0, d.target, d.resolution))


def _fits(d: Deployment, budgets: dict) -> bool:
    if "ms" in budgets and d.latency_ms > budgets["ms"]:
        return False
    for unit, per_mac in (("mmacs", 1e-6), ("mflops", 2e-6)):
        if unit in budgets and (d.macs is None or d.macs * per_mac > budgets[unit]):
            return False
    return True


def _nothing_fits(candidates: Sequence[Deployment], budgets: dict) -> str:
    if "ms" in budgets:
        best = min(candidates, key=lambda d: d.latency_ms)
        return (f"nothing fits {budget_text(budgets)}: the fastest is {best.label} at {best.latency_ms:.3f} ms "
                f"({best.top1:.2f}% top-1)")
    best = min((d for d in candidates if d.macs is not None), key=lambda d: d.macs, default=None)
    if best is None:
        return "no bench row carries MACs: a compute budget needs rows from an export/build with macs"
    return f"nothing fits {budget_text(budgets)}: the cheapest is {best.label} at {mmacs_text(best)} MMACs"


def deployments(report: str | os.PathLike | dict, statistic: str = "p50") -> list[Deployment]:
    """The batch-1 rows of one bench report as Deployments (latency = `statistic` in ms)."""
    data, where = _load_report(report)
    out = []
    for row in data["rows"]:
        if row.get("batch", 1) != 1:
            continue  # a per-image choice: batch 1 is what one image waits for
        stats = row.get("stats") or {}
        if statistic not in stats:
            raise EdgeresError(f"{where} has no {statistic!r} latency: choose one of {', '.join(sorted(stats))}")
        acc = row.get("accuracy") or {}
        out.append(Deployment(str(row["target"]), int(row["resolution"]), str(row.get("backend", "ort")),
                              str(row.get("precision", "")), str(data.get("device", "cpu")), float(stats[statistic]),
                              stats, row.get("macs"), acc.get("top1"), acc.get("measured_with"), where))
    return out


def _unique(reports: Sequence) -> list:
    """The same bench.json named twice (e.g. by a shell glob) counts once."""
    seen, out = set(), []
    for r in reports:
        key = id(r) if isinstance(r, dict) else os.path.realpath(r)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def _load_report(report) -> tuple[dict, str]:
    if isinstance(report, dict):
        data, where = report, str(report.get("_path", "bench report"))
    else:
        from edgeres.manifests.bench import (
            read_bench,  # the bench stage's validating reader
        )
        data = read_bench(report)
        where = data["_path"]
    if not isinstance(data.get("rows"), list) or not data["rows"]:
        raise EdgeresError(f"{where} has no rows: run edgeres bench again")
    return data, where


def accuracy_table(sources: Iterable[str | os.PathLike]) -> dict[tuple[str, int], tuple[float, str]]:
    """(target, resolution) -> (top-1 %, where measured) from build or export directories."""
    from edgeres.manifests.artifacts import read_inputs
    table = {}
    for source in sources:
        _, artifacts = read_inputs(source)
        for a in artifacts:
            if a.accuracy and a.accuracy.get("top1") is not None:
                where = f"{a.accuracy.get('measured_with', '')} ({Path(source)})".strip()
                table[(a.target, a.resolution)] = (float(a.accuracy["top1"]), where)
    return table


def _with_accuracy(rows: list[Deployment], table: dict) -> list[Deployment]:
    """An explicit accuracy source wins over the accuracy a bench row carries."""
    from dataclasses import replace
    return [replace(d, top1=table[(d.target, d.resolution)][0], accuracy_from=table[(d.target, d.resolution)][1])
            if (d.target, d.resolution) in table else d for d in rows]


def _deployment_json(d: Deployment, on_front: bool) -> dict[str, Any]:
    return {**asdict(d), "label": d.label, "on_front": on_front}


def budget_text(budgets: dict) -> str:
    """'--budget-ms 0.5, --budget-mmacs 5' as the user would type it ('none' without budgets)."""
    return ", ".join(f"--budget-{k} {v:g}" for k, v in budgets.items()) or "none"


def mmacs_text(d: Deployment) -> str:
    """MACs per image in millions, '?' when unknown."""
    return "?" if d.macs is None else f"{d.macs / 1e6:.3f}"
