"""The one table of build targets, and the contract every builder follows.

A target is a name (`ort-int8`, `trt-fp16`, `lq-w2a2`, ...) mapped to a backend (`ort` = an ONNX file that
ONNX Runtime runs and measures on the host, `trt` = a TensorRT engine built on the device), a precision label,
a one-line description and a builder named lazily as `"module:function"`, so that this table imports neither
TensorRT nor the LQ-Net code.

Builder contract (for `edgeres.build.ort`, `fp16`, `trt` and the LQ-Net helper's `edgeres.build.lowbit`):

    def build_x(ctx: BuildContext, graph: GraphEntry) -> BuildOutput

- called once per (target, resolution); `graph` is one `export.json` graph (absolute path, resolution, I/O
  names and shapes); `ctx` carries the export manifest, the output directory, the data and calibration
  settings, and `ctx.target` (the requested name, e.g. "lq-w2a2": use `lq_bits(ctx.target)` for (K, J));
- writes its file(s) under `ctx.out` through `edgeres._io` (atomic) and returns an `BuildOutput`;
- a target listed with `needs` gets the artifact of that target at the same resolution through
  `ctx.prerequisite(graph)` (e.g. `trt-int8` builds its engine from the `int8-qdq` ONNX);
- raises `EdgeresError` (one line) for anything the user can fix.
`edgeres.build.build` hashes the file, copies MACs/params, and measures top-1/top-5 with ONNX Runtime for
`ort` artifacts (an `BuildOutput.accuracy` set by the builder, e.g. measured on a TensorRT device, wins).
"""
import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from edgeres.defaults import BUILD_CALIB_IMAGES
from edgeres.errors import EdgeresError, EdgeresUsageError
from edgeres.manifests.export import ExportManifest

LQ_PATTERN = re.compile(r"^(trt-)?lq-w([1-8])a([1-8]|32)$")  # K-bit weights, J-bit activations (32 = float)


@dataclass(frozen=True)
class Target:
    name: str
    backend: str  # "ort" (ONNX file, runs in ONNX Runtime) or "trt" (TensorRT engine)
    precision: str  # label written to build.json, e.g. "int8 (U8 act / S8 w)"
    description: str
    builder: str  # "module:function", imported only when the target is built
    needs: str | None = None  # target whose artifact (same resolution) this one is built from


@dataclass(frozen=True)
class GraphEntry:
    """One graph of export.json; `file` is absolute (resolved inside the export directory)."""
    resolution: int  # pixels (input is 1x3xRxR or NxCxRxR)
    file: Path
    sha256: str
    input_name: str
    input_shape: tuple
    output_name: str
    macs: int | None
    params: int | None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class CalibSettings:
    method: str = "minmax"  # minmax | entropy | percentile
    images: int = BUILD_CALIB_IMAGES  # per resolution (RS-Nets: each resolution has its own BN ranges)
    data: str | None = None  # dataset name or ImageFolder root; None = the export's training data
    cache_dir: Path | None = None  # None = <out>/calib


@dataclass(frozen=True)
class BuildOutput:
    file: Path  # absolute path of the built file (ONNX or engine)
    precision: str
    calibration: dict | None = None  # method, images, data fingerprint, cache key (JSON-ready)
    accuracy: dict | None = None  # set only when the builder measured it itself (e.g. on a TRT device)
    accuracy_note: str | None = None  # why accuracy is null, when it is
    extra: dict = field(default_factory=dict)  # builder-specific facts copied into build.json


@dataclass(frozen=True)
class BuildContext:
    export: ExportManifest  # the export.json manifest, typed (edgeres.manifests.export)
    export_dir: Path
    out: Path
    target: str
    calib: CalibSettings
    data: str | None = None  # eval data (None = the export's data)
    options: Mapping[str, Any] = field(default_factory=dict)  # target-specific knobs (e.g. trt workspace)
    built: dict = field(default_factory=dict, compare=False)  # (target, resolution) -> BuildOutput, filled by build()
    prepared: dict = field(default_factory=dict, compare=False)  # resolution -> pre-processed graph (ort.prepare_int8)

    def prerequisite(self, graph: GraphEntry) -> BuildOutput:
        """The artifact of this target's `needs` target at the graph's resolution (built earlier)."""
        needs = get_target(self.target).needs
        if needs is None or (needs, graph.resolution) not in self.built:
            raise RuntimeError(f"{self.target} at {graph.resolution}: prerequisite {needs} was not built first")
        return self.built[(needs, graph.resolution)]


