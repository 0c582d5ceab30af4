"""Bench with the paired reference CNN (rows carry reference_side / reference_ratios) and the paired CLI gate
over several baseline recordings. Short real measurements on tiny graphs; no speed targets."""
import json

from click.testing import CliRunner

from edgeres.bench import bench
from edgeres.cli import cli
from edgeres.runtimes.timing import reference_side
from tests.conftest import FAST


def test_rows_carry_their_reference_side_and_one_ratio_per_burst(tiny):
    report = bench(tiny[0], min_time_s=0.1, min_runs=5, warmup=2, batch_sizes=(1, 2), processes=2)
    for row in report["rows"]:
        assert row["reference_side"] == reference_side(row["macs"])
        assert len(row["reference_ratios"]) == len(row["chunk_medians_ms"]) > 0
        assert all(r > 0 for r in row["reference_ratios"])
    sides = report["paired_reference"]["sides"]
    assert set(sides) == {str(r["reference_side"]) for r in report["rows"]}  # skipped batch-2 cells add none
    assert all(s["stats"]["count"] > 0 for s in sides.values())


def test_without_paired_the_rows_have_no_ratios(tiny):
    report = bench(tiny[0], resolutions=[32], min_time_s=0.05, min_runs=3, warmup=1, paired=False)
    assert report["rows"][0]["reference_ratios"] == [] and "paired_reference" not in report


def test_reference_from_a_baseline_keeps_its_sides(tiny):
    base = bench(tiny[0], resolutions=[32], min_time_s=0.05, min_runs=3, warmup=1)
    slow = bench(tiny[1], resolutions=[32], min_time_s=0.05, min_runs=3, warmup=1, reference_from=base)
    assert reference_side(slow["rows"][0]["macs"]) != base["rows"][0]["reference_side"]  # its own would differ
    assert slow["rows"][0]["reference_side"] == base["rows"][0]["reference_side"]


def test_cli_paired_gate_over_two_recordings(tiny, tmp_path):
    """100% threshold: this runs on busy shared boxes (a rerun moved a row +80% with two training jobs beside
    it); the regressions are 5x ones."""
    fast, slow = tiny
    recordings = []
    for name in ("base1", "base2"):
        done = CliRunner().invoke(cli, ["bench", str(fast), "--out", str(tmp_path / name), *FAST])
        assert done.exit_code == 0, done.output
        recordings += ["--baseline", str(tmp_path / name / "bench.json")]
    gate = [*recordings, "--statistic", "paired", "--max-regression", "100"]
    again = CliRunner().invoke(cli, ["bench", str(fast), "--out", str(tmp_path / "again"), *FAST, *gate])
    assert again.exit_code == 0 and "latency gate passed (paired" in again.output, again.output
    other = CliRunner().invoke(cli, ["bench", str(slow), "--out", str(tmp_path / "other"), *FAST, *gate])
    assert other.exit_code == 1 and "latency gate FAILED (paired" in other.stderr, other.output  # 5x MACs: caught
    assert "graph changed since the baseline" in other.output  # ... and said to be another graph
    agreed = CliRunner().invoke(cli, ["bench", str(slow), "--out", str(tmp_path / "agreed"), *FAST, *recordings,
                                      "--statistic", "consensus", "--max-regression", "100"])
    assert agreed.exit_code == 1 and "latency gate FAILED (consensus" in agreed.stderr, agreed.output
    assert "(normalised +" in agreed.output and ", paired +" in agreed.output  # both parts shown per row
    faster = []  # the same graphs against recordings made 5x faster: a regression the paired gate must catch
    for name in ("base1", "base2"):
        report = json.loads((tmp_path / name / "bench.json").read_text())
        for row in report["rows"]:
            row["reference_ratios"] = [r / 5 for r in row["reference_ratios"]]
        (tmp_path / f"{name}-fast.json").write_text(json.dumps(report))
        faster += ["--baseline", str(tmp_path / f"{name}-fast.json")]
    slower = CliRunner().invoke(cli, ["bench", str(fast), "--out", str(tmp_path / "slow"), *FAST, *faster,
                                      "--statistic", "paired", "--max-regression", "100"])
    assert slower.exit_code == 1 and "latency gate FAILED (paired" in slower.stderr, slower.output
    rows = json.loads((tmp_path / "slow" / "bench.json").read_text())["rows"]
    first = json.loads((tmp_path / "base1" / "bench.json").read_text())["rows"]
    assert [r["reference_side"] for r in rows] == [r["reference_side"] for r in first]
