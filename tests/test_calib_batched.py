"""Calibration runs a dynamic-batch copy of a static batch-1 graph CALIB_BATCH images at a time: the same
MinMax ranges as one image per run; a graph that cannot take a batch falls back to one image per run."""
from types import SimpleNamespace

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgeres.build import calib, graph_entries  # noqa: E402
from edgeres.build.ort import preprocess  # noqa: E402
from edgeres.build.targets import CalibSettings, GraphEntry  # noqa: E402
from edgeres.data import open_images  # noqa: E402
from edgeres.manifests.export import read_export  # noqa: E402
from edgeres.manifests.preprocessing import Preprocessing  # noqa: E402
from tests.test_build_support import tiny_export  # noqa: E402

NORM = SimpleNamespace(preprocessing=Preprocessing((0.2860,), (0.3530,), 1.0))  # what calibration reads of export


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    export_dir = tiny_export(tmp_path_factory, "calib-batched")
    export = read_export(export_dir)
    graph = graph_entries(export)[0]
    return export, graph, preprocess(graph.file, tmp_path_factory.mktemp("pre") / "pre.onnx")


def spy(monkeypatch) -> list:
    """Record (model file, batch sizes) of every ranges_from_batches call."""
    calls, real = [], calib.ranges_from_batches

    def recording(model_path, input_name, batches, method, threads=None):
        batches = list(batches)
        calls.append((model_path.name, [len(b) for b in batches]))
        return real(model_path, input_name, batches, method, threads)
    monkeypatch.setattr(calib, "ranges_from_batches", recording)
    return calls


def test_batched_minmax_ranges_equal_one_image_per_run(prepared, monkeypatch):
    export, graph, pre = prepared
    images = open_images("fashion-mnist-mini", "train")
    calls = spy(monkeypatch)
    batched = calib.measured_ranges(pre, images, graph, export, CalibSettings(images=70))
    assert calls == [("pre-batched.onnx", [32, 32, 6])]  # a short tail is fine for a dynamic batch
    single = calib.ranges_from_batches(pre, graph.input_name, calib.calibration_batches(images, graph, export, 70),
                                       "minmax")
    assert calls[-1] == ("pre.onnx", [1] * 70) and batched.keys() == single.keys() and len(single) > 3
    for name in single:
        np.testing.assert_allclose(batched[name], single[name], rtol=1e-6, atol=1e-7)


def test_dynamic_batch_copy_makes_only_the_batch_symbolic(prepared):
    _, graph, pre = prepared
    model = onnx.load(calib.dynamic_batch_copy(pre))
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.input]
    assert dims == [["N", *graph.input_shape[1:]]]


def baked_reshape_graph(path) -> GraphEntry:
    """input 1x1x4x4 -> Reshape to the constant [1, 16] -> MatMul 16x3: cannot run a batch of 32."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((16, 3)).astype(np.float32), "w")
    shape = numpy_helper.from_array(np.array([1, 16], np.int64), "shape")
    graph = helper.make_graph([helper.make_node("Reshape", ["input", "shape"], ["flat"]),
                               helper.make_node("MatMul", ["flat", "w"], ["logits"])], "baked",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 4, 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])], [w, shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return GraphEntry(4, path, "0" * 64, "input", (1, 1, 4, 4), "logits", None, None)


def test_a_graph_that_cannot_take_a_batch_is_calibrated_one_image_per_run(tmp_path, monkeypatch):
    graph = baked_reshape_graph(tmp_path / "baked.onnx")
    calls = spy(monkeypatch)
    ranges = calib.measured_ranges(graph.file, open_images("fashion-mnist-mini", "train"), graph, NORM,
                                   CalibSettings(images=40))
    assert calls == [("baked-batched.onnx", [32, 8]), ("baked.onnx", [1] * 40)] and "flat" in ranges


def test_build_calibrates_its_graphs_side_by_side_with_the_ranges_of_one_after_the_other(tmp_path_factory,
                                                                                         monkeypatch):
    """build.ort.prepare_int8: graphs without a cache are calibrated in worker threads (one-thread sessions),
    each pre-processed once for both INT8 targets; the ranges equal a sequential calibration's."""
    import threading

    from edgeres.build import build
    from edgeres.build import ort as build_ort
    export_dir = tiny_export(tmp_path_factory, "calib-parallel")
    export = read_export(export_dir)
    where, real_calibrate = [], calib.calibrate
    preprocessed, real_preprocess = [], build_ort.preprocess

    def calibrate(*args, **kwargs):
        where.append((args[1].resolution, threading.current_thread().name, args[-1] if len(args) > 5 else None))
        return real_calibrate(*args, **kwargs)

    def counted_preprocess(src, *args, **kwargs):
        preprocessed.append(src.name)
        return real_preprocess(src, *args, **kwargs)
    monkeypatch.setattr(build_ort, "calibrate", calibrate)
    monkeypatch.setattr(build_ort, "preprocess", counted_preprocess)
    monkeypatch.setattr("edgeres.runtimes.base.usable_cpus", lambda: 2)
    build(export_dir, export_dir, ["ort-int8", "int8-qdq"], calib_images=64, evaluate=False)
    workers = [(res, threads) for res, name, threads in where if name.startswith("edgeres-calib")]
    assert sorted(workers) == [(16, 1), (28, 1)]  # one graph per worker, one ORT thread each
    assert sorted(preprocessed) == ["tiny-16.onnx", "tiny-28.onnx"]  # once per graph, not once per target
    for graph in graph_entries(export):
        cached = calib.load_ranges(calib.cache_file(export_dir / "calib", graph, "minmax"),
                                   calib.calib_key(graph, CalibSettings(images=64), calib.selection_fingerprint(
                                       open_images("fashion-mnist-mini", "train"), 64)))
        pre = preprocess(graph.file, tmp_path_factory.mktemp("seq") / "pre.onnx", static=True)
        sequential = calib.measured_ranges(pre, open_images("fashion-mnist-mini", "train"), graph, export,
                                           CalibSettings(images=64))
        assert cached.keys() == sequential.keys() and len(cached) > 3
        for name in cached:  # one vs two intra-op threads: the same floats up to summation order
            np.testing.assert_allclose(cached[name], sequential[name], rtol=1e-5, atol=1e-6)
