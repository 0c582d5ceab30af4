"""Post-training calibration: activation ranges of one graph at its own resolution, cached and checked.

RS-Nets give every resolution its own BNs, so the folded graphs' activation ranges differ per resolution
and each graph is calibrated on images resized to *its* resolution.

Cache: one JSON file per (graph, method) under the calibration directory (default `<out>/calib`: the cache
belongs to the graphs it was measured on, so it sits next to the build that uses them; pass `--calib-dir` to
share one across builds). The file stores its key (graph sha256, method, data fingerprint, image count,
resolution, ONNX Runtime version); a file whose key differs is refused with one line naming the
difference and never reused silently (`edgeres build --recalibrate` deletes it first). Beside it goes a TensorRT-format
calibration cache (`TRT-<version number>-EntropyCalibration2`, then `tensor: <hex of big-endian float32 scale>`,
scale = max(|lo|, |hi|) / 127) for implicit-INT8 users (`trtexec --onnx=<exported graph> --int8 --calib=FILE`):
- its header carries the version number of the TensorRT it is written for (NvInferVersion.h: 8.x/9.x
  major*1000+minor*100+patch, so 8.5.2 -> 8502; 10.x major*10000+minor*100+patch, so 10.3.0 -> 100300): the
  installed TensorRT when there is one (< 11), else 8.5.2 (JetPack 5.1). TensorRT 11 has no implicit INT8 and
  reads no calibration cache; 10.x deprecates it (10.1) but still reads it.
- its tensor names are those of the EXPORTED graph (the one a user builds the implicit-INT8 engine from, whose
  ONNX tensor names are TensorRT's tensor names), not of ORT's pre-processed copy the ranges were measured on:
  names the pre-processing introduced are dropped (in practice it only removes tensors, e.g. Identity outputs).
"""
import contextlib
import logging
import struct
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from edgeres._io import read_json, write_json, write_text
from edgeres.build.batching import BATCH, dynamic_batch_copy
from edgeres.build.targets import CalibSettings, GraphEntry
from edgeres.data import ImageSet, eval_batches, open_images
from edgeres.defaults import feed_batch
from edgeres.errors import EdgeresError, reraise_interrupt
from edgeres.manifests.export import ExportManifest

log = logging.getLogger(__name__)

METHODS = ("minmax", "entropy", "percentile")
# Images per calibration run (build.batching). MinMax ranges are a min/max over all images, so any batch gives the
# same ranges; the histogram methods merge per-run histograms, which can move their thresholds in the last digits.
CALIB_BATCH = BATCH
CACHE_FORMAT = 1
TRT_CACHE_DEFAULT = "8.5.2"  # JetPack 5.1's TensorRT, when none is installed here (see module docstring)
TRT_CACHE_VERSION = "8502"  # its header number
TRT_CACHE_ALGO = "EntropyCalibration2"
# ORT's entropy default (128 bins, 128 quantized bins) leaves exactly one candidate threshold, i.e. min/max;
# 2048 bins / 128 quantized bins is the TensorRT entropy calibrator's setting (GTC 2017 S7310).
METHOD_OPTIONS = {"entropy": {"num_bins": 2048, "num_quantized_bins": 128}}


@dataclass(frozen=True)
class Calibration:
    key: dict  # what the ranges were measured on (see module docstring)
    ranges: dict  # tensor name -> (lowest, highest) float, in the pre-processed graph's names
    path: Path  # the JSON cache file
    trt_cache: Path  # the TensorRT-format cache beside it
    trt_header: str = ""  # its first line: which TensorRT version it is written for

    def to_json(self) -> dict:
        """The `calibration` block of build.json."""
        return {"method": self.key["method"], "images": self.key["images"], "data": self.key["data"],
                "cache_key": {k: self.key[k] for k in ("graph_sha256", "method", "data", "images")},
                "cache": str(self.path), "trt_cache": str(self.trt_cache), "trt_cache_header": self.trt_header,
                "trt_cache_names": "tensor names of the exported graph (build the implicit-INT8 engine from it)"}


def calib_key(graph: GraphEntry, settings: CalibSettings, data_fingerprint: str) -> dict:
    import onnxruntime
    return {"format": CACHE_FORMAT, "graph_sha256": graph.sha256, "resolution": graph.resolution,
            "method": settings.method, "data": data_fingerprint, "images": settings.images,
            "onnxruntime": onnxruntime.__version__}  # pre-processing (and so tensor names) may change with ORT


def cache_file(cache_dir: Path, graph: GraphEntry, method: str) -> Path:
    return Path(cache_dir) / f"{graph.file.stem}.{method}.json"


