"""ONNX helpers for export: serialise a module, stamp metadata, check a graph, compare outputs.

Pure functions over bytes / protos / arrays, so the checks are testable without exporting anything.
"""
import io
import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from edgeres.errors import EdgeresError

# Verification tolerance on logits: |ort - torch| <= ABS_TOL + REL_TOL * max|torch logits|. FP32 folding and
# ORT's kernels reorder sums (~1e-7 relative per op); a wrong BN moves logits by O(1), far above this.
ABS_TOL = 1e-4
REL_TOL = 1e-4


def onnx_from_module(module, args: tuple, input_names: Sequence[str], output_names: Sequence[str],
                     opset: int, dynamic_axes: Mapping[str, Mapping[int, str]] | None = None) -> bytes:
    """Serialise `module` with the TorchScript exporter (dynamo=False): it honours `opset` exactly, folds
    constants, and is fast on CPU (FACTS: CPU measurements). Returns the ModelProto bytes."""
    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's DeprecationWarning is not the user's concern
        torch.onnx.export(module, args, buffer, dynamo=False, opset_version=opset, do_constant_folding=True,
                          input_names=list(input_names), output_names=list(output_names),
                          dynamic_axes=dict(dynamic_axes) if dynamic_axes else None)
    return buffer.getvalue()


def with_metadata(model_bytes: bytes, props: Mapping[str, Any]) -> "onnx.ModelProto":  # noqa: F821
    """Parse the graph and set ONNX metadata_props (values as strings, keys in sorted order: deterministic)."""
    import onnx

    proto = onnx.load_from_string(model_bytes)
    del proto.metadata_props[:]
    for key in sorted(props):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(props[key])
    return proto


def check_graph(proto, where: str, serialized: bytes | None = None) -> None:
    """onnx.checker passes and no BatchNormalization node is left (every BN was folded).

    `serialized`: the proto's bytes when the caller has them (the checker would serialise it once more)."""
    import onnx

    try:
        onnx.checker.check_model(proto if serialized is None else serialized, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise EdgeresError(f"{where}: onnx.checker rejects the graph ({str(exc).splitlines()[0][:200]})") from None
    left = [n.name or n.op_type for n in proto.graph.node if n.op_type == "BatchNormalization"]
    if left:
        raise EdgeresError(f"{where}: {len(left)} BatchNormalization node(s) left after folding ({left[0]})")


def io_spec(proto) -> dict[str, list[dict[str, Any]]]:
    """{'inputs': [{name, shape}], 'outputs': [...]}; a dynamic dimension is its name (e.g. 'batch')."""
    def shape(value) -> list:
        return [d.dim_param if d.dim_param else d.dim_value for d in value.type.tensor_type.shape.dim]
    return {kind: [{"name": v.name, "shape": shape(v)} for v in values]
            for kind, values in (("inputs", proto.graph.input), ("outputs", proto.graph.output))}


@dataclass(frozen=True)
class Rule:
    """When a graph counts as computing the model: shares of images that must agree."""

    name: str
    min_within: float  # share of images whose every logit is within tolerance
    min_top1: float  # share of images with the same argmax (numerical ties excused)


FLOAT_RULE = Rule("float", 1.0, 1.0)
# LQ-Net activation quantizers are step functions: a rounding difference of ~1e-7 (BN folding, ORT's kernels)
# can move a value across a threshold and change it by a whole level. Measured on a random-weight w2a2
# ResNet18 at 28 px: 4 of 64 images off by up to 0.044 after folding, the other 60 within 1e-6.
STEP_RULE = Rule("lq-activations", 0.9, 0.98)


@dataclass(frozen=True)
class Agreement:
    """How closely `got` logits follow `ref` logits on the same images."""

    max_abs_diff: float
    tolerance: float  # ABS_TOL + REL_TOL * max|ref|
    within: float  # share of images whose every logit is within tolerance
    top1_agreement: float  # share of images with the same argmax
    ties: int  # disagreements where ref's two classes differ by <= tolerance (numerical ties)
    images: int

    def ok(self, rule: Rule = FLOAT_RULE) -> bool:
        excused = (self.top1_agreement * self.images + self.ties) / self.images
        return self.within >= rule.min_within and excused >= rule.min_top1 - 1e-9

    def to_json(self) -> dict[str, Any]:
        return {"max_abs_diff": float(self.max_abs_diff), "tolerance": float(self.tolerance),
                "within_tolerance": self.within, "top1_agreement": self.top1_agreement, "top1_ties": self.ties,
                "verify_images": self.images}


def agreement(ref: np.ndarray, got: np.ndarray) -> Agreement:
    """Compare N x classes logits; a disagreement only counts as a tie if ref cannot tell the classes apart."""
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    if ref.shape != got.shape:
        raise EdgeresError(f"output shapes differ: PyTorch {ref.shape} vs ONNX Runtime {got.shape}")
    tol = ABS_TOL + REL_TOL * float(np.abs(ref).max(initial=0.0))
    diff = np.abs(ref - got).max(axis=1, initial=0.0)
    a, b = ref.argmax(1), got.argmax(1)
    rows = np.nonzero(a != b)[0]
    ties = int(sum(abs(ref[i, a[i]] - ref[i, b[i]]) <= tol for i in rows))
    return Agreement(float(diff.max(initial=0.0)), tol, float((diff <= tol).mean()), float((a == b).mean()), ties,
                     len(ref))


def require_agreement(result: Agreement, where: str, rule: Rule = FLOAT_RULE) -> None:
    """Fail loudly: the exported graph does not compute what the model computes."""
    if not result.ok(rule):
        raise EdgeresError(
            f"{where}: ONNX Runtime disagrees with PyTorch (max abs diff {result.max_abs_diff:.3g}, tolerance "
            f"{result.tolerance:.3g}, {100 * result.within:.0f}% of images within it, top-1 agreement "
            f"{100 * result.top1_agreement:.1f}%; rule {rule.name}): not exported")
