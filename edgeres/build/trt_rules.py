"""What TensorRT's ONNX parser accepts, checked on the host with onnx alone (no TensorRT, no GPU).

Every graph meant for TensorRT (`int8-qdq`, `fp16`, `lq-*`, and the input of every `trt-*` engine) passes
`check_for_tensorrt` before build records it, so a graph TensorRT would refuse fails here in one line naming the
node and the rule, not on the device. The rules, each citing the TensorRT document it comes from:

- opset within the target's range, every op in onnx-tensorrt's supported list for that version;
- Q/DQ only on the quantized types the version has (INT8; + FP8/INT4 from 10.0; + FP4 from 10.15),
  so no INT32 bias dequantization;
- zero points 0 (symmetric only), scales build-time constants, finite and > 0;
- per-channel Q/DQ only on weights, along the consumer's output-channel axis;
- static input shapes, or a dynamic batch only (edgeres adds an optimization profile over it).

A target version uses the newest edition we read at or below it (10.3 -> the 10.0 tables): never looser
than the real parser of that version. On the host, where the device's TensorRT is unknown, a graph is checked
against every generation edgeres supports (`TARGETS`) unless `options["trt_version"]` names one.
"""
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from edgeres.build.targets import LQ_PATTERN
from edgeres.errors import EdgeresError

TARGETS = ("8.5.2", "10.3.0", "11.1.0")  # JetPack 5.1, JetPack 6.x, the newest TensorRT whose sources we read

# onnx-tensorrt docs/operators.md, operators marked "Y": release/8.5-GA ("TensorRT 8.5 supports operators up to
# Opset 17"), release/10.0-GA and 10.1-GA ("TensorRT 10.0 ... opset 9 to opset 20"), the TensorRT 10.15 edition
# ("opset 9 to opset 24"); TensorRT 11.0 CHANGELOG.md adds Swish; the TensorRT 11.x ONNX Opset Guide
# (docs.nvidia.com .../reference/onnx-opset-guide.html) gives opsets 9..25.
_OPS_8_5 = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil Celu Clip
Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear Div Dropout
Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor GRU Gather GatherElements GatherND Gemm GlobalAveragePool
GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample HardSigmoid HardSwish Identity If ImageScaler
InstanceNormalization IsNaN LRN LSTM LeakyRelu Less LessOrEqual Log LogSoftmax Loop LpNormalization LpPool
MatMul Max MaxPool Mean MeanVarianceNormalization Min Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or PRelu
Pad ParametricSoftplus Pow QuantizeLinear RNN RandomNormal RandomNormalLike RandomUniform RandomUniformLike
Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd
ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RoiAlign Round ScaledTanh Scan Scatter
ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign
SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample
Where Xor""".split())
_OPS_10_0 = _OPS_8_5 | {"CastLike", "DeformConv", "Gelu", "GroupNormalization", "Hardmax", "IsInf",
                        "LayerNormalization", "Mish"}
_OPS_10_15 = _OPS_10_0 | {"Attention", "BlackmanWindow", "HammingWindow", "HannWindow", "RMSNormalization",
                          "RotaryEmbedding", "STFT", "TensorScatter"}
_OPS_11_0 = _OPS_10_15 | {"Swish"}

# ONNX TensorProto element types (numbers, so that older onnx releases without INT4/FP4 names still work)
INT8, UINT8, INT32, FLOAT8E4M3FN, INT4, FLOAT4E2M1 = 3, 2, 6, 17, 22, 23
TYPE_NAMES = {1: "FLOAT", 2: "UINT8", 3: "INT8", 6: "INT32", 7: "INT64", 10: "FLOAT16", 16: "BFLOAT16",
              17: "FLOAT8E4M3FN", 21: "UINT4", 22: "INT4", 23: "FLOAT4E2M1"}


@dataclass(frozen=True)
class Edition:
    """What one TensorRT release's ONNX parser accepts (the tables above and NvInfer.h of that branch)."""
    since: tuple[int, int]
    opsets: tuple[int, int]
    quantized: frozenset  # ONNX element types a DequantizeLinear input / QuantizeLinear output may have
    ops: frozenset


