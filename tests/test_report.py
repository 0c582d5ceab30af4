"""bench.json schema round trip, CSV rows, Markdown and plots, Pareto front."""
import json

import pytest
from click.testing import CliRunner

from edgeres.choose.pareto import dominates, pareto_front
from edgeres.cli import cli
from edgeres.errors import EdgeresError
from edgeres.manifests._base import write_manifest
from edgeres.manifests.bench import CSV_COLUMNS, read_bench, write_bench
from edgeres.report import report
from edgeres.runtimes.stats import add_ratios, summarize


def constructed_report(device="cpu") -> dict:
    """A bench report as edgeres.bench.bench returns it, with accuracy on two targets."""
    rows = []
    for target, speed, acc in (("ort-fp32", 1.0, {112: 80.0, 96: 78.5, 64: 70.0}),
                               ("ort-int8", 0.4, {112: 79.2, 96: 77.0, 64: 69.5})):
        for res in (112, 96, 64):
            samples = [speed * res * res / 5000 * f for f in (1.0, 1.1, 0.9, 1.05)]
            rows.append({"target": target, "resolution": res, "batch": 1, "backend": "ort",
                         "provider": "CPUExecutionProvider", "precision": "fp32", "macs": res * res * 1000,
                         "stats": summarize(samples), "samples_ms": samples, "img_per_s": 1.0, "gflops_per_s": 1.0,
                         "accuracy": {"top1": acc[res], "measured_with": "build.json"},
                         "memory": {"peak_rss_mb": 100.0, "prepare_rss_delta_mb": 1.0}, "power": None})
    add_ratios(rows)
    return {"source": {"kind": "build", "path": "/x/build.json"}, "device": device, "settings": {},
            "reference": {"stats": summarize([0.15, 0.16])}, "machine": {"device": device}, "rows": rows, "skipped": []}


def test_bench_json_round_trip_keeps_raw_samples(tmp_path):
    original = constructed_report()
    paths = write_bench(original, tmp_path / "bench")
    back = read_bench(paths["json"])
    assert (back["kind"], back["format_version"]) == ("bench", 1)
    assert back["rows"] == json.loads(json.dumps(original["rows"]))
    header, first = paths["csv"].read_text().splitlines()[:2]
    assert header.split(",") == list(CSV_COLUMNS)
    assert first.startswith("ort-fp32,112,1,ort,CPUExecutionProvider,fp32,")


def test_read_bench_rejects_other_manifests_and_damage(tmp_path):
    (tmp_path / "bench.json").write_text(json.dumps({"kind": "export", "format_version": 1}))
    with pytest.raises(EdgeresError, match="not a bench manifest"):
        read_bench(tmp_path)
    write_manifest(tmp_path / "b" / "bench.json", "bench", {**constructed_report(), "rows": [{"target": "x"}]})
    with pytest.raises(EdgeresError, match="resolution"):
        read_bench(tmp_path / "b")


def test_report_writes_plots_markdown_and_front(tmp_path):
    write_bench(constructed_report("cpu"), tmp_path / "cpu")
    write_bench(constructed_report("jetson"), tmp_path / "jetson")
    result = CliRunner().invoke(cli, ["report", str(tmp_path / "cpu" / "bench.json"), str(tmp_path / "jetson"),
                                      "--out", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    for name in ("latency_vs_macs.png", "latency_vs_macs.svg", "accuracy_vs_latency.png", "accuracy_vs_latency.svg",
                 "report.md", "results.csv"):
        assert (tmp_path / "rep" / name).stat().st_size > 500 or name.endswith(("md", "csv"))
    assert (tmp_path / "rep" / "latency_vs_macs.png").read_bytes()[:4] == b"\x89PNG"
    markdown = (tmp_path / "rep" / "report.md").read_text()
    assert "Pareto front" in markdown and "ort-fp32 [jetson]" in (tmp_path / "rep" / "results.csv").read_text()


def test_report_without_accuracy_has_no_accuracy_plot(tmp_path):
    bare = constructed_report()
    for row in bare["rows"]:
        row["accuracy"] = None
    write_bench(bare, tmp_path / "b")
    paths = report([tmp_path / "b" / "bench.json"], tmp_path / "rep")
    assert "accuracy_png" not in paths and paths["png"].stat().st_size > 0
    assert "No accuracy known" in paths["markdown"].read_text()


def test_report_adds_the_cascade_rows(tmp_path):
    write_bench(constructed_report(), tmp_path / "b")
    rows = [{"method": m, "top1": t, "mean_macs": macs, "mean_latency_ms": ms, "p50_latency_ms": ms,
             "images": 10, "stage_share": [0.5, 0.5]}
            for m, t, macs, ms in (("highest", 80.0, 12.5e6, 2.0), ("random", 75.0, 8e6, 1.5),
                                   ("cascade", 79.6, 5e6, 1.0))]
    cascade = {"kind": "cascade", "format_version": 1, "source": {"path": "x", "target": "ort-fp32"},
               "stages": [{"resolution": 64}, {"resolution": 112}], "report_split": "val[5:10]", "rows": rows,
               "thresholds": [0.9], "confidence": "max-softmax", "max_drop": 0.5}
    (tmp_path / "cascade.json").write_text(json.dumps(cascade))
    paths = report([tmp_path / "b" / "bench.json"], tmp_path / "rep", cascades=[tmp_path / "cascade.json"])
    markdown = paths["markdown"].read_text()
    assert "| run-time choice, ort-fp32 64/112 px | cascade | 79.60 | 5.000 | 1.000 | val[5:10] |" in markdown
    assert paths["accuracy_png"].stat().st_size > 500
    (tmp_path / "cascade.json").write_text(json.dumps({"kind": "bench"}))
    with pytest.raises(EdgeresError, match="not a cascade.json"):
        report([tmp_path / "b" / "bench.json"], tmp_path / "rep", cascades=[tmp_path / "cascade.json"])


def test_pareto_front():
    points = [(1, 50), (2, 60), (2, 55), (3, 58), (4, 70), (4, 70), (5, 69), (None, 99)]
    assert pareto_front(points, lambda p: p[0], lambda p: p[1]) == [(1, 50), (2, 60), (4, 70), (4, 70)]
    assert dominates((1, 5), (2, 5)) and not dominates((1, 5), (1, 5)) and not dominates((1, 4), (2, 5))
    assert pareto_front([], lambda p: p, lambda p: p) == []
