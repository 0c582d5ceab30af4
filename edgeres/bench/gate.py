"""Pure latency-regression gate: compare one bench report against a baseline report, row by row.

A row is (target, resolution, batch, backend). change % = (current / baseline - 1) x 100 of the chosen
statistic. Verdicts: `regressed` (change > max_regression), `improved` (change < -max_regression), `pass`,
`missing` (in the baseline only), `new` (in the current report only). Normalised mode divides every latency
by the same statistic of the same report's reference GEMM first, so a uniformly faster or slower machine cancels out.
The paired statistic compares ratios to a reference CNN timed beside every run; consensus requires both
normalisers to agree that a row moved.
"""
from dataclasses import dataclass, field
from typing import Any

from edgeres.errors import EdgeresError
from edgeres.runtimes.stats import STATISTICS

VERDICTS = ("regressed", "missing", "improved", "new", "pass")
# Statistic of the paired mode: the median over bursts of each burst's median run / reference-run ratio, the
# reference CNN having run beside every run (bench paired=True). Chosen by benchmarks/gate_power.py.
PAIRED = "paired"
# A row regresses only when both normalisers agree: its GEMM-normalised p50 and its paired ratio each changed
# by more than the limit. Each reference tracked the machine worse than the other on some CPU and load
# (benchmarks/CI_GATE.md); a true slowdown moves both, while noise seldom moves both the same way at once.
CONSENSUS = "consensus"
GATE_STATISTICS = (*STATISTICS, PAIRED, CONSENSUS)


@dataclass(frozen=True)
class RowVerdict:
    key: tuple  # (target, resolution, batch, backend)
    verdict: str
    baseline: float | None = None  # the statistic (ms, or a ratio to the reference in normalised mode)
    current: float | None = None
    change_pct: float | None = None
    parts: tuple | None = None  # consensus only: (GEMM-normalised p50 change %, paired change %)

    def label(self) -> str:
        target, res, batch, backend = self.key
        return f"{target}@{res} batch {batch} ({backend})"


@dataclass(frozen=True)
class GateResult:
    rows: list[RowVerdict]
    statistic: str
    max_regression_pct: float
    normalized: bool
    fail_on_missing: bool = False
    notes: list[str] = field(default_factory=list)

    def of(self, verdict: str) -> list[RowVerdict]:
        return [r for r in self.rows if r.verdict == verdict]

    @property
    def passed(self) -> bool:
        return not self.of("regressed") and not (self.fail_on_missing and self.of("missing"))

    def summary(self) -> str:
        """One line: the verdict counts and the worst regression."""
        counts = ", ".join(f"{len(self.of(v))} {v}" for v in VERDICTS if self.of(v))
        worst = max(self.of("regressed"), key=lambda r: r.change_pct, default=None)
        tail = f"; worst {worst.label()} {worst.change_pct:+.1f}%" if worst else ""
        mode = "normalised " if self.normalized else ""
        return (f"latency gate {'passed' if self.passed else 'FAILED'} ({mode}{self.statistic}, "
                f"max regression {self.max_regression_pct:g}%): {counts}{tail}")

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "statistic": self.statistic, "max_regression_pct": self.max_regression_pct,
                "normalized": self.normalized, "fail_on_missing": self.fail_on_missing, "notes": self.notes,
                "rows": [{"key": list(r.key), "verdict": r.verdict, "baseline": r.baseline, "current": r.current,
                          "change_pct": r.change_pct, **({"parts_pct": list(r.parts)} if r.parts else {})}
                         for r in self.rows]}


def row_key(row: dict) -> tuple:
    return (row["target"], int(row["resolution"]), int(row["batch"]), row.get("backend", "ort"))


