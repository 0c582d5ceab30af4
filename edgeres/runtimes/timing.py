"""Raw latency samples: warm-up, then interleaved timed bursts until every cell has enough runs and time.

Interleaving (round-robin over cells, one short burst each) spreads slow drift of a shared machine (other
jobs, thermal, frequency) over all cells alike instead of charging it to whichever cell ran last. The
reference GEMM is one more cell in the same rotation, so normalising by it divides out the same drift.
"""
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from edgeres.runtimes.stats import percentile

GEMM_SIZE = 256  # 2 n^3 = 0.034 GFLOP, ~0.15 ms: short runs are interrupted as rarely as tiny models are; at 512
# (1.4 ms) a busy 2-core box spread its p50 1.35-3.6 ms between runs, at 256 0.150-0.152 ms


@dataclass
class Cell:
    """One (artifact, batch) to time: `run()` does one inference and returns device ms or None (host clock)."""

    key: str
    run: Callable[[], float | None]
    samples_ms: list[float] = field(default_factory=list)
    chunk_medians_ms: list[float] = field(default_factory=list)
    reference_ratios: list[float] = field(default_factory=list)  # per paired burst: median of run / reference run

    def done(self, min_runs: int, min_time_s: float) -> bool:
        return len(self.samples_ms) >= min_runs and sum(self.samples_ms) >= 1000.0 * min_time_s


def gemm_cell(n: int = GEMM_SIZE, threads: int | None = None) -> Cell:
    """The reference workload: float32 (n x n) @ (n x n) in ONNX Runtime (MLAS), with the rows' thread count.

    ONNX Runtime rather than numpy because numpy's BLAS thread count is fixed at import and its threads
    contend differently from ORT's pool: on a busy 2-core box a 2-thread OpenBLAS 512 GEMM spread from 1.3 to
    190 ms, so it could not stand for "how fast is this machine right now" in the same run.
    """
    from onnx import TensorProto, helper, numpy_helper

    from edgeres.runtimes.ort import ort_session
    b = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "reference_gemm",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])],
                              [numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    session = ort_session(model.SerializeToString(), threads, spinning=False)
    feed = {"a": np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)}

    def run() -> None:
        session.run(None, feed)
    return Cell("reference", run)


def timed_call(fn: Callable[[], Any]) -> tuple[Any, float]:
    """(fn(), host wall time in ms by perf_counter): the one host clock, for calls timed one at a time."""
    start = time.perf_counter()
    result = fn()
    return result, (time.perf_counter() - start) * 1000.0


def time_once(cell: Cell) -> float:
    """One run in ms: the runner's device time if it has one, else host perf_counter around the call."""
    device_ms, host_ms = timed_call(cell.run)
    return host_ms if device_ms is None else device_ms


def warm_up(cells: list[Cell], runs: int) -> None:
    """Untimed runs: first calls allocate, pick kernels and fault in pages (nanoGPT's burn-in)."""
    for cell in cells:
        for _ in range(runs):
            cell.run()


def burst(cell: Cell, seconds: float) -> None:
    """Timed runs of one cell for about `seconds` (at least one run); records the burst's median."""
    samples, end = [], time.perf_counter() + seconds
    while not samples or time.perf_counter() < end:
        samples.append(time_once(cell))
    cell.samples_ms.extend(samples)
    cell.chunk_medians_ms.append(percentile(samples, 50))


def interleave(cells: list[Cell], min_runs: int, min_time_s: float, bursts: int = 8) -> None:
    """Round-robin bursts over unfinished cells until each has >= min_runs samples and >= min_time_s of them.

    A burst lasts min_time_s / bursts, so a cell needs about `bursts` turns: enough chunks for a median of
    medians, short enough that drift is shared.
    """
    seconds = max(min_time_s / bursts, 1e-3)
    pending = list(cells)
    while pending:
        for cell in pending:
            burst(cell, seconds)
        pending = [c for c in pending if not c.done(min_runs, min_time_s)]