def calibrate(model_path: Path, graph: GraphEntry, settings: CalibSettings, export: ExportManifest,
              cache_dir: Path, threads: int | None = None) -> Calibration:
    """Ranges of `model_path` (the pre-processed `graph`), from the cache when its key matches exactly;
    `threads`: intra-op threads of the calibration session (None: ORT's default)."""
    if settings.method not in METHODS:
        raise EdgeresError(f"unknown calibration method {settings.method!r}: choose one of {', '.join(METHODS)}")
    images = open_images(settings.data or export.data, "train")  # never the eval split: keep eval honest
    key = calib_key(graph, settings, selection_fingerprint(images, settings.images))
    path = cache_file(cache_dir, graph, settings.method)
    if path.exists():
        ranges = load_ranges(path, key)
    else:
        ranges = measured_ranges(model_path, images, graph, export, settings, threads)
        write_json(path, {"key": key, "ranges": {name: list(r) for name, r in ranges.items()}})
    trt_cache, header = write_trt_cache(path.with_suffix(".trt-calib.cache"), ranges, graph.file)
    return Calibration(key, ranges, path, trt_cache, header)


def write_trt_cache(path: Path, ranges: dict, exported: Path) -> tuple[Path, str]:
    """The TensorRT-format cache for the installed (or default) TensorRT, in the exported graph's names."""
    text = trt_cache_text(in_graph(ranges, exported), trt_version_number(trt_cache_version()))
    return write_text(path, text), text.splitlines()[0]


def trt_cache_version() -> str:
    """The TensorRT the cache is written for: the installed one if it still reads caches (< 11), else 8.5.2."""
    from edgeres._optional import available
    if available("tensorrt"):
        import tensorrt
        if trt_version_number(tensorrt.__version__, strict=False):
            return tensorrt.__version__
    return TRT_CACHE_DEFAULT


def trt_version_number(version: str, strict: bool = True) -> str:
    """'8.5.2' -> '8502', '10.3.0' -> '100300' (NvInferVersion.h's NV_TENSORRT_VERSION); 11+ reads no cache:
    an EdgeresError (or '' when not strict)."""
    from edgeres.build.trt_rules import parse_version
    major, minor, patch = parse_version(version)
    if major >= 11 or major < 8:
        if strict:
            raise EdgeresError(f"TensorRT {version} reads no calibration cache (implicit INT8 is 8.x-10.x only)")
        return ""
    return str(major * (1000 if major < 10 else 10000) + minor * 100 + patch)


def in_graph(ranges: dict, graph_file: Path) -> dict:
    """The ranges of tensors that exist in `graph_file` (its inputs and node outputs)."""
    import onnx
    model = onnx.load(str(graph_file), load_external_data=False)
    names = {i.name for i in model.graph.input} | {o for node in model.graph.node for o in node.output}
    return {name: r for name, r in ranges.items() if name in names}


def load_ranges(path: Path, key: dict) -> dict:
    """The cached ranges if the stored key equals `key`; else one line saying what differs."""
    cached = read_json(path, "calibration cache")
    stored = cached.get("key") if isinstance(cached, dict) else None
    if not isinstance(stored, dict) or not isinstance(cached.get("ranges"), dict):
        raise EdgeresError(f"calibration cache {path} is damaged: delete it or pass --recalibrate")
    diff = [f"{k} {stored.get(k)!r} != {key[k]!r}" for k in key if stored.get(k) != key[k]]
    if diff:
        raise EdgeresError(f"calibration cache {path} does not match this build ({'; '.join(diff)}): "
                           f"pass --recalibrate to replace it or --calib-dir to keep both")
    return {name: _range(value, f"calibration cache {path}: range of {name!r}") for name, value in
            cached["ranges"].items()}


def _range(value, what: str) -> tuple[float, float]:
    """A (low, high) pair of finite numbers with low <= high."""
    from edgeres.manifests._base import check_number
    if not isinstance(value, list) or len(value) != 2:
        raise EdgeresError(f"{what} is {value!r}, not a [low, high] pair: delete the cache or pass --recalibrate")
    low, high = (check_number(v, what) for v in value)
    if low > high:
        raise EdgeresError(f"{what} has low {low} > high {high}: delete the cache or pass --recalibrate")
    return low, high


def selection_indices(count: int, n: int) -> np.ndarray:
    """A fixed pseudo-random subset (seed 0): folder datasets are sorted by class, so the first n would
    cover only the first classes."""
    if n < 1:
        raise EdgeresError(f"--calib-images must be at least 1, got {n}")
    return np.random.default_rng(0).permutation(count)[:min(n, count)]


def selection_fingerprint(images: ImageSet, n: int) -> str:
    return f"{images.fingerprint}:seed0:n{min(n, len(images))}"