def row_values(report: dict, statistic: str = "p50", normalize: bool = False) -> dict[tuple, float]:
    """key -> statistic of each row (ms), divided by the same statistic of the report's reference GEMM when normalising."""
    if statistic == PAIRED:
        return {key: _median(ratios) for key, ratios in paired_ratios([report]).items()}
    if statistic == CONSENSUS:
        raise EdgeresError("the consensus gate compares two statistics per row: use compare(), not row_values()")
    if statistic not in STATISTICS:
        raise EdgeresError(f"unknown statistic {statistic!r}: valid are {', '.join(GATE_STATISTICS)}")
    scale = 1.0
    if normalize:
        ref = (report.get("reference") or {}).get("stats", {}).get(statistic)
        if not ref:
            raise EdgeresError("normalised gate needs the reference workload in both reports: re-run the baseline "
                               "with this edgeres, or drop --normalize")
        scale = float(ref)
    return {row_key(r): float(r["stats"][statistic]) / scale for r in report["rows"]}


def compare(baseline: dict | list[dict], current: dict, statistic: str = "p50", max_regression: float = 10.0,
            normalize: bool = False, fail_on_missing: bool = False) -> GateResult:
    """Verdict per row of `current` against `baseline`: one bench report, or several recordings of the same
    build (see `baseline_values`)."""
    if not max_regression >= 0:  # also refuses nan, which no change would ever exceed
        raise EdgeresError(f"--max-regression must be >= 0 (got {max_regression})")
    recordings = baseline if isinstance(baseline, list) else [baseline]
    for recording in recordings:
        check_comparable(recording, current["rows"])
    if statistic == CONSENSUS:
        return _consensus(recordings, current, max_regression, fail_on_missing)
    base = baseline_values(recordings, statistic, normalize)
    if statistic == PAIRED:
        check_same_reference(recordings, current)
    cur = row_values(current, statistic, normalize)
    baseline = recordings[0]
    rows = [_verdict(k, base.get(k), cur.get(k), max_regression) for k in sorted(set(base) | set(cur), key=str)]
    rows.sort(key=lambda r: (VERDICTS.index(r.verdict), -(r.change_pct or 0.0)))
    return GateResult(rows, statistic, max_regression, normalize, fail_on_missing, _notes(baseline, current))


def _consensus(recordings: list[dict], current: dict, limit: float, fail_on_missing: bool) -> GateResult:
    """Per row, the change both gates agree on: the median of (normalised change, paired change, 0), i.e. the
    smaller one when both point the same way and 0 when they disagree; its verdict follows from that change."""
    normalised = {r.key: r for r in compare(recordings, current, "p50", limit, True).rows}
    paired = {r.key: r for r in compare(recordings, current, PAIRED, limit).rows}
    rows = []
    for key in sorted(normalised, key=str):
        a, b = normalised[key], paired.get(key)
        if a.change_pct is None or b is None or b.change_pct is None:
            rows.append(a)  # missing or new: the same in both
            continue
        change = sorted((a.change_pct, b.change_pct, 0.0))[1]
        verdict = "regressed" if change > limit else "improved" if change < -limit else "pass"
        rows.append(RowVerdict(key, verdict, None, None, change, (a.change_pct, b.change_pct)))
    rows.sort(key=lambda r: (VERDICTS.index(r.verdict), -(r.change_pct or 0.0)))
    return GateResult(rows, CONSENSUS, limit, False, fail_on_missing, _notes(recordings[0], current))


def check_comparable(baseline: dict, rows: list[dict]) -> None:
    """Refuse a gate that would pass while comparing nothing (no row key in common)."""
    base = {row_key(r) for r in baseline["rows"]}
    if not any(row_key(r) in base for r in rows):
        where = baseline.get("_path", "the baseline")
        mine = ", ".join(sorted({f"{r['target']}@{r['resolution']}" for r in rows})) or "none"
        theirs = ", ".join(sorted({f"{r['target']}@{r['resolution']}" for r in baseline["rows"]})) or "none"
        raise EdgeresError(f"{where} has no row this run measures (baseline {theirs}; this run {mine}): the gate "
                           "would compare nothing; re-record the baseline for this model and these targets")


