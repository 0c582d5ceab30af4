"""The runner interface: every backend behind one infer/run contract, and the stages that use it backend-free."""
import numpy as np
import pytest
from click.testing import CliRunner

from edgeres._io import sha256_file
from edgeres.cli import cli
from edgeres.errors import EdgeresError
from edgeres.manifests._base import read_manifest, write_manifest
from edgeres.runtimes.base import SkipCell, in_chunks
from edgeres.runtimes.ort import OrtRunner

torch = pytest.importorskip("torch")

from tests.test_cascade import (  # noqa: E402
    RES,
    export_dir,  # noqa: E402,F401,F811 - pytest finds the reused fixture by name
    tiny_net,
)


def test_in_chunks_feeds_the_static_batch_and_refuses_a_remainder():
    seen = []

    def one(x):
        seen.append(len(x))
        return x[:, :1, 0, 0]
    x = np.arange(6 * 4, dtype=np.float32).reshape(6, 1, 2, 2)
    assert np.array_equal(in_chunks(x, 2, one), x[:, :1, 0, 0]) and seen == [2, 2, 2]
    assert in_chunks(x, None, one).shape == (6, 1) and seen[-1] == 6
    with pytest.raises(SkipCell, match="static batch of 4"):
        in_chunks(x, 4, one)


def test_ort_runner_infers_any_count_through_a_static_batch_graph(export_dir):
    runner = OrtRunner(export_dir / f"r{RES[0]}.onnx", threads=1)
    x = np.random.default_rng(0).standard_normal((5, 1, RES[0], RES[0])).astype(np.float32)
    with torch.no_grad():
        expected = tiny_net()(torch.from_numpy(x)).numpy()
    assert runner.static_batch == 1 and np.abs(runner.infer(x) - expected).max() < 1e-4
    assert runner.example_input(1).shape == (1, 1, RES[0], RES[0])
    with pytest.raises(SkipCell, match="static batch of 1"):
        runner.example_input(8)


class TorchStandIn:
    """A second backend for the cascade: the same tiny network run by PyTorch, opened like any runner."""

    provider, static_batch = "torch-cpu", None

    def __init__(self, artifact):
        self.net = tiny_net()

    def infer(self, x):
        with torch.no_grad():
            return self.net(torch.from_numpy(x)).numpy()


def test_cascade_runs_through_another_backend(export_dir, monkeypatch):
    import edgeres.runtimes
    from edgeres.choose.cascade import CascadeRunner
    from edgeres.data import open_images
    images = open_images("fashion-mnist-mini", "val")
    ort = CascadeRunner.from_manifest(export_dir, [0.4, 0.3])
    expected = [ort(images.image(i)) for i in range(30)]
    opened = []
    monkeypatch.setattr(edgeres.runtimes, "open_runner", lambda artifact, *a, **k: opened.append(artifact.resolution)
                        or TorchStandIn(artifact))
    other = CascadeRunner.from_manifest(export_dir, [0.4, 0.3])
    got = [other(images.image(i)) for i in range(30)]
    assert [(r.prediction, r.stage) for r in got] == [(r.prediction, r.stage) for r in expected]
    assert sorted(opened) == sorted(RES)  # every stage came from the substituted backend


def build_dir_with_an_engine(export_dir, tmp_path):
    """build.json with one ORT graph and one TensorRT engine row (the engine file need not exist off a device)."""
    export = read_manifest(export_dir, "export")
    graph = export["graphs"][0]
    (tmp_path / "g.onnx").write_bytes((export_dir / graph["file"]).read_bytes())
    row = {"target": "ort-fp32", "resolution": graph["resolution"], "file": "g.onnx", "backend": "ort",
           "sha256": sha256_file(tmp_path / "g.onnx"), "precision": "fp32", "macs": graph["macs"]}
    engine = {**row, "target": "trt-fp16", "backend": "trt", "file": "g.engine"}
    write_manifest(tmp_path / "build.json", "build", {
        "export": {"path": str(export_dir), "sha256": sha256_file(export["_path"])}, "classes": [str(i) for i in
        range(10)], "data": "fashion-mnist-mini", "normalization": export["normalization"], "eval_crop_ratio": 1.0,
        "artifacts": [row, engine]})
    return tmp_path


def test_eval_of_a_build_with_an_engine_off_a_device(export_dir, tmp_path, block_modules, caplog):
    block_modules("tensorrt", "pycuda")
    build = build_dir_with_an_engine(export_dir, tmp_path)
    result = CliRunner().invoke(cli, ["eval", str(build), "--limit", "20", "--target", "trt-fp16"])
    assert result.exit_code == 1 and result.stderr.strip().count("\n") == 0
    assert "needs TensorRT and a CUDA device" in result.stderr and "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["eval", str(build), "--limit", "20"])
    assert result.exit_code == 0 and "ort-fp32@" in result.output and "trt-fp16" not in result.output
    assert "skipping the TensorRT engines" in caplog.text


def test_cascade_over_an_engine_target_off_a_device_is_one_line(export_dir, tmp_path, block_modules):
    from edgeres.choose.cascade import load_source
    block_modules("tensorrt", "pycuda")
    with pytest.raises(EdgeresError, match="needs TensorRT and a CUDA device"):
        load_source(build_dir_with_an_engine(export_dir, tmp_path), "trt-fp16")
