"""ONNX Runtime targets: `ort-fp32` (offline-optimised graph) and the two INT8 QDQ graphs.

Both INT8 graphs come from ONE calibration per resolution (`calib.calibrate`, cached) of the
`quant_pre_process`ed export graph, and quantize Conv/Gemm/... with QDQ and symmetric per-channel S8 weights:
- `ort-int8`: asymmetric U8 activations. Measured on our 2-core AVX-512 VNNI CPU (ORT 1.31, ResNet18 @224,
  batch 1): U8 act / S8 w 7.1 ms vs FP32 20.2 ms, while S8 activations ran 17.5 ms (shared FACTS.md).
- `int8-qdq`: symmetric S8 activations and weights, which is what TensorRT's explicit quantization takes, with
  biases kept float: quantize_static's default QuantizeBias=True makes each bias an INT32 initializer behind a
  DequantizeLinear, and TensorRT's dequantize layer takes only INT8 (8.5) or INT8/FP8/INT4 (10.x) (NvInfer.h
  IDequantizeLayer; onnx-tensorrt docs/operators.md), so no TensorRT could parse the graph.
"""
import logging
import tempfile
from pathlib import Path

from edgeres._io import atomic_path
from edgeres.build.calib import Calibration, cache_file, calibrate, tensors_data
from edgeres.build.targets import BuildContext, BuildOutput, GraphEntry, get_target
from edgeres.errors import EdgeresError


def artifact_path(ctx: BuildContext, graph: GraphEntry, suffix: str = ".onnx") -> Path:
    """<out>/<target>/<export graph stem><suffix>: one folder per target keeps names stable across targets."""
    return ctx.out / ctx.target / f"{graph.file.stem}{suffix}"


def build_fp32(ctx: BuildContext, graph: GraphEntry) -> BuildOutput:
    """The export graph after ORT's extended graph optimisations, saved so sessions start faster.

    EXTENDED (not ALL): ALL adds layout transforms tied to this CPU's instruction set; EXTENDED fusions use
    com.microsoft ops, so the file is for ONNX Runtime only (TensorRT takes the fp16/int8-qdq graphs).
    """
    from edgeres.runtimes.ort import save_optimized
    path = artifact_path(ctx, graph)
    with atomic_path(path) as tmp:
        save_optimized(graph.file, tmp)
    return BuildOutput(path, get_target(ctx.target).precision)


ORT_INT8_OPTIONS = {"ActivationSymmetric": False, "WeightSymmetric": True}  # INT32 biases: ORT's fast CPU kernels
TRT_INT8_OPTIONS = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}  # see docstring


def build_ort_int8(ctx: BuildContext, graph: GraphEntry) -> BuildOutput:
    """7-bit weights (ORT's reduce_range) by default: on x86 CPUs without VNNI, ORT's fast U8 x S8 kernels add
    pairs of products in int16 (255 x 127 x 2 > 32767 saturates; 255 x 64 x 2 does not). Measured on a 2-core
    AVX2 AMD EPYC (tiny CNN, 2000 val images): 8-bit weights flipped 11.3% of FP32's predictions (-3.65 points),
    7-bit 3.4% (-1.55). An artifact may run on any x86 CPU, so the default is the one exact everywhere;
    options {"int8_full_range": True} keeps 8 bits for VNNI-only fleets."""
    full = bool(ctx.options.get("int8_full_range", False))
    return _int8(ctx, graph, activation="QUInt8", options=ORT_INT8_OPTIONS, reduce_range=not full)


def build_int8_qdq(ctx: BuildContext, graph: GraphEntry) -> BuildOutput:
    """8-bit weights: TensorRT's INT8 accumulates in int32 (no saturation); its host accuracy is measured with
    ORT's exact kernels (runtimes.ort.ort_session exact_int8)."""
    return _int8(ctx, graph, activation="QInt8", options=TRT_INT8_OPTIONS)


def _int8(ctx: BuildContext, graph: GraphEntry, activation: str, options: dict,
          reduce_range: bool = False) -> BuildOutput:
    path = artifact_path(ctx, graph)
    with tempfile.TemporaryDirectory(prefix="edgeres-int8-") as tmp:
        pre = ctx.prepared.get(graph.resolution) or preprocess(graph.file, Path(tmp) / "pre.onnx",
                                                                static=is_static(graph.input_shape))
        calibration = calibrate(pre, graph, ctx.calib, ctx.export, calib_dir(ctx))  # 2nd INT8 target: cache hit
        with atomic_path(path) as out:
            quantize_qdq(pre, out, calibration, activation, options, Path(tmp), reduce_range)
    extra = {"activations": "S8 symmetric" if options["ActivationSymmetric"] else "U8 asymmetric",
             "weights": "S8 symmetric per-channel" + (", 7-bit range -64..64 (reduce_range)" if reduce_range else ""),
             "weight_bits": 7 if reduce_range else 8,
             "biases": "float" if options.get("QuantizeBias") is False else "INT32 (quantized)"}
    return BuildOutput(path, get_target(ctx.target).precision, calibration=calibration.to_json(), extra=extra)