# Quantized types: NvInfer.h IDequantizeLayer/IQuantizeLayer, release/8.5 ("accepts a signed 8-bit integer
# input"), release/10.3 ("kINT8, kFP8 or kINT4"), release/11.1 ("kINT8, kFP8, kINT4 or kFP4"); operators.md
# DequantizeLinear "INT8" (8.5), "INT8, FP8, INT4" (10.0), "INT8, FP8, FP4, INT4" (10.15).
EDITIONS = (Edition((8, 5), (7, 17), frozenset({INT8}), _OPS_8_5),
            Edition((10, 0), (9, 20), frozenset({INT8, FLOAT8E4M3FN, INT4}), _OPS_10_0),
            Edition((10, 15), (9, 24), frozenset({INT8, FLOAT8E4M3FN, INT4, FLOAT4E2M1}), _OPS_10_15),
            Edition((11, 0), (9, 25), frozenset({INT8, FLOAT8E4M3FN, INT4, FLOAT4E2M1}), _OPS_11_0))


@dataclass(frozen=True)
class Violation:
    node: str  # node name (or op type, or "graph" / the input name)
    rule: str
    detail: str

    def line(self) -> str:
        return f"{self.node} breaks '{self.rule}': {self.detail}"


def parse_version(version: str) -> tuple[int, int, int]:
    """'8.5.2.2' / '10.3.0' / '11.1' -> (major, minor, patch); one line when it is not a version."""
    parts = re.findall(r"\d+", str(version))[:3]
    if not parts:
        raise EdgeresError(f"{version!r} is not a TensorRT version (expected e.g. 8.5.2 or 10.3.0)")
    return tuple(int(p) for p in parts + ["0"] * (3 - len(parts)))  # type: ignore[return-value]


def edition(version: str) -> Edition:
    """The newest edition at or below `version`; versions older than 8.5 are refused (no name-based I/O API)."""
    number = parse_version(version)[:2]
    known = [e for e in EDITIONS if e.since <= number]
    if not known:
        raise EdgeresError(f"TensorRT {version} is older than 8.5, the oldest edgeres supports (JetPack 5)")
    return known[-1]


class _Graph:
    """Index of one model: constants, element types, producers and consumers by tensor name."""

    def __init__(self, model):
        import onnx
        from onnx import numpy_helper
        try:
            model = onnx.shape_inference.infer_shapes(model)  # element types of every intermediate tensor
        except Exception:  # noqa: BLE001 - inference is best effort; rules then use the types the file carries
            pass
        self.model, graph = model, model.graph
        self.consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.types = {t.name: t.data_type for t in graph.initializer}
        for info in [*graph.input, *graph.output, *graph.value_info]:
            self.types.setdefault(info.name, info.type.tensor_type.elem_type)
        self.consumers: dict[str, list] = {}
        for node in graph.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                self.consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
                self.types[node.output[0]] = node.attribute[0].t.data_type
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def inputs(self):
        return [i for i in self.model.graph.input if i.name not in self.consts]


def _attr(node, name: str, default):
    from onnx import helper
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def _label(node) -> str:
    return f"node {node.name or '?'} ({node.op_type})"


def _opset(g: _Graph, ed: Edition) -> Iterator[Violation]:
    # onnx-tensorrt docs/operators.md header of each release: the opset range its parser imports.
    version = next((o.version for o in g.model.opset_import if o.domain in ("", "ai.onnx")), None)
    low, high = ed.opsets
    if version is not None and not low <= version <= high:
        yield Violation("graph", "opset range", f"opset {version} is outside {low}..{high}: re-export with "
                        f"--opset {min(max(version, low), high)}")


def _ops(g: _Graph, ed: Edition) -> Iterator[Violation]:
    # onnx-tensorrt docs/operators.md "Operator Support Matrix": only operators marked Y import (custom domains,
    # e.g. com.microsoft fusions from ORT's extended optimisations, have no importer at all).
    for node in g.model.graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in ed.ops:
            where = f"{node.domain}." if node.domain not in ("", "ai.onnx") else ""
            yield Violation(_label(node), "supported operator", f"{where}{node.op_type} has no TensorRT importer "
                            "(onnx-tensorrt docs/operators.md)")


def _qdq(g: _Graph, ed: Edition) -> Iterator[Violation]:
    for node in g.model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and node.domain in ("", "ai.onnx"):
            wrong_type = list(_qdq_type(g, ed, node))
            yield from wrong_type
            if any(v.rule == "no INT32 bias dequantization" for v in wrong_type):
                continue  # a quantized bias: the other rules only restate it
            yield from _zero_point(g, node)
            scale = yield from _scale(g, node)
            if scale is not None and scale.size > 1:
                yield from _per_channel(g, node, scale)


