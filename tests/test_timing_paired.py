"""timing.paired_burst / interleave_paired bookkeeping and reference_side, with cells that report device ms."""
import itertools

import pytest

from edgeres.runtimes.timing import (
    Cell,
    interleave_paired,
    paired_burst,
    reference_side,
)
from edgeres.runtimes.tiny import tiny_macs


def fixed(key: str, *ms: float) -> Cell:
    """A cell whose runs 'take' the given device ms in turn (time_once uses a returned value as device time)."""
    values = itertools.cycle(ms)
    return Cell(key, lambda: next(values))


def test_paired_burst_records_both_cells_and_the_median_run_ratio():
    cell, ref = fixed("model", 2.0, 3.0, 40.0), fixed("ref", 1.0)
    paired_burst(cell, ref, seconds=0.0)  # at least one pair
    assert cell.samples_ms == [2.0] and ref.samples_ms == [1.0] and cell.reference_ratios == [2.0]
    cell, ref = fixed("model", 2.0, 3.0, 40.0), fixed("ref", 1.0, 1.0, 2.0)
    for _ in range(3):
        paired_burst(cell, ref, seconds=0.0)
    assert cell.reference_ratios == [2.0, 3.0, 20.0] and cell.chunk_medians_ms == [2.0, 3.0, 40.0]
    assert ref.chunk_medians_ms == [1.0, 1.0, 2.0] and ref.reference_ratios == []


def test_interleave_paired_times_unpaired_cells_in_the_same_rotation():
    rows, ref, gemm = [fixed("a", 4.0), fixed("b", 2.0)], fixed("ref", 1.0), fixed("gemm", 0.5)
    interleave_paired(rows, {"a": ref, "b": ref}, min_runs=3, min_time_s=0.0, unpaired=(gemm,))  # ~1 ms bursts
    assert all(len(c.samples_ms) >= 3 for c in [*rows, gemm])
    assert len(ref.samples_ms) == sum(len(c.samples_ms) for c in rows)  # one reference run beside each row run
    for row, ratio in zip(rows, (4.0, 2.0)):
        assert set(row.reference_ratios) == {ratio} and len(row.reference_ratios) == len(row.chunk_medians_ms)
    assert gemm.reference_ratios == [] and set(gemm.samples_ms) == {0.5}


@pytest.mark.parametrize("side, expected", [(48, 45), (40, 45), (36, 32), (64, 64), (80, 91), (3, 16), (5000, 1024)])
def test_reference_side_is_the_nearest_half_octave(side, expected):
    assert reference_side(tiny_macs(side, 2)) == expected


def test_reference_side_default_when_rows_have_no_macs():
    assert reference_side(None) == 32 and reference_side(0) == 32


def test_each_cell_runs_beside_its_own_reference():
    rows, small, big = [fixed("a", 4.0), fixed("b", 2.0)], fixed("small", 2.0), fixed("big", 8.0)
    interleave_paired(rows, {"a": big, "b": small}, min_runs=2, min_time_s=0.0)
    assert set(rows[0].reference_ratios) == {0.5} and set(rows[1].reference_ratios) == {1.0}
    assert len(big.samples_ms) == len(rows[0].samples_ms) and len(small.samples_ms) == len(rows[1].samples_ms)
