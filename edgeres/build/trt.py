"""TensorRT engines (`trt-fp16`, `trt-int8`, `trt-lq-*`): the ONLY build module that touches TensorRT.

Every precision decision is already in the ONNX (fp16 weights, or explicit Q/DQ), so the engine is built
from that graph on the device that will run it. On TensorRT >= 10 the network is created strongly typed
(TensorRT 11 removed the FP16/INT8 builder flags; precision follows the graph's types); TensorRT 8.x/9.x
builds with the FP16 (+INT8 for Q/DQ graphs) flags instead. A timing cache per (TensorRT version, device)
makes rebuilds fast. Beside each engine goes the equivalent `trtexec` command line.
"""
import re
import shlex
from pathlib import Path

from edgeres._io import sha256_file, write_bytes, write_text
from edgeres._optional import available, require
from edgeres.build.targets import BuildOutput, BuildContext, GraphEntry, get_target
from edgeres.errors import EdgeresError

WORKSPACE_MIB = 1024  # builder scratch memory; Jetson Nano/Orin Nano share 4-8 GB with the CPU


def require_tensorrt(target: str):
    """`import tensorrt`, or one actionable line naming the target that needs it."""
    return require("tensorrt", f"build target {target} (a TensorRT engine, built on the GPU/Jetson that runs it)")


def trt_major(version: str) -> int:
    return int(version.split(".")[0])


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower() or "unknown"


def device_name() -> str:
    """The GPU's name: Jetson device-tree model, else CUDA device 0 via polygraphy's cuda wrapper."""
    model = Path("/proc/device-tree/model")
    if model.exists():
        return model.read_bytes().rstrip(b"\0").decode(errors="replace")
    try:
        import pycuda.driver as cuda
        cuda.init()
        return cuda.Device(0).name()
    except Exception:  # noqa: BLE001 - no pycuda / no driver: name is cosmetic, the build itself reports errors
        return "gpu"


def engine_name(source_sha: str, resolution: int, precision: str, trt_version: str, device: str) -> str:
    """<model sha12>-r<res>-<precision>-trt<version>-<device>.engine (an engine only runs where it was built)."""
    return f"{source_sha[:12]}-r{resolution}-{slug(precision)}-trt{trt_version}-{slug(device)}.engine"


def trtexec_command(onnx: Path, engine: Path, timing_cache: Path, precision: str, trt_version: str,
                    workspace_mib: int = WORKSPACE_MIB) -> str:
    """The trtexec line that builds the same engine (flags per TensorRT generation, see module docstring)."""
    args = ["trtexec", f"--onnx={onnx}", f"--saveEngine={engine}", f"--timingCacheFile={timing_cache}",
            f"--memPoolSize=workspace:{workspace_mib}", "--profilingVerbosity=detailed",
            f"--exportLayerInfo={engine.with_suffix('.layers.json')}"]
    major = trt_major(trt_version)
    if major == 10:
        args.append("--stronglyTyped")
    elif major < 10:
        args += ["--fp16"] + (["--int8"] if precision.startswith("int8") else [])
    return " ".join(shlex.quote(a) for a in args)


def build_engine(ctx: BuildContext, graph: GraphEntry) -> BuildOutput:
    """Engine from the prerequisite ONNX (fp16 / int8-qdq / lq-*) of the same resolution."""
    trt = require_tensorrt(ctx.target)
    source = ctx.prerequisite(graph)
    precision = get_target(ctx.target).precision
    device = device_name()
    folder = ctx.out / "engines"
    engine = folder / engine_name(sha256_file(source.file), graph.resolution, precision, trt.__version__, device)
    timing = folder / f"timing-trt{trt.__version__}-{slug(device)}.cache"
    workspace = int(ctx.options.get("workspace_mib", WORKSPACE_MIB))
    plan = serialize_engine(trt, source.file, timing, precision, workspace)
    write_bytes(engine, plan)
    cmd = trtexec_command(source.file, engine, timing, precision, trt.__version__, workspace)
    write_text(engine.with_suffix(".trtexec.sh"), f"#!/bin/sh\n# same engine with trtexec\n{cmd}\n")
    accuracy, note = engine_accuracy(ctx, graph, plan)
    extra = {"tensorrt": trt.__version__, "device": device, "source": str(source.file), "trtexec": cmd}
    return BuildOutput(engine, precision, calibration=source.calibration, accuracy=accuracy, accuracy_note=note,
                    extra=extra)


def create_network(trt, builder):
    """(network, strongly_typed): strongly typed on TensorRT >= 10, explicit batch on 8.x/9.x."""
    major = trt_major(trt.__version__)
    flags = 0
    strongly = major >= 10 and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    if strongly:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    elif major < 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    return builder.create_network(flags), strongly or major >= 11


def parse_onnx(trt, network, logger, path: Path) -> None:
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EdgeresError(f"TensorRT cannot parse {path}: {errors[:300]}")


def serialize_engine(trt, onnx: Path, timing: Path, precision: str, workspace_mib: int) -> bytes:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, strongly = create_network(trt, builder)
    parse_onnx(trt, network, logger, onnx)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    if not strongly:  # TRT 8/9: types are hints, the flags allow FP16/INT8 kernels
        config.set_flag(trt.BuilderFlag.FP16)
        if precision.startswith("int8"):
            config.set_flag(trt.BuilderFlag.INT8)
    cache = config.create_timing_cache(timing.read_bytes() if timing.exists() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EdgeresError(f"TensorRT failed to build an engine from {onnx}: rerun with -v for the builder log")
    write_bytes(timing, bytes(config.get_timing_cache().serialize()))
    return bytes(plan)


def engine_accuracy(ctx: BuildContext, graph: GraphEntry, plan: bytes) -> tuple[dict | None, str | None]:
    """Top-1/top-5 of the engine on this device (via polygraphy's runner), or null with the reason."""
    if not available("polygraphy"):
        return None, "not measured: install polygraphy on the device to measure the engine's accuracy"
    from polygraphy.backend.trt import TrtRunner, engine_from_bytes

    from edgeres.build.measure import accuracy_json
    from edgeres.data import open_images
    images = open_images(ctx.data or ctx.export.data, "val")
    with TrtRunner(engine_from_bytes(plan)) as runner:
        def score(x):
            return next(iter(runner.infer({graph.input_name: x}).values())).copy()
        return accuracy_json(graph, score, images, ctx.export, ctx.options.get("eval_images"), "tensorrt"), None
