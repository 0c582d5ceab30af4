"""Real measurements on tiny ONNX graphs (short min-time; no speed targets), CLI gate end to end, backends."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeres._io import sha256_file
from edgeres.bench import bench
from edgeres.cli import cli
from edgeres.errors import EdgeresError
from edgeres.manifests._base import read_manifest, write_manifest
from edgeres.runtimes.tiny import tiny_macs
from tests.conftest import FAST


def test_bench_report_has_stats_ratios_machine_and_reference(tiny):
    report = bench(tiny[0], min_time_s=0.1, min_runs=5, warmup=2, batch_sizes=(1, 2))
    rows = {(r["resolution"], r["batch"]): r for r in report["rows"]}
    assert set(rows) == {(64, 1), (48, 1), (32, 1)}  # static batch-1 graphs: batch 2 is skipped with a reason
    assert all("static batch" in s["reason"] for s in report["skipped"]) and len(report["skipped"]) == 3
    top, low = rows[(64, 1)], rows[(32, 1)]
    assert top["macs"] == tiny_macs(64, 2) and low["macs_ratio"] == pytest.approx(tiny_macs(32, 2) / tiny_macs(64, 2))
    assert top["latency_ratio"] == 1.0 and len(top["samples_ms"]) >= 5 and sum(top["samples_ms"]) >= 100
    assert top["stats"]["p50"] <= top["stats"]["p90"] <= top["stats"]["p99"] and top["gflops_per_s"] > 0
    assert top["memory"]["peak_rss_mb"] > 0
    assert report["reference"]["gflops_per_s"] > 0 and "MatMul 256x256" in report["reference"]["workload"]
    assert report["machine"]["cpu_model"] and report["machine"]["onnxruntime"]


def test_worker_processes_keep_one_median_each(tiny):
    report = bench(tiny[0], resolutions=[32], min_time_s=0.05, min_runs=3, warmup=1, processes=2)
    assert len(report["rows"][0]["process_medians_ms"]) == 2 and report["settings"]["processes"] == 2


def test_cli_gate_passes_on_a_rerun_and_fails_on_a_regression(tiny, tmp_path):
    """The real end-to-end check. Normalised p50, and a 100% threshold because this runs on
    busy shared 2-core boxes (FACTS: 6-70% drift). The regression: a baseline whose rows are 5x faster than
    measured, and a graph of about 5x the MACs (gated, with a note that its graph changed). A rerun moved a row
    by +80% with two training jobs beside it; the 5x cases measure +350..415%, far above 100%."""
    fast, slow = tiny
    gate = ["--normalize", "--max-regression", "100"]
    first = CliRunner().invoke(cli, ["bench", str(fast), "--out", str(tmp_path / "base"), *FAST])
    assert first.exit_code == 0, first.output
    baseline = str(tmp_path / "base" / "bench.json")
    again = CliRunner().invoke(cli, ["bench", str(fast), "--out", str(tmp_path / "again"), *FAST,
                                     "--baseline", baseline, *gate])
    assert again.exit_code == 0, again.output
    assert "latency gate passed" in again.output
    faster = json.loads(Path(baseline).read_text())
    for row in faster["rows"]:
        row["stats"] = {k: v / 5 if isinstance(v, float) else v for k, v in row["stats"].items()}
    (tmp_path / "faster.json").write_text(json.dumps(faster))
    slower = CliRunner().invoke(cli, ["bench", str(fast), "--out", str(tmp_path / "slow"), *FAST,
                                      "--baseline", str(tmp_path / "faster.json"), *gate])
    assert slower.exit_code == 1 and "regressed" in slower.output
    assert "latency gate FAILED" in slower.stderr and slower.stderr.strip().count("\n") == 0
    other = CliRunner().invoke(cli, ["bench", str(slow), "--out", str(tmp_path / "other"), *FAST,
                                     "--baseline", baseline, *gate])
    assert other.exit_code == 1 and "latency gate FAILED" in other.stderr, other.output
    assert "graph changed since the baseline; MACs" in other.output


@pytest.mark.parametrize("device, needs", [("jetson", "tegrastats"), ("cuda", "TensorRT")])
def test_gpu_devices_off_device_fail_in_one_line(tiny, device, needs):
    result = CliRunner().invoke(cli, ["bench", str(tiny[0]), "--device", device])
    assert result.exit_code == 1 and needs in result.stderr
    assert result.stderr.strip().count("\n") == 0


def test_bench_without_torch(tiny, tmp_path):
    code = ("import sys; sys.modules['torch'] = None\n"
            "from edgeres.bench import bench\n"
            f"r = bench({str(tiny[0])!r}, resolutions=[32], min_time_s=0.05, min_runs=3, warmup=1, out={str(tmp_path)!r})\n"
            "assert not any(m.split('.')[0] == 'torch' and sys.modules[m] is not None for m in sys.modules)\n"
            "print(len(r['rows']))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "1", run.stderr
    assert (tmp_path / "bench.json").is_file() and (tmp_path / "bench.csv").is_file()


def test_bad_inputs_are_one_line_errors(tiny, tmp_path):
    with pytest.raises(EdgeresError, match="neither build.json nor export.json"):
        bench(tmp_path)
    with pytest.raises(EdgeresError, match="available: onnx-fp32"):
        bench(tiny[0], targets=["trt-fp16"])
    export = read_manifest(tiny[0], "export")
    export["graphs"][0]["file"] = "../../etc/passwd"
    body = {k: v for k, v in export.items() if k not in ("kind", "format_version", "edgeres_version", "_path")}
    write_manifest(tmp_path / "evil" / "export.json", "export", body)
    with pytest.raises(EdgeresError, match="escapes its directory"):
        bench(tmp_path / "evil")


def build_body(export_dir, artifacts: list[dict]) -> dict:
    """A build.json body with the schema's required fields, describing `artifacts` built from `export_dir`."""
    export = read_manifest(export_dir, "export")
    return {"export": {"path": str(export_dir), "sha256": sha256_file(export["_path"])}, "classes": [],
            "normalization": export["normalization"], "eval_crop_ratio": 1.0, "artifacts": artifacts}


