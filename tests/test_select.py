"""select: Pareto front and budget choice on constructed bench rows (exact picks, ties, nothing fits), CLI."""
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from edgeres.choose.select import select
from edgeres.cli import cli
from edgeres.errors import EdgeresError
from edgeres.manifests._base import write_manifest


def row(target, res, p50, top1, macs, batch=1, p90=None):
    return {"target": target, "resolution": res, "batch": batch, "backend": "ort", "precision": "fp32",
            "macs": macs, "stats": {"p50": p50, "p90": p90 if p90 is not None else p50 * 1.5, "mean": p50},
            "accuracy": None if top1 is None else {"top1": top1, "measured_with": "onnxruntime"}}


ROWS = [row("ort-fp32", 28, 4.0, 80.0, 60_000_000),
        row("ort-fp32", 20, 2.0, 75.0, 30_000_000),
        row("ort-int8", 20, 2.0, 75.0, 29_000_000),  # exact (latency, top-1) tie with ort-fp32 @ 20
        row("ort-int8", 28, 3.0, 74.0, 60_000_000),  # dominated by either @ 20
        row("ort-int8", 12, 1.0, 70.0, 10_000_000),
        row("ort-fp32", 12, 0.5, None, 10_000_000),  # no accuracy known: left out
        row("ort-fp32", 28, 0.1, 99.0, 60_000_000, batch=8)]  # batch 8: not a per-image latency


@pytest.fixture
def bench_json(tmp_path):
    return write_manifest(tmp_path / "bench" / "bench.json", "bench",
                          {"device": "cpu", "machine": {}, "rows": ROWS})


def names(deployments):
    return [(d.target, d.resolution) for d in deployments]


def test_front_keeps_ties_and_drops_dominated_rows(bench_json):
    sel = select([bench_json])
    assert names(sel.front) == [("ort-int8", 12), ("ort-fp32", 20), ("ort-int8", 20), ("ort-fp32", 28)]
    assert sel.chosen is None and sel.without_accuracy == ("ort-fp32 @ 12 px (cpu)",)
    assert len(sel.candidates) == 5  # the batch-8 row and the row without accuracy are not candidates


@pytest.mark.parametrize("budgets, expected", [
    ({"budget_ms": 2.5}, ("ort-int8", 20)),  # tie on top-1 and latency -> fewer MACs
    ({"budget_ms": 4.0}, ("ort-fp32", 28)),  # the budget is inclusive
    ({"budget_ms": 1.9}, ("ort-int8", 12)),
    ({"budget_mmacs": 30}, ("ort-int8", 20)),
    ({"budget_mflops": 60}, ("ort-int8", 20)),  # 60 MFLOPs = 30 MMACs
    ({"budget_mflops": 57}, ("ort-int8", 12)),  # int8 @ 20 needs 58
    ({"budget_ms": 10, "budget_mmacs": 20}, ("ort-int8", 12)),  # every budget must hold
])
def test_budget_choice_exact(bench_json, budgets, expected):
    assert names([select([bench_json], **budgets).chosen]) == [expected]


def test_statistic_changes_the_latency_used(bench_json):
    sel = select([bench_json], budget_ms=4.0, statistic="p90")  # p90 = 1.5 x p50: @28 fp32 is 6 ms now
    assert names([sel.chosen]) == [("ort-int8", 20)] and sel.chosen.latency_ms == 3.0
    with pytest.raises(EdgeresError, match="no 'p99' latency: choose one of mean, p50, p90"):
        select([bench_json], statistic="p99")


def test_nothing_fits_names_the_fastest_and_the_cheapest(bench_json):
    with pytest.raises(EdgeresError, match=r"nothing fits --budget-ms 0.5: the fastest is ort-int8 @ 12 px \(cpu\) "
                                           r"at 1.000 ms \(70.00% top-1\)"):
        select([bench_json], budget_ms=0.5)
    with pytest.raises(EdgeresError, match="the cheapest is ort-int8 @ 12 px .cpu. at 10.000 MMACs"):
        select([bench_json], budget_mmacs=5)
    with pytest.raises(EdgeresError, match="must be a finite number > 0"):
        select([bench_json], budget_ms=0)


def test_build_accuracy_overrides_the_rows(bench_json, tmp_path):
    artifact = {"target": "ort-int8", "resolution": 12, "file": "x.onnx", "sha256": "0" * 64, "backend": "ort",
                "precision": "int8", "macs": 10_000_000, "accuracy": {"top1": 90.0, "measured_with": "onnxruntime"}}
    write_manifest(tmp_path / "build" / "build.json", "build", {
        "export": {"path": "e", "sha256": "0" * 64}, "classes": [], "normalization": {"mean": [0.5], "std": [0.5]},
        "eval_crop_ratio": 1.0, "artifacts": [artifact]})
    sel = select([bench_json], [tmp_path / "build"], budget_ms=1.0)
    assert names([sel.chosen]) == [("ort-int8", 12)] and sel.chosen.top1 == 90.0
    assert names(sel.front) == [("ort-int8", 12)]  # 90% at 1 ms now dominates everything slower
    assert "build" in sel.chosen.accuracy_from


def test_no_accuracy_anywhere_is_a_one_line_error(tmp_path):
    path = write_manifest(tmp_path / "bench.json", "bench", {"device": "cpu", "rows": [row("a", 12, 1.0, None, 1)]})
    with pytest.raises(EdgeresError, match="no bench row has a known top-1: pass --build DIR"):
        select([path])


def test_json_and_markdown_outputs(bench_json, tmp_path):
    sel = select([bench_json], budget_ms=2.5)
    sel.write(tmp_path / "s.json", tmp_path / "s.md")
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["chosen"]["target"] == "ort-int8" and data["chosen"]["latency_ms"] == 2.0
    assert [c["on_front"] for c in data["candidates"]] == [True, True, True, False, True]
    md = (tmp_path / "s.md").read_text()
    assert md.count("\n| ort") == 4 and "| ort-int8 @ 20 px (cpu) | 75.00 | 2.000 | 3.000 | 29.000 | **chosen** |" in md


def test_cli_prints_the_choice_and_writes_json(bench_json, tmp_path):
    result = CliRunner().invoke(cli, ["select", str(bench_json), "--budget-ms", "2.5", "--json",
                                      str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    assert "chosen for --budget-ms 2.5: ort-int8 @ 20 px (cpu), top-1 75.00%" in result.stdout
    assert json.loads((tmp_path / "s.json").read_text())["budgets"] == {"ms": 2.5}


@pytest.mark.parametrize("args, message", [
    (["{bench}", "--budget-ms", "0.1"], "nothing fits --budget-ms 0.1: the fastest is"),
    (["{export}"], "is not a bench manifest"),
    (["{bench}", "--build", "{tmp}"], "has neither build.json nor export.json"),
])
def test_cli_one_line_errors(bench_json, tmp_path, args, message):
    export = write_manifest(tmp_path / "e" / "export.json", "export", {"graphs": []})
    args = [a.format(bench=bench_json, export=export, tmp=tmp_path) for a in args]
    result = CliRunner().invoke(cli, ["select"] + args)
    assert result.exit_code == 1, result.output
    assert message in result.stderr and result.stderr.strip().count("\n") == 0


def test_select_imports_without_torch(bench_json):
    code = ("import sys; sys.modules['torch'] = None\n"
            "from edgeres.choose import select\n"
            f"print(select([{str(bench_json)!r}], budget_ms=2.5).chosen.target)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == "ort-int8", run.stderr
