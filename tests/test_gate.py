"""The regression gate's verdicts on constructed reports (recorded-sample style, no timing)."""
import numpy as np
import pytest

from edgeres.bench.gate import compare
from edgeres.errors import EdgeresError
from edgeres.runtimes.stats import summarize

BASE_MS = {64: 2.0, 48: 1.2, 32: 0.6}  # a model's true latency per resolution


def fake_report(seed: int, slowdown: float = 1.0, machine: float = 1.0, noise: float = 0.03, res=(64, 48, 32)) -> dict:
    """A bench report whose samples are true latency x slowdown x machine speed x lognormal noise."""
    rng = np.random.default_rng(seed)

    def stats(ms):
        return summarize(list(ms * machine * rng.lognormal(0, noise, 200)))
    rows = [{"target": "onnx-fp32", "resolution": r, "batch": 1, "backend": "ort",
             "stats": stats(BASE_MS[r] * slowdown)} for r in res]
    return {"rows": rows, "reference": {"stats": stats(0.15)}, "machine": {"threads": 2}}


def test_repeated_runs_with_noise_pass():
    for seed in range(1, 6):
        result = compare(fake_report(0), fake_report(seed))
        assert result.passed and {r.verdict for r in result.rows} == {"pass"}, result.summary()


def test_real_25_percent_slowdown_fails_with_the_amount():
    result = compare(fake_report(0), fake_report(1, slowdown=1.25))
    assert not result.passed and len(result.of("regressed")) == 3
    assert all(20 < r.change_pct < 30 for r in result.rows)
    assert "FAILED" in result.summary() and "+2" in result.summary()


def test_normalised_mode_cancels_a_uniformly_slower_machine():
    raw = compare(fake_report(0), fake_report(1, machine=2.0))
    assert not raw.passed  # raw latencies doubled
    normalised = compare(fake_report(0), fake_report(1, machine=2.0), normalize=True)
    assert normalised.passed
    slower_model = compare(fake_report(0), fake_report(1, machine=2.0, slowdown=1.25), normalize=True)
    assert not slower_model.passed  # ...but a real model slowdown still shows through


def test_improved_missing_and_new_rows():
    current = fake_report(1, slowdown=0.5, res=(64, 48))
    current["rows"].append({**current["rows"][0], "resolution": 96})
    result = compare(fake_report(0), current)
    verdicts = {r.key[1]: r.verdict for r in result.rows}
    assert verdicts == {64: "improved", 48: "improved", 32: "missing", 96: "new"}
    assert result.passed  # missing is reported, not fatal...
    assert not compare(fake_report(0), current, fail_on_missing=True).passed  # ...unless asked


def test_threshold_and_statistic_choices():
    result = compare(fake_report(0), fake_report(1, slowdown=1.25), max_regression=30)
    assert result.passed
    assert compare(fake_report(0), fake_report(1), statistic="median_of_medians").passed
    with pytest.raises(EdgeresError, match="unknown statistic"):
        compare(fake_report(0), fake_report(1), statistic="p42")


def test_normalised_mode_needs_the_reference():
    old = fake_report(0)
    del old["reference"]
    with pytest.raises(EdgeresError, match="reference workload"):
        compare(old, fake_report(1), normalize=True)


def test_a_gate_that_compares_nothing_fails():
    other = fake_report(1)
    for row in other["rows"]:
        row["target"] = "ort-int8"
    with pytest.raises(EdgeresError, match="has no row this run measures"):
        compare(fake_report(0), other)


@pytest.mark.parametrize("field, theirs, mine", [("graph_sha256", "a" * 64, "b" * 64), ("macs", 1000, 2000)])
def test_a_changed_graph_is_gated_with_a_note(field, theirs, mine):
    base, current = fake_report(0), fake_report(1)
    base["rows"][1][field], current["rows"][1][field] = theirs, mine
    result = compare(base, current)
    assert result.passed and [n for n in result.notes if "graph changed" in n] == [
        "onnx-fp32@48 batch 1: graph changed since the baseline" + ("; MACs 1000 -> 2000" if field == "macs" else "")
        + "; gated on its latency"]
    slower = fake_report(1, slowdown=1.5)
    slower["rows"][1][field] = mine
    assert sorted(r.key[1] for r in compare(base, slower).of("regressed")) == [32, 48, 64]
    current["rows"][1][field] = theirs
    assert not [n for n in compare(base, current).notes if "graph changed" in n]


def with_pairs(report: dict, ratio: float, seed: int) -> dict:
    """`report` with paired burst ratios around `ratio` (5 bursts, 1% noise) on every row."""
    rng = np.random.default_rng(seed)
    for row in report["rows"]:
        row["reference_ratios"] = list(ratio * rng.lognormal(0, 0.01, 5))
    return report


def test_consensus_regresses_only_when_both_normalisers_agree():
    base = [with_pairs(fake_report(i), 1.0, i) for i in range(3)]
    # the model is 25% slower: raw p50, normalised p50 and paired ratio all move
    slower = compare(base, with_pairs(fake_report(9, slowdown=1.25), 1.25, 9), "consensus")
    assert not slower.passed and len(slower.of("regressed")) == 3
    for r in slower.rows:
        normalised, paired = r.parts
        assert 20 < normalised < 30 and 22 < paired < 28 and r.change_pct == min(normalised, paired)
    # the GEMM reference ran 30% faster (normalised +43%) while the model and its paired ratio did not move
    lucky_gemm = with_pairs(fake_report(9), 1.0, 9)
    lucky_gemm["reference"]["stats"] = {k: v * 0.7 for k, v in lucky_gemm["reference"]["stats"].items()}
    assert not compare(base, lucky_gemm, "p50", normalize=True).passed
    agreed = compare(base, lucky_gemm, "consensus")
    assert agreed.passed and all(abs(r.change_pct) < 3 for r in agreed.rows), agreed.summary()
    # the two disagree in sign (paired 20% slower, normalised 30% faster): no agreed change at all
    split = compare(base, with_pairs(fake_report(9, slowdown=0.7), 1.2, 9), "consensus")
    assert split.passed and [r.change_pct for r in split.rows] == [0.0, 0.0, 0.0]
    assert "consensus" in split.summary()


def test_consensus_keeps_missing_and_new_rows():
    base = [with_pairs(fake_report(0), 1.0, 0)]
    current = with_pairs(fake_report(1, res=(64, 48)), 1.0, 1)
    current["rows"].append({**current["rows"][0], "resolution": 96})
    verdicts = {r.key[1]: r.verdict for r in compare(base, current, "consensus").rows}
    assert verdicts == {64: "pass", 48: "pass", 32: "missing", 96: "new"}