def conv_reference_cell(side: int, threads: int | None = None) -> Cell:
    """A reference workload that resembles the models: the tiny CNN of edgeres.runtimes.tiny (3x3 convs + ReLU in
    ONNX Runtime, same threads) at `side` px (see `reference_side`).

    Work of the same kind meets the same contention, cache and frequency as the rows; the 256 GEMM (0.15 ms of
    MLAS MatMul) moved 0.28-0.43 ms between runs while the tiny CNN's rows moved under 10% (issue 15).
    """
    from edgeres.runtimes.ort import ort_session
    from edgeres.runtimes.tiny import tiny_graph
    session = ort_session(tiny_graph(side), threads, spinning=False)
    feed = {"input": np.random.default_rng(1).standard_normal((1, 3, side, side), dtype=np.float32)}

    def run() -> None:
        session.run(None, feed)
    return Cell(f"reference-cnn@{side}", run)


def reference_side(macs: int | None, low: int = 16, high: int = 1024) -> int:
    """The reference CNN's side (px) for a row of `macs` MACs: the side whose MACs equal `macs`, rounded to a
    half-octave grid (16, 23, 32, 45, 64, 91, ...) so that a model made somewhat slower usually keeps its
    baseline's reference (the CLI passes the baseline's sides anyway). 32 when `macs` is unknown.

    Per row, not one for all: in 20 reruns on a busy 2-core box the row costing what one 64 px reference costs
    kept its paired ratio within -1..+2.5% while the row 4x cheaper drifted up to +12.6% (gate_power.py)."""
    import math

    from edgeres.runtimes.tiny import tiny_macs
    if not macs:
        return 32
    exact = max((macs / tiny_macs(1, 2)) ** 0.5, 1.0)
    return int(min(max(round(2 ** (round(2 * math.log2(exact)) / 2)), low), high))


def paired_burst(cell: Cell, reference: Cell, seconds: float) -> None:
    """One burst of ~`seconds` alternating a run of `cell` with a run of `reference`, both timed: each pair
    ran within a millisecond or so of each other, so a neighbour's load hits both. Records both cells'
    samples and burst medians, and on `cell` the median of the burst's run / reference-run ratios."""
    mine, theirs, end = [], [], time.perf_counter() + seconds
    while not mine or time.perf_counter() < end:
        mine.append(time_once(cell))
        theirs.append(time_once(reference))
    for target, samples in ((cell, mine), (reference, theirs)):
        target.samples_ms.extend(samples)
        target.chunk_medians_ms.append(percentile(samples, 50))
    cell.reference_ratios.append(percentile([a / b for a, b in zip(mine, theirs) if b > 0], 50))


def interleave_paired(cells: list[Cell], references: dict[str, Cell], min_runs: int, min_time_s: float,
                      bursts: int = 8, unpaired: tuple[Cell, ...] = ()) -> None:
    """`interleave` with each cell's reference (`references[cell.key]`) run alongside its every run
    (paired_burst), `unpaired` cells in the same rotation by plain bursts: a cell's `reference_ratios` hold one
    ratio per burst, however many processes or rotations produced them."""
    seconds = max(min_time_s / bursts, 1e-3)
    pending = [*cells, *unpaired]
    while pending:
        for cell in pending:
            if cell in unpaired:
                burst(cell, seconds)
            else:
                paired_burst(cell, references[cell.key], seconds)
        pending = [c for c in pending if not c.done(min_runs, min_time_s)]


def runner_cell(key: str, runner, inputs) -> Cell:
    """A cell that times `runner.run(inputs)` (any runtimes.base.Runner)."""
    return Cell(key, lambda: runner.run(inputs))


def median_ms(cells: list[Cell], min_runs: int, min_time_s: float, warmup: int = 3) -> dict[str, float]:
    """Warm up, interleave, and return each cell's median (ms): side-by-side comparisons of a few runners."""
    warm_up(cells, warmup)
    interleave(cells, min_runs, min_time_s)
    return {c.key: percentile(c.samples_ms, 50) for c in cells}


def rss_mb() -> float | None:
    """Current resident set size of this process in MiB (Linux /proc; None elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    import os
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """High-water mark of this process's resident set in MiB (getrusage ru_maxrss is KiB on Linux)."""
    import resource
    import sys
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10
