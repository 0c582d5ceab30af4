"""The gate's paired statistic and baselines of several recordings, on constructed reports (no timing)."""
import numpy as np
import pytest

from edgeres.bench.gate import PAIRED, baseline_values, compare, paired_ratios
from edgeres.errors import EdgeresError
from edgeres.runtimes.stats import summarize

TRUE_RATIO = {64: 1.8, 48: 1.1, 32: 0.55}  # a model's cost per resolution in units of the reference CNN


def paired_report(seed: int, slowdown: float = 1.0, bursts: int = 24, side: int = 64, spoiled: int = 0) -> dict:
    """Rows whose per-burst ratios are true ratio x slowdown x 2% lognormal noise; `spoiled` bursts x 3."""
    rng = np.random.default_rng(seed)
    rows = []
    for res, ratio in TRUE_RATIO.items():
        ratios = ratio * slowdown * rng.lognormal(0, 0.02, bursts)
        ratios[:spoiled] *= 3.0  # a neighbour's burst hit the rows but not the reference beside them
        rows.append({"target": "onnx-fp32", "resolution": res, "batch": 1, "backend": "ort", "reference_side": side,
                     "stats": summarize(list(ratios * 0.2)), "reference_ratios": list(ratios)})
    return {"rows": rows, "reference": {"stats": summarize([0.15] * 10)}, "machine": {"threads": 2}}


def test_paired_gate_passes_reruns_and_catches_25_percent():
    base = [paired_report(s) for s in (0, 1, 2)]
    for seed in range(3, 8):
        assert compare(base, paired_report(seed), PAIRED, 10.0).passed
    slower = compare(base, paired_report(9, slowdown=1.25), PAIRED, 10.0)
    assert not slower.passed and len(slower.of("regressed")) == 3
    assert all(20 < r.change_pct < 30 for r in slower.rows)


def test_recordings_pool_their_bursts_so_one_unlucky_recording_does_not_move_the_baseline():
    unlucky = paired_report(0, spoiled=14)  # 14 of 24 bursts spoiled: its own median moves 3x
    alone = baseline_values([unlucky], PAIRED)
    pooled = baseline_values([unlucky, paired_report(1), paired_report(2)], PAIRED)
    key = ("onnx-fp32", 64, 1, "ort")
    assert alone[key] > 1.2 * TRUE_RATIO[64]  # one recording: the statistic is off by more than 20%...
    assert pooled[key] == pytest.approx(TRUE_RATIO[64], rel=0.05)  # ...pooled, 14 of 72 bursts do not move it
    assert len(paired_ratios([unlucky, paired_report(1)])[key]) == 48


def test_other_statistics_take_the_median_of_the_recordings():
    reports = [paired_report(s) for s in range(3)]
    for r, scale in zip(reports, (1.0, 2.0, 10.0)):
        for row in r["rows"]:
            row["stats"] = {**row["stats"], "p50": scale}
    assert set(baseline_values(reports, "p50").values()) == {2.0}
    assert compare(reports, paired_report(5), "p50", 10.0).rows[0].baseline == 2.0


def test_paired_gate_needs_the_paired_reference_and_the_same_one():
    old = paired_report(0)
    for row in old["rows"]:
        del row["reference_ratios"]
    with pytest.raises(EdgeresError, match="paired reference"):
        compare(old, paired_report(1), PAIRED)
    with pytest.raises(EdgeresError, match="onnx-fp32@64 batch 1 was benched beside a 32 px one, the baseline beside 64"):
        compare(paired_report(0, side=64), paired_report(1, side=32), PAIRED)
    with pytest.raises(EdgeresError, match="no baseline"):
        compare([], paired_report(1), PAIRED)