def prepare_int8(ctx: BuildContext, graphs: list[GraphEntry], scratch: Path) -> None:
    """Pre-process every graph once for both INT8 targets (into `scratch`, kept in `ctx.prepared`), and
    calibrate the graphs that have no cached calibration side by side, one graph per CPU.

    Side by side because the calibrator's session runs the un-optimised augmented graph (every tensor an
    output), whose small ops leave a second intra-op thread mostly idle: on a 2-core AMD EPYC, two one-thread
    sessions calibrating two graphs at once took 0.78x the time of two-thread sessions one after the other
    (5 ResNet18 graphs, 15.7 vs 20.1 s). An interrupt waits for the graphs being calibrated, then stops."""
    from concurrent.futures import ThreadPoolExecutor

    from edgeres.runtimes.base import usable_cpus
    for graph in graphs:
        ctx.prepared[graph.resolution] = preprocess(graph.file, scratch / f"{graph.file.stem}.pre.onnx",
                                                    static=is_static(graph.input_shape))
    todo = [g for g in graphs if not cache_file(calib_dir(ctx), g, ctx.calib.method).exists()]
    cpus = usable_cpus()
    workers = min(len(todo), cpus)
    if workers < 2:
        return  # nothing to share out: the builder calibrates with every thread
    pool = ThreadPoolExecutor(workers, thread_name_prefix="edgeres-calib")
    try:
        futures = [pool.submit(calibrate, ctx.prepared[g.resolution], g, ctx.calib, ctx.export, calib_dir(ctx),
                               cpus // workers) for g in todo]
        for future in futures:
            future.result()  # the first failure, in graph order, is the one reported
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def calib_dir(ctx: BuildContext) -> Path:
    return Path(ctx.calib.cache_dir) if ctx.calib.cache_dir else ctx.out / "calib"


def is_static(shape) -> bool:
    return bool(shape) and all(isinstance(d, int) and d > 0 for d in shape)


def preprocess(src: Path, dest: Path, static: bool = False) -> Path:
    """ORT's recommended pre-quantization pass (shape inference + basic optimisation) into `dest`.

    static: the graph's input shape has no symbolic dimension, so ONNX's shape inference gives every shape and
    the symbolic pass (written for transformers' dynamic dims) is skipped: 0.5 s instead of 3.0 s for ResNet18
    at 224 px, and the same nodes, weights and tensor shapes."""
    from onnxruntime.quantization import quant_pre_process
    # ORT logs every shape-inference pass at INFO; keep it for -vv only.
    logging.getLogger("onnxruntime.quantization").setLevel(max(logging.getLogger().level, logging.WARNING)
                                                             if logging.getLogger().level > logging.DEBUG else 0)
    try:
        quant_pre_process(str(src), str(dest), skip_symbolic_shape=static)
    except Exception as exc:  # noqa: BLE001 - ORT/onnx raise many types for graphs they cannot process
        raise EdgeresError(f"cannot pre-process {src} for quantization: {str(exc).splitlines()[0][:200]}") from None
    return dest


def quantize_qdq(pre: Path, out: Path, calibration: Calibration, activation: str, options: dict,
                 tmp: Path, reduce_range: bool = False) -> None:
    """QDQ-quantize `pre` with cached ranges (handed to ORT through its own calibration-cache file);
    reduce_range: 7-bit weights (activations keep 8 bits)."""
    from onnxruntime.quantization import (
        QuantFormat,
        QuantType,
        quantize_static,
        save_tensors_data,
    )
    method = calibration.key["method"]
    ranges = tensors_data(calibration.ranges, method)
    cache = tmp / f"ranges-{activation}.json"
    save_tensors_data(ranges, cache)
    quantize_static(str(pre), str(out), None, quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=getattr(QuantType, activation), weight_type=QuantType.QInt8,
                    reduce_range=reduce_range, calibrate_method=ranges.calibration_method, calibration_cache_path=str(cache),
                    extra_options=dict(options))