def changed_graphs(baseline: dict, current: dict) -> list[str]:
    """One note per row whose graph differs from the baseline's (sha256 when both record it, else MACs).

    Not an error: a slower graph of the same row (a model or toolchain change) is exactly the regression the
    gate exists to catch, and nothing in a graph tells a changed model from another one; the note makes the
    comparison visible instead."""
    base = {row_key(r): r for r in baseline["rows"]}
    notes = []
    for row in current["rows"]:
        theirs = base.get(row_key(row))
        if theirs is not None and _graph_differs(theirs, row):
            macs = (f"; MACs {theirs['macs']} -> {row['macs']}" if theirs.get("macs") and row.get("macs")
                    and theirs["macs"] != row["macs"] else "")
            notes.append(f"{row['target']}@{row['resolution']} batch {row['batch']}: graph changed since the "
                         f"baseline{macs}; gated on its latency")
    return notes


def _graph_differs(base: dict, current: dict) -> bool:
    for field_ in ("graph_sha256", "macs"):
        theirs, mine = base.get(field_), current.get(field_)
        if theirs is not None and mine is not None:
            return theirs != mine
    return False


def _verdict(key: tuple, base: float | None, cur: float | None, limit: float) -> RowVerdict:
    if cur is None:
        return RowVerdict(key, "missing", base, None)
    if base is None:
        return RowVerdict(key, "new", None, cur)
    change = (cur / base - 1.0) * 100.0
    verdict = "regressed" if change > limit else "improved" if change < -limit else "pass"
    return RowVerdict(key, verdict, base, cur, change)


def _notes(baseline: dict, current: dict) -> list[str]:
    """Differences in setup that make raw latencies incomparable, and changed graphs (printed, not fatal)."""
    notes = changed_graphs(baseline, current)
    for field_ in ("cpu_model", "threads", "onnxruntime"):
        a, b = (baseline.get("machine") or {}).get(field_), (current.get("machine") or {}).get(field_)
        if a != b:
            notes.append(f"{field_} differs: baseline {a!r}, current {b!r}")
    return notes


def paired_ratios(reports: list[dict]) -> dict[tuple, list[float]]:
    """key -> every burst ratio to the paired reference the reports hold for that row (recordings pooled).

    Each ratio compares runs made within a millisecond of a reference run, so it needs no alignment across
    processes or recordings; one unlucky recording adds a few outlying bursts instead of moving every row."""
    pooled: dict[tuple, list[float]] = {}
    for report in reports:
        for row in report["rows"]:
            if not row.get("reference_ratios"):
                raise EdgeresError("the paired gate needs reports benched with the paired reference (edgeres bench "
                                   "of this version, without --no-paired): re-record the baseline")
            pooled.setdefault(row_key(row), []).extend(float(r) for r in row["reference_ratios"])
    return pooled


def reference_sides_of(report: dict) -> dict[tuple, int]:
    """Row key -> side (px) of the paired reference CNN the row was benched beside (rows without one left out)."""
    return {row_key(r): r["reference_side"] for r in report["rows"] if r.get("reference_side")}


def check_same_reference(recordings: list[dict], current: dict) -> None:
    """Paired ratios compare only against the same reference CNN: one-line error naming the first row that
    differs and how to bench it."""
    ours = reference_sides_of(current)
    for recording in recordings:
        for key, side in reference_sides_of(recording).items():
            if key in ours and ours[key] != side:
                raise EdgeresError(f"the paired gate needs the baseline's reference CNN per row: {key[0]}@{key[1]} "
                                   f"batch {key[2]} was benched beside a {ours[key]} px one, the baseline beside "
                                   f"{side} px; bench with reference_from=<the baseline> (the CLI does with --baseline)")


def baseline_values(recordings: list[dict], statistic: str = "p50", normalize: bool = False) -> dict[tuple, float]:
    """The baseline per row from one or several recordings: paired pools their bursts and takes the median;
    other statistics take the median of the recordings' values (a row absent from one recording keeps the
    others')."""
    if not recordings:
        raise EdgeresError("no baseline recording given")
    if statistic == PAIRED:
        return {key: _median(ratios) for key, ratios in paired_ratios(recordings).items()}
    values: dict[tuple, list[float]] = {}
    for report in recordings:
        for key, value in row_values(report, statistic, normalize).items():
            values.setdefault(key, []).append(value)
    return {key: _median(v) for key, v in values.items()}


def _median(values: list[float]) -> float:
    from edgeres.runtimes.stats import percentile
    return percentile(values, 50)
