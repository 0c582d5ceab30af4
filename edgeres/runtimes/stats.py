"""Pure statistics over raw latency samples (milliseconds). No timing happens here.

Percentile definition (stated because tools differ): numpy's default "linear" method. Sort the n samples
x[0] <= ... <= x[n-1]; the q-th percentile sits at rank h = (n - 1) * q / 100 and interpolates linearly
between x[floor(h)] and x[ceil(h)]. So p50 of [1, 2, 3, 4] is 2.5 and p90 of [1..10] is 9.1.
"""
import math
from typing import Iterable, Sequence

PERCENTILE_DEFINITION = "linear interpolation at rank (n-1)*q/100 over sorted samples (numpy method='linear')"
STATISTICS = ("p50", "p90", "p99", "mean", "min", "median_of_medians")


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0 <= q <= 100) of `samples` by linear interpolation (see module docstring)."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q={q} outside 0..100")
    xs = sorted(samples)
    h = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(h), math.ceil(h)
    return xs[lo] + (h - lo) * (xs[hi] - xs[lo])


def mean_std(samples: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0.0 for a single sample)."""
    n = len(samples)
    mean = sum(samples) / n
    if n < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((x - mean) ** 2 for x in samples) / (n - 1))


def summarize(samples_ms: Sequence[float], chunk_medians_ms: Iterable[float] = ()) -> dict[str, float]:
    """p50/p90/p99/mean/std/min/max (ms) and count; `median_of_medians` over per-chunk medians when given.

    Chunks are the bursts of one cell between interleaving switches (and across worker processes): the
    median of their medians shrugs off a whole burst spoiled by a neighbour process.
    """
    mean, std = mean_std(samples_ms)
    chunks = list(chunk_medians_ms)
    return {"p50": percentile(samples_ms, 50), "p90": percentile(samples_ms, 90), "p99": percentile(samples_ms, 99),
            "mean": mean, "std": std, "min": min(samples_ms), "max": max(samples_ms), "count": len(samples_ms),
            "median_of_medians": percentile(chunks, 50) if chunks else percentile(samples_ms, 50)}


def throughput(latency_ms: float, batch: int) -> float:
    """Images per second when one batch of `batch` images takes `latency_ms`."""
    return 1000.0 * batch / latency_ms


def achieved_gflops(macs_per_image: int | None, batch: int, latency_ms: float) -> float | None:
    """Achieved GFLOP/s counting one MAC as 2 FLOPs: 2 * MACs * batch / latency."""
    if not macs_per_image:
        return None
    return 2.0 * macs_per_image * batch / (latency_ms * 1e-3) / 1e9


def add_ratios(rows: list[dict], statistic: str = "p50") -> None:
    """Set latency_ratio and macs_ratio of every row against the highest resolution of its (target, batch, backend).

    The seeds assume latency is proportional to MACs: where latency_ratio stays above macs_ratio at low
    resolutions, fixed per-inference overhead dominates.
    """
    top: dict[tuple, dict] = {}
    for row in rows:
        key = (row["target"], row["batch"], row["backend"])
        if key not in top or row["resolution"] > top[key]["resolution"]:
            top[key] = row
    for row in rows:
        ref = top[(row["target"], row["batch"], row["backend"])]
        row["latency_ratio"] = row["stats"][statistic] / ref["stats"][statistic]
        row["macs_ratio"] = row["macs"] / ref["macs"] if row.get("macs") and ref.get("macs") else None