def measured_ranges(model_path: Path, images: ImageSet, graph: GraphEntry, export: ExportManifest,
                    settings: CalibSettings, threads: int | None = None) -> dict:
    """Ranges from `settings.images` images, CALIB_BATCH at a time through a dynamic-batch copy of a static
    batch-1 graph (one image per run otherwise). A graph that cannot take the batch (a shape constant baked
    into it) is calibrated one image per run instead: the same images, the same ranges, only slower."""
    batched = dynamic_batch_copy(model_path) if graph.input_shape[0] == 1 else None
    if batched is not None:
        try:
            batches = calibration_batches(images, graph, export, settings.images, CALIB_BATCH)
            return ranges_from_batches(batched, graph.input_name, batches, settings.method, threads)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own types when a baked-in shape rejects N > 1
            reraise_interrupt(exc)  # not a failed batch: the user stopped the run while ORT was importing
            log.info("calibrating %s one image per run: its batched copy failed (%s)", graph.file.name,
                     str(exc).splitlines()[0][:120])
    batches = calibration_batches(images, graph, export, settings.images)
    return ranges_from_batches(model_path, graph.input_name, batches, settings.method, threads)


def calibration_batches(images: ImageSet, graph: GraphEntry, export: ExportManifest, n: int,
                        batch: int | None = None) -> Iterator[np.ndarray]:
    """N,C,R,R float32 batches at the graph's resolution: `batch` images (default: the graph's batch size, 1
    for a static 1x3xRxR graph; 32 for a dynamic one)."""
    pre = export.preprocessing
    if batch is None:
        batch = feed_batch(graph.input_shape)
    idx = selection_indices(len(images), n)
    if len(idx) > batch and isinstance(graph.input_shape[0], int) and batch == graph.input_shape[0]:
        # a static batch cannot take a short tail
        idx = idx[:len(idx) // batch * batch]
    for x, _ in eval_batches(images, graph.resolution, pre.mean, pre.std, pre.crop_ratio, batch,
                             indices=idx):
        yield x


class _Reader:
    """onnxruntime CalibrationDataReader over our batches (defined lazily: ORT is imported on use)."""

    def __init__(self, input_name: str, batches: Iterator[np.ndarray]):
        self.input_name, self.batches = input_name, iter(batches)

    def get_next(self):
        batch = next(self.batches, None)
        return None if batch is None else {self.input_name: batch}


def ranges_from_batches(model_path: Path, input_name: str, batches, method: str, threads: int | None = None) -> dict:
    """tensor name -> (lowest, highest) measured by ORT's calibrator (asymmetric ranges, so one
    calibration serves both U8 and symmetric S8 activations)."""
    from onnxruntime.quantization import CalibrationMethod, create_calibrator
    ort_method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                  "percentile": CalibrationMethod.Percentile}[method]
    options = {"symmetric": False, **METHOD_OPTIONS.get(method, {})}
    # ORT's histogram calibrators print progress to stdout, where our results go.
    with tempfile.TemporaryDirectory(prefix="edgeres-calib-") as tmp, contextlib.redirect_stdout(sys.stderr):
        calibrator = create_calibrator(Path(model_path), augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=ort_method, extra_options=options)
        calibrator.infer_session = quiet_session(calibrator.augmented_model_path, threads)
        calibrator.collect_data(_Reader(input_name, batches))
        data = calibrator.compute_data()
    return {name: tuple(float(np.asarray(v).reshape(-1)[0]) for v in td.range_value) for name, td in data.items()}


def quiet_session(augmented: str, threads: int | None = None):
    """The calibrator's session as ORT makes it (no graph optimisation) but with spinning off: its idle threads
    busy-waited between the runs, and with them off calibration took 0.53x the time (paired, ResNet18 160 px
    on a shared 2-core box; 0.48x together with CALIB_BATCH). The ranges do not change."""
    from edgeres.runtimes.ort import ort_session
    return ort_session(augmented, threads, spinning=False, level="none")


def tensors_data(ranges: dict, method: str):
    """Our ranges as ORT TensorsData (what quantize_static reads from a calibration cache)."""
    from onnxruntime.quantization import CalibrationMethod, TensorData, TensorsData
    ort_method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                  "percentile": CalibrationMethod.Percentile}[method]
    return TensorsData(ort_method, {name: TensorData(lowest=np.float32(lo), highest=np.float32(hi))
                                    for name, (lo, hi) in ranges.items()})


def trt_cache_text(ranges: dict, version: str = TRT_CACHE_VERSION, algo: str = TRT_CACHE_ALGO) -> str:
    """TensorRT calibration cache: header line, then `name: <hex>` with the float32 bits of amax/127."""
    lines = [f"TRT-{version}-{algo}"]
    for name, (lo, hi) in sorted(ranges.items()):
        scale = max(abs(lo), abs(hi)) / 127.0
        lines.append(f"{name}: {struct.pack('>f', scale).hex()}")
    return "\n".join(lines) + "\n"


def parse_trt_cache(text: str) -> tuple[str, dict]:
    """(header, tensor name -> scale) from a TensorRT calibration cache; names may contain ': '."""
    header, *rows = [line for line in text.splitlines() if line.strip()]
    if not header.startswith("TRT-"):
        raise EdgeresError(f"not a TensorRT calibration cache (first line {header[:40]!r})")
    scales = {}
    for row in rows:
        name, _, bits = row.rpartition(": ")
        scales[name] = struct.unpack(">f", int(bits, 16).to_bytes(4, "big"))[0]
    return header, scales
