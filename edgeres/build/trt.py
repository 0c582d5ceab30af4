"""TensorRT engines (`trt-fp16`, `trt-int8`, `trt-lq-*`): the only build module that touches TensorRT.

Every precision decision is already in the ONNX (fp16 weights, or explicit Q/DQ), so the engine is built
from that graph on the device that will run it, after the graph passed TensorRT's rules (`trt_rules`).
TensorRT >= 10 creates the network strongly typed: layers outside Q/DQ run at the graph's ONNX types (FP32 in
an int8-qdq graph), while 8.x/9.x builds with the FP16 (+INT8) flags and may run them in FP16. The executed mix
is recorded in build.json (`precision_mix`); `options={"trt_int8_mix": "fp16"}` asks for the 8.x mix on 10.x
(weakly typed + FP16/INT8 flags, deprecated there; TensorRT 11 removed the flags and refuses it).
A dynamic-batch graph gets one optimization profile over the bench batches (`options["profile_batches"]`,
default 1 and 8) and the accuracy batch. A timing cache per (TensorRT version, device) makes rebuilds fast.
Beside each engine goes the equivalent `trtexec` command line. Engines are run (accuracy) only through
`edgeres.runtimes.trt.TrtRunner`.
"""
import logging
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from edgeres._io import sha256_file, write_bytes, write_text
from edgeres._optional import require
from edgeres.build.targets import BuildContext, BuildOutput, GraphEntry, get_target
from edgeres.build.trt_rules import check_for_tensorrt, parse_version
from edgeres.defaults import DYNAMIC_BATCH
from edgeres.errors import EdgeresError

WORKSPACE_MIB = 1024  # builder scratch memory; Jetson Nano/Orin Nano share 4-8 GB with the CPU
PROFILE_BATCHES = (1, 8)  # bench batches a dynamic engine is tuned for (opt = the largest); + the accuracy batch
log = logging.getLogger("edgeres.build")


def require_tensorrt(target: str):
    """`import tensorrt`, or one actionable line naming the target that needs it."""
    return require("tensorrt", f"build target {target} (a TensorRT engine, built on the GPU/Jetson that runs it)")


def trt_major(version: str) -> int:
    return parse_version(version)[0]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower() or "unknown"


def engine_name(source_sha: str, resolution: int, precision: str, trt_version: str, device: str) -> str:
    """<model sha12>-r<res>-<precision>-trt<version>-<device>.engine (an engine only runs where it was built)."""
    return f"{source_sha[:12]}-r{resolution}-{slug(precision)}-trt{trt_version}-{slug(device)}.engine"


@dataclass(frozen=True)
class BatchProfile:
    """The optimization profile of a dynamic-batch input: batches min <= opt <= max, other dims static."""
    input: str
    chw: tuple[int, ...]
    min: int
    opt: int
    max: int

    def shape(self, batch: int) -> tuple[int, ...]:
        return (batch, *self.chw)

    def trtexec_args(self) -> list[str]:
        return [f"--{kind}Shapes={self.input}:{'x'.join(map(str, self.shape(b)))}"
                for kind, b in (("min", self.min), ("opt", self.opt), ("max", self.max))]

    def to_json(self) -> dict:
        return {"input": self.input, **{k: list(self.shape(getattr(self, k))) for k in ("min", "opt", "max")}}


def batch_profile(graph: GraphEntry, options) -> BatchProfile | None:
    """None for a static graph; else a profile over the bench batches and the accuracy batch (measure.py)."""
    first, *chw = graph.input_shape
    if isinstance(first, int) and first > 0:
        return None
    if not all(isinstance(d, int) and d > 0 for d in chw):
        raise EdgeresError(f"{graph.file.name}: input shape {list(graph.input_shape)} is dynamic beyond the batch; "
                           "edgeres profiles only the batch for TensorRT: export with static H/W")
    bench = sorted({int(b) for b in options.get("profile_batches") or PROFILE_BATCHES})
    if bench[0] < 1:
        raise EdgeresError(f"profile batches must be >= 1, got {bench}")
    return BatchProfile(graph.input_name, tuple(int(d) for d in chw), bench[0], bench[-1],
                        max(bench[-1], DYNAMIC_BATCH))


