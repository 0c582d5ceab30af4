"""TensorRT's ONNX rules checked on the host (edgeres.build.trt_rules), on hand-made graphs that each break one rule,
cross-checked against the stand-in parser (tests.fake_tensorrt) where it implements the same rule."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeres.build.trt import create_network, precision_mix
from edgeres.build.trt_rules import (
    check_for_tensorrt,
    edition,
    parse_version,
    violations,
)
from edgeres.errors import EdgeresError
from tests import fake_tensorrt

INT8, INT32, INT4 = TensorProto.INT8, TensorProto.INT32, TensorProto.INT4


def qdq_conv(*, w_type=INT8, w_zero=0, w_scale=(0.02, 0.03), axis=0, act_scale=(0.1,), act_zero=0, bias=None,
             opset=17, batch=1, height=4, extra_op=None, consumer="Conv"):
    """x[batch,1,height,4] -> Q/DQ (per tensor) -> Conv(DQ(int8 weights [2,1,3,3], per channel)) -> y."""
    w_dtype = {INT8: np.int8, INT32: np.int32, INT4: np.int8}[w_type]
    inits = [numpy_helper.from_array(np.arange(18, dtype=w_dtype).reshape(2, 1, 3, 3) % 7 - 3, "w_q"),
             numpy_helper.from_array(np.array(w_scale, np.float32), "w_scale"),
             numpy_helper.from_array(np.full(len(w_scale), w_zero, w_dtype), "w_zero"),
             numpy_helper.from_array(np.array(act_scale if len(act_scale) > 1 else act_scale[0], np.float32),
                                     "x_scale"),
             numpy_helper.from_array(np.array(act_zero if len(act_scale) == 1 else [act_zero] * len(act_scale),
                                              np.int8), "x_zero")]
    if w_type == INT4:  # same values, stored as INT4 (opset 21)
        for i in (0, 2):
            inits[i] = helper.make_tensor(inits[i].name, INT4, list(numpy_helper.to_array(inits[i]).shape),
                                          numpy_helper.to_array(inits[i]).reshape(-1).tolist())
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["xq"], name="x_q"),
             helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zero"], ["xd"], name="x_dq"),
             helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"], name="w_dq", axis=axis)]
    conv_inputs = ["xd", "w"]
    if bias is not None:  # onnxruntime's QuantizeBias=True: INT32 codes + DequantizeLinear
        inits += [numpy_helper.from_array(np.array(bias, np.int32), "b_q"),
                  numpy_helper.from_array(np.array([0.002, 0.003], np.float32), "b_scale")]
        nodes.append(helper.make_node("DequantizeLinear", ["b_q", "b_scale"], ["b"], name="b_dq", axis=0))
        conv_inputs.append("b")
    nodes.append(helper.make_node(consumer, conv_inputs, ["y"], name="conv", **({"pads": [1, 1, 1, 1]}
                                                                                 if consumer == "Conv" else {})))
    if extra_op:
        outputs = ["z", "z_scale", "z_zero"] if extra_op == "DynamicQuantizeLinear" else ["z"]
        nodes.append(helper.make_node(extra_op, ["y"], outputs, name="extra"))
    out = "z" if extra_op else "y"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 1, height, 4])
    graph = helper.make_graph(nodes, "g", [x], [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def rules(model, version="10.3.0", batch_profile=False):
    return [(v.node, v.rule) for v in violations(model, version, batch_profile)]


def fake_parses(model, version: str, tmp_path) -> bool:
    import onnx
    path = tmp_path / f"m-{version}.onnx"
    onnx.save(model, str(path))
    trt = fake_tensorrt.make(version)
    network = create_network(trt, trt.Builder(None), precision_mix(version, "int8", {}))
    return trt.OnnxParser(network, None).parse_from_file(str(path))


@pytest.mark.parametrize("version", ["8.5.2", "10.3.0", "11.1.0"])
def test_a_symmetric_int8_qdq_graph_breaks_no_rule(version, tmp_path):
    model = qdq_conv()
    assert rules(model, version) == [] and fake_parses(model, version, tmp_path)


@pytest.mark.parametrize("model, found", [
    (qdq_conv(bias=[5, -7]), [("node b_dq (DequantizeLinear)", "no INT32 bias dequantization")]),
    (qdq_conv(w_zero=1), [("node w_dq (DequantizeLinear)", "zero points 0")]),
    (qdq_conv(act_zero=3), [("node x_q (QuantizeLinear)", "zero points 0"), ("node x_dq (DequantizeLinear)",
                                                                           "zero points 0")]),
    (qdq_conv(w_scale=(0.02, 0.0)), [("node w_dq (DequantizeLinear)", "positive finite scales")]),
    (qdq_conv(w_scale=(0.02, float("nan"))), [("node w_dq (DequantizeLinear)", "positive finite scales")]),
    (qdq_conv(act_scale=(0.1, 0.2, 0.3, 0.4), ), [("node x_q (QuantizeLinear)", "per-channel axis"),
                                                 ("node x_dq (DequantizeLinear)", "per-channel axis")]),
    (qdq_conv(opset=21), [("graph", "opset range")]),
    (qdq_conv(extra_op="DynamicQuantizeLinear"), [("node extra (DynamicQuantizeLinear)", "supported operator")]),
])
def test_each_broken_rule_is_named_with_its_node_and_the_stand_in_refuses_it_too(model, found, tmp_path):
    assert rules(model) == found
    assert not fake_parses(model, "10.3.0", tmp_path)


def test_per_channel_axis_must_be_the_consumers_output_channels():
    assert rules(qdq_conv(axis=1, w_scale=(0.02,))) == []  # one scale: per tensor, any axis
    assert rules(qdq_conv(axis=1)) == [("node w_dq (DequantizeLinear)", "per-channel axis")] * 2  # size and axis
    assert rules(qdq_conv(consumer="ConvTranspose", w_scale=(0.1,) * 2)) == [
        ("node w_dq (DequantizeLinear)", "per-channel axis")]  # ConvTranspose weights are C,K/g,R,S: axis 1
    assert rules(qdq_conv(consumer="ConvTranspose", axis=1, w_scale=(0.1,))) == []


def test_rules_follow_the_target_version():
    assert rules(qdq_conv(opset=19), "8.5.2") == [("graph", "opset range")] and rules(qdq_conv(opset=19)) == []
    int4 = qdq_conv(w_type=INT4, opset=21)
    assert rules(int4, "8.5.2") == [("graph", "opset range"), ("node w_dq (DequantizeLinear)", "quantized types")]
    assert rules(int4, "10.3.0") == [("graph", "opset range")]  # 10.0's parser reads opsets up to 20
    assert rules(int4, "10.15.1") == [] and rules(int4, "11.1.0") == []
    norm = qdq_conv(extra_op="LayerNormalization")
    assert rules(norm, "8.5.2") == [("node extra (LayerNormalization)", "supported operator")]
    assert rules(norm, "10.3.0") == []
    assert edition("10.3.0").since == (10, 0) and edition("9.2.0").since == (8, 5)
    assert parse_version("8.5.2.2") == (8, 5, 2)
    with pytest.raises(EdgeresError, match="older than 8.5"):
        edition("8.4.3")


def test_only_a_dynamic_batch_is_accepted_and_only_with_a_profile():
    assert rules(qdq_conv(batch="N")) == [("input x", "static shapes or a profile")]
    assert rules(qdq_conv(batch="N"), batch_profile=True) == []
    assert rules(qdq_conv(batch="N", height="H"), batch_profile=True) == [("input x", "static shapes or a profile")]


def test_check_for_tensorrt_raises_one_line_naming_node_rule_and_version(tmp_path):
    import onnx
    onnx.save(qdq_conv(bias=[5, -7], w_zero=1), str(tmp_path / "g.onnx"))
    with pytest.raises(EdgeresError) as err:
        check_for_tensorrt(tmp_path / "g.onnx")
    line = str(err.value)
    assert "\n" not in line and line.startswith("g.onnx is not a graph TensorRT 8.5.2 accepts: node w_dq")
    assert "(+1 more)" in line


def test_build_runs_the_checker_and_rejects_int32_bias_dequantization_in_one_line(tmp_path_factory, monkeypatch):
    from click.testing import CliRunner

    from edgeres.build import ort
    from edgeres.cli import cli
    from tests.test_build_support import tiny_export
    export = tiny_export(tmp_path_factory, "checker-in-build")
    monkeypatch.setitem(ort.TRT_INT8_OPTIONS, "QuantizeBias", True)  # what onnxruntime does by default
    result = CliRunner().invoke(cli, ["build", str(export), "--target", "int8-qdq", "--res", "16", "--calib-images",
                                      "16", "--no-eval"])
    assert result.exit_code == 1, result.output
    message = [line for line in result.output.splitlines() if "TensorRT" in line]
    assert len(message) == 1 and "tiny-16.onnx is not a graph TensorRT 8.5.2 accepts" in message[0]
    assert "breaks 'no INT32 bias dequantization'" in message[0]
    assert "_DequantizeLinear (DequantizeLinear)" in message[0]
