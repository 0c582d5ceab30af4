"""Build evaluates a static batch-1 artifact through its dynamic-batch copy only where the copy gives the graph's
logits: the same top-1/top-5 as one image per run; a graph that cannot take a batch, or computes something
else on one, is run as it is."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgeres.build import graph_entries  # noqa: E402
from edgeres.build.batching import BATCH, batched_scorer  # noqa: E402
from edgeres.build.measure import accuracy_json, ort_accuracy_json  # noqa: E402
from edgeres.data import open_images  # noqa: E402
from edgeres.manifests.export import read_export  # noqa: E402
from edgeres.runtimes.ort import OrtRunner  # noqa: E402
from tests.test_build_support import tiny_export  # noqa: E402
from tests.test_calib_batched import baked_reshape_graph  # noqa: E402


def opened(path):
    return OrtRunner(path).infer


def test_batched_evaluation_gives_the_one_image_per_run_accuracy(tmp_path_factory):
    export = read_export(tiny_export(tmp_path_factory, "batched-eval"))
    graph = graph_entries(export)[0]
    images = open_images("fashion-mnist-mini", "val")
    batched = ort_accuracy_json(graph, graph.file, images, export, 300)
    single = accuracy_json(graph, opened(graph.file), images, export, 300, "onnxruntime-cpu", batch=1)
    assert graph.input_shape[0] == 1 and batched["run_as"].startswith("a dynamic-batch copy")
    assert {k: batched[k] for k in ("top1", "top5", "count")} == {k: single[k] for k in ("top1", "top5", "count")}
    assert single["count"] == 300 and 0 < single["top1"] < 100


def test_a_graph_with_a_baked_batch_is_run_as_it_is(tmp_path):
    graph = baked_reshape_graph(tmp_path / "baked.onnx")
    scorer, batch, how = batched_scorer(graph.file, graph.input_shape, tmp_path, opened)
    assert (batch, how) == (1, "the graph itself, one image per run")
    assert scorer(np.zeros((1, 1, 4, 4), np.float32)).shape == (1, 3)


def batch_mixing_graph(path):
    """input N x 1x4x4 minus its mean over the WHOLE batch -> flatten -> MatMul: any batch runs, but a batch of
    N > 1 gives other logits than its images one at a time."""
    w = numpy_helper.from_array(np.random.default_rng(1).standard_normal((16, 3)).astype(np.float32), "w")
    flat = numpy_helper.from_array(np.array([-1, 16], np.int64), "flat_shape")
    nodes = [helper.make_node("ReduceMean", ["input"], ["mean"], keepdims=1),  # no axes: all of them, batch too
             helper.make_node("Sub", ["input", "mean"], ["centred"]),
             helper.make_node("Reshape", ["centred", "flat_shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "w"], ["logits"])]
    graph = helper.make_graph(nodes, "mixing", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 4, 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])], [w, flat])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_a_copy_that_computes_other_logits_is_not_used(tmp_path):
    path = batch_mixing_graph(tmp_path / "mixing.onnx")
    x = np.random.default_rng(2).standard_normal((BATCH, 1, 4, 4)).astype(np.float32)
    from edgeres.build.batching import dynamic_batch_copy
    copy = OrtRunner(dynamic_batch_copy(path, tmp_path / "copy.onnx")).infer
    assert not np.allclose(copy(x), opened(path)(x), atol=1e-3)  # the copy runs a batch, with other logits
    _, batch, how = batched_scorer(path, [1, 1, 4, 4], tmp_path, opened)
    assert (batch, how) == (1, "the graph itself, one image per run")


def test_an_interrupt_while_opening_the_copy_is_not_a_failed_copy(tmp_path):
    # a signal that lands while ORT imports (ImportError raised from it) stops the run: no one-image fallback
    import signal

    from edgeres.errors import Interrupted
    path = batch_mixing_graph(tmp_path / "mixing.onnx")

    def opening(model_path):
        if model_path != path:
            raise ImportError("initialization failed") from Interrupted(signal.SIGTERM)
        return opened(model_path)
    with pytest.raises(Interrupted):
        batched_scorer(path, [1, 1, 4, 4], tmp_path, opening)