@dataclass(frozen=True)
class PrecisionMix:
    """How the engine is typed, and so what runs in which precision (recorded in build.json)."""
    strongly_typed: bool
    flags: tuple[str, ...]  # builder flags set (weakly typed only)
    quantized_layers: str | None  # "int8" where the graph has Q/DQ, None for an fp16 graph
    other_layers: str
    fp16_variant: str | None = None  # how to get FP16 outside Q/DQ instead, where TensorRT has a way

    def to_json(self) -> dict:
        return {"strongly_typed": self.strongly_typed, "builder_flags": list(self.flags),
                "quantized_layers": self.quantized_layers, "other_layers": self.other_layers,
                "fp16_variant": self.fp16_variant}


def precision_mix(trt_version: str, precision: str, options) -> PrecisionMix:
    """8.x/9.x: FP16 (+INT8) flags, TensorRT picks FP16 or FP32 per layer; >= 10: strongly typed, layers outside
    Q/DQ at the graph's types; options["trt_int8_mix"] == "fp16" asks for the 8.x mix (10.x only)."""
    major, int8 = trt_major(trt_version), precision.startswith("int8")
    quantized = "int8" if int8 else None
    wanted = options.get("trt_int8_mix", "fp32" if major >= 10 else "fp16")
    if int8 and (wanted not in ("fp16", "fp32") or (wanted == "fp32" and major < 10)):
        raise EdgeresError(f"trt_int8_mix {wanted!r} is not available on TensorRT {trt_version}: TensorRT < 10 "
                           "builds only the FP16+INT8 mix, >= 10 'fp32' (strongly typed) or 'fp16' (10.x only)")
    if major >= 11 and wanted == "fp16" and int8:
        raise EdgeresError(f"TensorRT {trt_version} has no FP16/INT8 builder flags: layers outside Q/DQ run at the "
                           "graph's types (FP32); build on TensorRT 10.x for the FP16+INT8 mix")
    if major >= 10 and not int8:
        return PrecisionMix(True, (), quantized, "fp16 (the graph's float16 types)")
    if major >= 10 and wanted == "fp32":
        variant = ("options={'trt_int8_mix': 'fp16'}: weakly typed with the FP16+INT8 flags, as on 8.x"
                   if major == 10 else "none: TensorRT 11 has no FP16 flag and edgeres makes no FP16-typed Q/DQ graph")
        return PrecisionMix(True, (), quantized, "fp32 (the graph's types: strongly typed)", variant)
    flags = ("FP16", "INT8") if int8 else ("FP16",)
    return PrecisionMix(False, flags, quantized, "fp16 or fp32, chosen per layer by TensorRT (FP16 flag)")


def trtexec_command(onnx: Path, engine: Path, timing_cache: Path, precision: str, trt_version: str,
                    workspace_mib: int = WORKSPACE_MIB, profile: BatchProfile | None = None,
                    mix: PrecisionMix | None = None) -> str:
    """The trtexec line that builds the same engine (typing/flags per TensorRT generation, the same profile)."""
    mix = mix or precision_mix(trt_version, precision, {})
    args = ["trtexec", f"--onnx={onnx}", f"--saveEngine={engine}", f"--timingCacheFile={timing_cache}",
            f"--memPoolSize=workspace:{workspace_mib}", "--profilingVerbosity=detailed",
            f"--exportLayerInfo={engine.with_suffix('.layers.json')}"]
    if mix.strongly_typed and trt_major(trt_version) == 10:
        args.append("--stronglyTyped")  # TensorRT 11 is always strongly typed and has no such flag to need
    args += [f"--{flag.lower()}" for flag in mix.flags]
    args += profile.trtexec_args() if profile else []
    return " ".join(shlex.quote(a) for a in args)


def build_engine(ctx: BuildContext, graph: GraphEntry) -> BuildOutput:
    """Engine from the prerequisite ONNX (fp16 / int8-qdq / lq-*) of the same resolution."""
    from edgeres.runtimes.trt import device_name
    trt = require_tensorrt(ctx.target)
    source, precision = ctx.prerequisite(graph), get_target(ctx.target).precision
    profile, mix = batch_profile(graph, ctx.options), precision_mix(trt.__version__, precision, ctx.options)
    check_for_tensorrt(source.file, (trt.__version__,), batch_profile=profile is not None)
    device, folder = device_name(), ctx.out / "engines"
    engine = folder / engine_name(sha256_file(source.file), graph.resolution, precision, trt.__version__, device)
    timing = folder / f"timing-trt{trt.__version__}-{slug(device)}.cache"
    workspace = int(ctx.options.get("workspace_mib", WORKSPACE_MIB))
    write_bytes(engine, serialize_engine(trt, source.file, timing, workspace, profile, mix))
    cmd = trtexec_command(source.file, engine, timing, precision, trt.__version__, workspace, profile, mix)
    write_text(engine.with_suffix(".trtexec.sh"), f"#!/bin/sh\n# same engine with trtexec\n{cmd}\n")
    accuracy, note = engine_accuracy(ctx, graph, engine)
    extra = {"tensorrt": trt.__version__, "device": device, "source": str(source.file), "trtexec": cmd,
             "precision_mix": mix.to_json(), "profile": profile.to_json() if profile else None}
    return BuildOutput(engine, precision, calibration=source.calibration, accuracy=accuracy, accuracy_note=note,
                    extra=extra)