def _quantized_type(g: _Graph, node) -> int | None:
    """DQ: its input's type; Q: its zero point's type, else output_dtype (opset 21), else UINT8 (ONNX default)."""
    if node.op_type == "DequantizeLinear":
        return g.types.get(node.input[0])
    if len(node.input) > 2 and node.input[2]:
        return g.types.get(node.input[2])
    return _attr(node, "output_dtype", 0) or UINT8


def _qdq_type(g: _Graph, ed: Edition, node) -> Iterator[Violation]:
    # NvInfer.h IDequantizeLayer: 8.5 dequantizes only signed 8-bit; 10.3 INT8/FP8/INT4; 11.1 adds FP4.
    kind = _quantized_type(g, node)
    allowed = ", ".join(TYPE_NAMES.get(t, str(t)) for t in sorted(ed.quantized))
    if kind == INT32 and node.op_type == "DequantizeLinear":
        yield Violation(_label(node), "no INT32 bias dequantization",
                        f"dequantizes INT32 {node.input[0]!r} (onnxruntime quantize_static's QuantizeBias=True); "
                        f"TensorRT dequantizes only {allowed}: keep biases float")
    elif kind is not None and kind not in ed.quantized:
        yield Violation(_label(node), "quantized types", f"{TYPE_NAMES.get(kind, kind)} is not one of {allowed}")


def _zero_point(g: _Graph, node) -> Iterator[Violation]:
    # NvInfer.h IQuantizeLayer/IDequantizeLayer: "zeroPt must only contain zero-valued coefficients, because only
    # symmetric quantization is supported"; operators.md: "x_zero_point / y_zero_point must be zero".
    if len(node.input) < 3 or not node.input[2]:
        return
    zp = g.consts.get(node.input[2])
    if zp is None:
        yield Violation(_label(node), "constant zero point", f"zero point {node.input[2]!r} is computed at run time")
    elif np.any(zp.astype(np.float64) != 0):
        yield Violation(_label(node), "zero points 0", f"zero point {node.input[2]!r} holds "
                        f"{zp.reshape(-1)[np.flatnonzero(zp.reshape(-1))[0]]} (TensorRT is symmetric only: "
                        "quantize with symmetric activations)")


def _scale(g: _Graph, node):
    # NvInfer.h: "The subgraph which terminates with the scale tensor must be a build-time constant" and "All scale
    # coefficients must have positive values"; a NaN/inf scale is not positive either.
    scale = g.consts.get(node.input[1])
    if scale is None:
        yield Violation(_label(node), "constant scale", f"scale {node.input[1]!r} is computed at run time")
        return None
    values = scale.astype(np.float64).reshape(-1)
    bad = np.flatnonzero(~np.isfinite(values) | (values <= 0))
    if bad.size:
        yield Violation(_label(node), "positive finite scales", f"scale {node.input[1]!r}[{bad[0]}] = "
                        f"{values[bad[0]]} ({bad.size} of {values.size} not finite and > 0)")
    return scale


def _per_channel(g: _Graph, node, scale: np.ndarray) -> Iterator[Violation]:
    # NvInfer.h IDequantizeLayer (8.5, 10.3): "Per-channel dequantization is supported only for input that is rooted
    # at an IConstantLayer (i.e. weights). Activations cannot be quantized per-channel", with K (the output-channel
    # axis) as the quantization axis; scale size must match the axis. TensorRT Developer Guide, "Explicit
    # Quantization": per-channel weights for convolution, deconvolution and fully connected / MatMul layers.
    weights = g.consts.get(node.input[0])
    if scale.ndim > 1:
        yield Violation(_label(node), "per-channel axis", f"block-quantized scale {list(scale.shape)} is not "
                        "checked by edgeres (INT4 weights only, TensorRT >= 10)")
        return
    if weights is None:
        yield Violation(_label(node), "per-channel axis", f"{scale.size} scales on activation {node.input[0]!r}: "
                        "TensorRT quantizes activations per tensor only")
        return
    axis = int(_attr(node, "axis", 1)) % weights.ndim  # ONNX default axis is 1
    if weights.shape[axis] != scale.size:
        yield Violation(_label(node), "per-channel axis", f"{scale.size} scales for axis {axis} of size "
                        f"{weights.shape[axis]}")
    for consumer, legal in _weight_consumers(g, node, weights.ndim):
        if legal is None:
            yield Violation(_label(node), "per-channel axis", f"per-channel values feed {_label(consumer)} other "
                            "than as the weight of a Conv, ConvTranspose, Gemm or MatMul")
        elif axis != legal:
            yield Violation(_label(node), "per-channel axis", f"axis {axis} feeding {_label(consumer)}, whose "
                            f"output-channel axis is {legal}")


