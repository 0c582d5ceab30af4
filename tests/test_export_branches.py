"""export.branches: the Gather-table switchable graph rewritten as one If branch per resolution, BNs folded.

Hand-built ONNX graphs with onnx.reference.ReferenceEvaluator as the independent oracle (the export tests check
the real torch export against the folded graphs in ONNX Runtime).
"""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from edgeres.errors import EdgeresError  # noqa: E402
from edgeres.export.branches import branched_from_tables  # noqa: E402

C, S = 4, 3  # channels, resolutions


def tables_model(count: int = S, with_bias: bool = True, extra_index_use: bool = False):
    """input -> Conv(+bias) -> *scale[i] + shift[i] -> Relu -> *scale2[i] + shift2[i] (no conv: stays) -> logits."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((C, 1, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(np.array([1], np.int64), "shape1")]
    conv_in = ["input", "w"]
    if with_bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(C).astype(np.float32), "bias"))
        conv_in.append("bias")
    for name in ("scale", "shift", "scale2", "shift2"):
        inits.append(numpy_helper.from_array(rng.uniform(0.5, 1.5, (count, C, 1, 1)).astype(np.float32), name))
    nodes = [helper.make_node("Reshape", ["res_index", "shape1"], ["idx"]),
             helper.make_node("Conv", conv_in, ["conv"], name="conv", pads=[1, 1, 1, 1]),
             *[helper.make_node("Gather", [t, "idx"], [f"{t}_row"], axis=0) for t in ("scale", "shift", "scale2",
                                                                                      "shift2")],
             helper.make_node("Mul", ["conv", "scale_row"], ["mul"]),
             helper.make_node("Add", ["mul", "shift_row"], ["add"]),
             helper.make_node("Relu", ["add"], ["relu"]),
             helper.make_node("Mul", ["relu", "scale2_row"], ["mul2"]),
             helper.make_node("Add", ["mul2", "shift2_row"], ["logits"])]
    if extra_index_use:
        nodes.append(helper.make_node("Cast", ["res_index"], ["res_float"], to=TensorProto.FLOAT))
        nodes[-2].output[0] = "pre"
        nodes.append(helper.make_node("Add", ["pre", "res_float"], ["logits"]))
    graph = helper.make_graph(nodes, "tables", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                              [1, 1, "h", "w"]),
                                                helper.make_tensor_value_info("res_index", TensorProto.INT64, [1])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, C, "h", "w"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def outputs(model, index: int, x: np.ndarray) -> np.ndarray:
    return ReferenceEvaluator(model).run(None, {"input": x, "res_index": np.array([index], np.int64)})[0]


@pytest.mark.parametrize("with_bias", [True, False])
def test_every_branch_equals_the_tables_graph_at_its_index(with_bias):
    model = tables_model(with_bias=with_bias)
    branched = branched_from_tables(model, S)
    onnx.checker.check_model(branched, full_check=True)
    x = np.random.default_rng(1).standard_normal((1, 1, 6, 5)).astype(np.float32)
    for index in range(S):
        np.testing.assert_allclose(outputs(branched, index, x), outputs(model, index, x), rtol=1e-5, atol=1e-5)
    assert not np.allclose(outputs(branched, 0, x), outputs(branched, 1, x))  # the branches really differ


def branches_of(model) -> list:
    """The resolution branches in the If chain, in res_index order."""
    found = []

    def walk(graph):
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    if attr.g.name.startswith("resolution_") and not attr.g.name.endswith("_or_later"):
                        found.append(attr.g)
                    walk(attr.g)
    walk(model.graph)
    return sorted({g.name: g for g in found}.values(), key=lambda g: int(g.name.split("_")[1]))


def test_conv_affine_is_folded_into_the_conv_and_weights_are_stored_once():
    model = tables_model()
    branched = branched_from_tables(model, S)
    assert [t.name for t in branched.graph.initializer] == ["w", "shape1", "bias"]  # the tables left the main graph
    assert [n.op_type for n in branched.graph.node] == ["Constant", "Gather", "Constant", "Equal", "If"]
    branches = branches_of(branched)
    assert [g.name for g in branches] == [f"resolution_{k}" for k in range(S)]
    for k, g in enumerate(branches):
        ops = [n.op_type for n in g.node]
        # Mul(w, a_k) folds at load; the affine after Relu has no conv to go into and stays, with constant rows
        assert ops == ["Mul", "Conv", "Relu", "Mul", "Add"]
        fold = g.node[0]
        assert fold.input[0] == "w" and g.node[1].input[1] == fold.output[0]  # the conv reads w * a_k
        assert "w" not in {t.name for t in g.initializer}  # w itself comes from the outer scope, once
        scale = numpy_helper.to_array(next(t for t in g.initializer if t.name == fold.input[1]))
        expected = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "scale"))[k]
        np.testing.assert_array_equal(scale.reshape(-1), expected.reshape(-1))


def test_out_of_range_index_still_fails_and_negative_counts_from_the_end():
    ort = pytest.importorskip("onnxruntime")
    branched = branched_from_tables(tables_model(), S)
    session = ort.InferenceSession(branched.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.ones((1, 1, 4, 4), np.float32)
    last = session.run(None, {"input": x, "res_index": np.array([S - 1])})[0]
    np.testing.assert_array_equal(session.run(None, {"input": x, "res_index": np.array([-1])})[0], last)
    with pytest.raises(Exception, match="out of"):
        session.run(None, {"input": x, "res_index": np.array([S])})


def test_single_resolution_graph_gets_one_branch():
    model = tables_model(count=1)
    branched = branched_from_tables(model, 1)
    onnx.checker.check_model(branched, full_check=True)
    x = np.random.default_rng(2).standard_normal((1, 1, 3, 3)).astype(np.float32)
    np.testing.assert_allclose(outputs(branched, 0, x), outputs(model, 0, x), rtol=1e-5, atol=1e-5)


def test_other_uses_of_res_index_cannot_be_split():
    with pytest.raises(EdgeresError, match="Add node 'logits' uses res_index other than to pick BN table rows"):
        branched_from_tables(tables_model(extra_index_use=True), S)


def test_metadata_and_opset_carry_over():
    model = tables_model()
    entry = model.metadata_props.add()
    entry.key, entry.value = "edgeres.bn", "switchable"
    branched = branched_from_tables(model, S)
    assert [(p.key, p.value) for p in branched.metadata_props] == [("edgeres.bn", "switchable")]
    assert [(o.domain, o.version) for o in branched.opset_import] == [("", 17)]