def test_build_dir_rows_carry_accuracy(tiny, tmp_path):
    graph = read_manifest(tiny[0], "export")["graphs"][-1]
    (tmp_path / "m.onnx").write_bytes((tiny[0] / graph["file"]).read_bytes())
    artifact = {"target": "ort-fp32", "resolution": 32, "file": "m.onnx", "backend": "ort", "precision": "fp32",
                "macs": graph["macs"], "accuracy": {"top1": 71.5, "measured_with": "onnxruntime", "count": 500,
                                                    "top1_ci95": [67.4, 75.3]}}
    artifact["sha256"] = sha256_file(tmp_path / "m.onnx")
    trt = {**artifact, "target": "trt-fp16", "backend": "trt", "file": "m.engine"}
    write_manifest(tmp_path / "build.json", "build", build_body(tiny[0], [artifact, trt]))
    report = bench(tmp_path, min_time_s=0.05, min_runs=3, warmup=1)
    assert [(r["target"], r["accuracy"]["top1"]) for r in report["rows"]] == [("ort-fp32", 71.5)]
    assert (report["rows"][0]["accuracy"]["top1_ci95"], report["rows"][0]["accuracy"]["count"]) == ([67.4, 75.3], 500)


def test_torch_eager_backend_switches_the_rsnet(tiny_rsnet, tiny_spec, tmp_path):
    """An export dir whose checkpoint exists: eager rows per resolution, ORT rows take the checkpoint's top-1."""
    torch = pytest.importorskip("torch")
    from edgeres.manifests.checkpoint import CheckpointInfo
    from edgeres.models import at_resolution
    from edgeres.models.checkpoint import save_checkpoint
    info = CheckpointInfo(tiny_spec, (28, 20, 12), (0.5,), (0.5,), metrics={"28": {"top1": 80.0, "top5": 99.0}})
    save_checkpoint(tmp_path / "ckpt", tiny_rsnet, info)
    graphs = []
    for res in (28, 12):
        with at_resolution(tiny_rsnet, res):
            torch.onnx.export(tiny_rsnet, (torch.zeros(1, 1, res, res),), str(tmp_path / f"r{res}.onnx"),
                              dynamo=False, opset_version=17, input_names=["input"], output_names=["logits"])
        graphs.append({"resolution": res, "file": f"r{res}.onnx", "macs": 1000 * res * res,
                       "sha256": sha256_file(tmp_path / f"r{res}.onnx"), "input": {"name": "input", "shape": [1, 1, res, res]},
                       "output": {"name": "logits", "shape": [1, 10]}})
    write_manifest(tmp_path / "export.json", "export", {  # export carries the checkpoint's metrics forward
        "checkpoint": {"path": "ckpt", "metrics": info.metrics}, "classes": [], "graphs": graphs,
        "normalization": {"mean": [0.5], "std": [0.5]}, "eval_crop_ratio": 1.0})
    report = bench(tmp_path, backends=("ort", "torch"), threads=1, min_time_s=0.05, min_runs=3, warmup=1)
    got = {(r["target"], r["resolution"]): (r["accuracy"] or {}).get("top1") for r in report["rows"]}
    assert got == {("onnx-fp32", 28): 80.0, ("onnx-fp32", 12): None, ("torch-eager", 28): 80.0,
                   ("torch-eager", 12): None}
