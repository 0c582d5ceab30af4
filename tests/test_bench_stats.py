"""Percentile maths and derived numbers on hand-computed samples."""
import numpy as np
import pytest

from edgeres.runtimes.stats import (
    achieved_gflops,
    add_ratios,
    mean_std,
    percentile,
    summarize,
    throughput,
)


def test_percentiles_on_known_samples():
    assert percentile([1, 2, 3, 4], 50) == 2.5  # rank 1.5: halfway between 2 and 3
    assert percentile(list(range(1, 11)), 90) == pytest.approx(9.1)  # rank 8.1
    assert percentile(list(range(1, 11)), 99) == pytest.approx(9.91)  # rank 8.91
    assert percentile([5.0], 99) == 5.0
    assert percentile([3, 1, 2], 0) == 1 and percentile([3, 1, 2], 100) == 3


def test_percentile_matches_numpy_linear_method():
    samples = list(np.random.default_rng(0).lognormal(0, 0.5, 101))
    for q in (50, 90, 99):
        assert percentile(samples, q) == pytest.approx(np.percentile(samples, q, method="linear"))


def test_percentile_rejects_bad_input():
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summary_mean_std_and_median_of_medians():
    mean, std = mean_std([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0])
    assert mean == 5.0 and std == pytest.approx((32 / 7) ** 0.5)  # sample std, ddof=1
    s = summarize([1.0, 2.0, 3.0, 100.0], chunk_medians_ms=[1.5, 2.0, 50.0])
    assert (s["p50"], s["min"], s["max"], s["count"], s["median_of_medians"]) == (2.5, 1.0, 100.0, 4, 2.0)


def test_throughput_and_gflops():
    assert throughput(4.0, batch=8) == 2000.0  # 8 images in 4 ms
    assert achieved_gflops(1_000_000_000, batch=1, latency_ms=20.0) == pytest.approx(100.0)  # 2 GFLOP in 20 ms
    assert achieved_gflops(None, 1, 1.0) is None


def test_ratios_against_highest_resolution_of_each_target():
    rows = [{"target": t, "batch": 1, "backend": "ort", "resolution": r, "macs": m, "stats": {"p50": p}}
            for t, r, m, p in (("a", 224, 400, 20.0), ("a", 112, 100, 8.0), ("b", 224, 400, 10.0))]
    add_ratios(rows)
    assert [(r["latency_ratio"], r["macs_ratio"]) for r in rows] == [(1.0, 1.0), (0.4, 0.25), (1.0, 1.0)]