def create_network(trt, builder, mix: PrecisionMix):
    """8.x/9.x: explicit batch (the ONNX parser needs it); 10.x: STRONGLY_TYPED unless the FP16-flag mix was asked
    for; 11.x: no flag (strong typing is always on and its flag deprecated; EXPLICIT_BATCH is gone)."""
    major, members = trt_major(trt.__version__), trt.NetworkDefinitionCreationFlag.__members__
    flags = 0
    if major < 10:
        flags |= 1 << int(members["EXPLICIT_BATCH"])
    elif major == 10 and mix.strongly_typed:
        flags |= 1 << int(members["STRONGLY_TYPED"])
    return builder.create_network(flags)


def parse_onnx(trt, network, logger, path: Path) -> None:
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EdgeresError(f"TensorRT cannot parse {path}: {errors[:300]}")


def add_profile(builder, config, profile: BatchProfile | None) -> None:
    """One optimization profile for a dynamic batch (TensorRT refuses a dynamic network without one)."""
    if profile is None:
        return
    trt_profile = builder.create_optimization_profile()
    trt_profile.set_shape(profile.input, profile.shape(profile.min), profile.shape(profile.opt),
                          profile.shape(profile.max))
    if config.add_optimization_profile(trt_profile) < 0:
        raise EdgeresError(f"TensorRT refused the optimization profile {profile.to_json()}")


def attach_timing_cache(config, timing: Path) -> None:
    """The cached timings if TensorRT accepts them, else a fresh cache: a cache from another device or TensorRT
    is refused (set_timing_cache returns False, create_timing_cache may return None) and then rebuilt."""
    cache = config.create_timing_cache(timing.read_bytes() if timing.exists() else b"")
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
        return
    if timing.exists():
        log.warning("TensorRT refused the timing cache %s (another device or TensorRT version): starting a fresh one",
                    timing)
    fresh = config.create_timing_cache(b"")
    if fresh is None or not config.set_timing_cache(fresh, ignore_mismatch=False):
        raise EdgeresError("TensorRT set_timing_cache failed even for a fresh cache: run with -v for TensorRT's log")


def save_timing_cache(config, timing: Path) -> None:
    cache = config.get_timing_cache()  # None when no cache is attached (pyCore.cpp get_timing_cache)
    if cache is not None:
        write_bytes(timing, bytes(cache.serialize()))


def serialize_engine(trt, onnx: Path, timing: Path, workspace_mib: int, profile: BatchProfile | None,
                     mix: PrecisionMix) -> bytes:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = create_network(trt, builder, mix)
    parse_onnx(trt, network, logger, onnx)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    for flag in mix.flags:  # weakly typed only: types are hints, the flags allow FP16/INT8 kernels
        config.set_flag(getattr(trt.BuilderFlag, flag))
    add_profile(builder, config, profile)
    attach_timing_cache(config, timing)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EdgeresError(f"TensorRT failed to build an engine from {onnx}: rerun with -v for the builder log")
    save_timing_cache(config, timing)
    return bytes(plan)


def engine_accuracy(ctx: BuildContext, graph: GraphEntry, engine: Path) -> tuple[dict | None, str | None]:
    """Top-1/top-5 of the engine on this device (edgeres.runtimes.trt.TrtRunner), or null with the reason."""
    from edgeres.runtimes.trt import TrtRunner, cuda_available
    missing = cuda_available()
    if missing:
        return None, f"not measured: {missing} (install pycuda on the device to measure the engine's accuracy)"
    from edgeres.build.measure import accuracy_json
    from edgeres.data import open_images
    images = open_images(ctx.data or ctx.export.data, "val")
    runner = TrtRunner(engine)
    try:
        return accuracy_json(graph, runner.infer, images, ctx.export, ctx.options.get("eval_images"), "tensorrt"), None
    finally:
        runner.close()