def _t(name, backend, precision, description, builder, needs=None) -> tuple[str, Target]:
    return name, Target(name, backend, precision, description, builder, needs)


TARGETS: dict[str, Target] = dict([
    _t("ort-fp32", "ort", "fp32", "exported graph, optimised offline for ONNX Runtime (CPU)",
       "edgeres.build.ort:build_fp32"),
    _t("ort-int8", "ort", "int8 (U8 act / S8 w)", "QDQ INT8 for ONNX Runtime on CPU: asymmetric U8 activations, "
       "symmetric per-channel S8 weights (the fast CPU kernels)", "edgeres.build.ort:build_ort_int8"),
    _t("int8-qdq", "ort", "int8 (S8 act / S8 w)", "QDQ INT8, symmetric S8 activations and per-channel S8 weights: "
       "the explicit-quantization input for TensorRT", "edgeres.build.ort:build_int8_qdq"),
    _t("fp16", "ort", "fp16", "FP16 weights and compute, FP32 inputs/outputs kept (for strongly typed TensorRT)",
       "edgeres.build.fp16:build_fp16"),
    _t("trt-fp16", "trt", "fp16", "TensorRT engine from the fp16 graph (build on the device that runs it)",
       "edgeres.build.trt:build_engine", needs="fp16"),
    _t("trt-int8", "trt", "int8 (S8 act / S8 w)", "TensorRT engine from the int8-qdq graph (explicit quantization)",
       "edgeres.build.trt:build_engine", needs="int8-qdq"),
])
LQ_EXAMPLES = ("lq-w2a32", "lq-w2a2", "lq-w3a3", "lq-w4a4")


def lq_bits(name: str) -> tuple[int, int]:
    """'lq-w2a2' / 'trt-lq-w2a32' -> (K weight bits, J activation bits; 32 = float activations)."""
    match = LQ_PATTERN.match(name)
    if not match:
        raise EdgeresError(f"{name!r} is not an LQ-Net target name (lq-w<K>a<J>, K 1..8, J 1..8 or 32)")
    return int(match.group(2)), int(match.group(3))


def _lq_target(name: str) -> Target:
    k, j = lq_bits(name)
    bits = f"W{k}/A{j}" if j != 32 else f"W{k}/A-float"
    if name.startswith("trt-"):
        return Target(name, "trt", f"int8 carrying LQ {bits}", f"TensorRT engine from the {name[4:]} graph",
                      "edgeres.build.trt:build_engine", needs=name[4:])
    return Target(name, "ort", f"int8 carrying LQ {bits}", f"LQ-Net {bits} learned quantizers as INT8 QDQ ONNX",
                  "edgeres.build.lowbit:build_lq")


def target_names() -> list[str]:
    """Valid names for messages and --help (the LQ family shown by its examples and pattern)."""
    return list(TARGETS) + list(LQ_EXAMPLES) + [f"trt-{n}" for n in LQ_EXAMPLES]


def get_target(name: str) -> Target:
    """Look a target up by name; an unknown name raises one line listing the valid ones."""
    if name in TARGETS:
        return TARGETS[name]
    if LQ_PATTERN.match(name):
        return _lq_target(name)
    raise EdgeresUsageError(f"unknown build target {name!r}: choose from {', '.join(target_names())} "
                       f"(lq-w<K>a<J> for other bit widths)")


def resolve_builder(target: Target) -> Callable:
    """Import the builder function only now (TensorRT and LQ code stay unimported until used)."""
    module_name, _, func = target.builder.partition(":")
    return getattr(importlib.import_module(module_name), func)


def with_prerequisites(names: list[str]) -> list[Target]:
    """Targets in build order: each `needs` target before its user, duplicates dropped."""
    order: list[Target] = []
    for name in names:
        chain = []
        target = get_target(name)
        while target is not None:
            chain.append(target)
            target = get_target(target.needs) if target.needs else None
        for t in reversed(chain):
            if t not in order:
                order.append(t)
    return order