def _weight_consumers(g: _Graph, node, rank: int) -> Iterator[tuple]:
    """(consumer, its legal per-channel axis) for each layer the dequantized weight feeds (through Q -> DQ)."""
    outputs = [node.output[0]]
    if node.op_type == "QuantizeLinear":
        outputs = [d.output[0] for d in g.consumers.get(node.output[0], []) if d.op_type == "DequantizeLinear"]
    for out in outputs:
        for consumer in g.consumers.get(out, []):
            yield consumer, _legal_axis(consumer, out, rank)


def _legal_axis(consumer, name: str, rank: int) -> int | None:
    """Output-channel axis of a weight input: Conv KCRS -> 0, ConvTranspose CKRS -> 1, Gemm B (N,K) with transB
    -> 0 else 1, MatMul B (K,N) -> last; None (no per-channel) for any other use."""
    if len(consumer.input) < 2 or consumer.input[1] != name:
        return None
    if consumer.op_type == "Conv":
        return 0
    if consumer.op_type == "ConvTranspose":
        return 1
    if consumer.op_type == "Gemm":
        return 0 if _attr(consumer, "transB", 0) else 1
    return rank - 1 if consumer.op_type == "MatMul" else None


def _shapes(g: _Graph, batch_profile: bool) -> Iterator[Violation]:
    # TensorRT Developer Guide, "Working with Dynamic Shapes" / IBuilderConfig::addOptimizationProfile: "must be
    # called at least once if the network has dynamic or shape input tensors"; edgeres builds a profile over the
    # batch dimension only.
    for tensor in g.inputs():
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.type.tensor_type.shape.dim]
        for i, d in enumerate(dims):
            if d is None and not (i == 0 and batch_profile):
                yield Violation(f"input {tensor.name}", "static shapes or a profile",
                                f"dimension {i} of {['?' if v is None else v for v in dims]} is dynamic and edgeres "
                                "adds an optimization profile over the batch only: export with static H/W")


def violations(model, version: str, batch_profile: bool = False) -> list[Violation]:
    """Every rule `model` (onnx.ModelProto) breaks for TensorRT `version`; pure, no TensorRT needed.

    batch_profile: a dynamic first (batch) input dimension is fine, because the engine build adds a profile.
    """
    ed, g = edition(version), _Graph(model)
    return [*_opset(g, ed), *_ops(g, ed), *_qdq(g, ed), *_shapes(g, batch_profile)]


def check_for_tensorrt(path: str | os.PathLike, versions: Sequence[str] = TARGETS, batch_profile: bool = True) -> None:
    """Raise one line naming the first node and rule that TensorRT (any of `versions`) would refuse in `path`."""
    import onnx
    model = onnx.load(str(path))
    for version in versions:
        found = violations(model, version, batch_profile)
        if found:
            more = f" (+{len(found) - 1} more)" if len(found) > 1 else ""
            raise EdgeresError(f"{Path(path).name} is not a graph TensorRT {version} accepts: {found[0].line()}{more}")


def target_versions(options) -> tuple[str, ...]:
    """The TensorRT versions to check for: options["trt_version"], else the installed TensorRT, else TARGETS."""
    if options.get("trt_version"):
        return (str(options["trt_version"]),)
    from edgeres._optional import available
    if available("tensorrt"):
        import tensorrt
        return (tensorrt.__version__,)
    return TARGETS


def is_trt_bound(target: str) -> bool:
    """Host-built graphs whose purpose is to become a TensorRT engine (the `needs` of a trt-* target)."""
    return target in ("int8-qdq", "fp16") or (bool(LQ_PATTERN.match(target)) and not target.startswith("trt-"))


def check_built(target: str, path: Path, options) -> None:
    """build() calls this for every artifact: TensorRT-bound graphs must pass the rules before they count."""
    if is_trt_bound(target):
        check_for_tensorrt(path, target_versions(options))
