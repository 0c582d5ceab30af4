"""ONNX Runtime (the embedded default backend): the only module that constructs an InferenceSession."""
import os
from typing import Sequence

import numpy as np

from edgeres.errors import EdgeresError
from edgeres.runtimes.base import batch_shape, in_chunks, random_input

_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}
CPU = "CPUExecutionProvider"


def ort_session(model: str | os.PathLike | bytes, threads: int | None = None, providers: Sequence[str] = (CPU,),
                spinning: bool = True, level: str = "all", save_to: str | os.PathLike | None = None,
                exact_int8: bool = False):
    """An InferenceSession from a path or serialized ONNX bytes.

    threads: intra-op threads (None: ORT default). spinning=False stops idle pool threads from busy-waiting
    after each run: several sessions used in turn (bench interleaving, cascade stages) then do not fight each
    other's spinners (bench measured p99 28.6 -> 4.4 ms on a tiny CNN on a busy 2-core box).
    level: graph optimisation "all", "extended" or "none" (what ORT's calibrator runs: no fusion may hide a
    tensor it measures); save_to writes the optimised graph there.
    exact_int8: on x86 CPUs without VNNI (AVX2, AVX-512 without VNNI), ORT's fast U8 x S8 kernels add pairs of
    products in int16, which saturates when the S8 weights use their full range; this takes ORT's exact U8 x U8
    path instead ("session.x64quantprecision"). Measured on a 2-core AVX2 AMD EPYC: a tiny CNN's int8-qdq graph
    flipped 27% of FP32's predictions with the fast kernels and 2.4% exact; ResNet18 U8 INT8 at 224 px ran
    11.7 ms fast, 15.9 ms exact. For accuracy measurements (build, eval); latency is measured as deployed.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                                        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}[level]
    options.log_severity_level = 3  # warnings about unused initializers etc. are noise for users
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if exact_int8:
        options.add_session_config_entry("session.x64quantprecision", "1")
    if threads:
        options.intra_op_num_threads = threads
    if save_to is not None:
        options.optimized_model_filepath = str(save_to)
    try:
        return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                    providers=list(providers))
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types for bad files
        where = "the in-memory graph" if isinstance(model, bytes) else model
        raise EdgeresError(f"ONNX Runtime cannot load {where}: {str(exc).splitlines()[0][:200]}") from None


class OrtRunner:
    """One graph in ONNX Runtime (CPU by default, or another execution provider); see runtimes.base.Runner.

    `feeds` are extra constant inputs (the switchable graph's `res_index`).
    """

    def __init__(self, model: str | os.PathLike | bytes, threads: int | None = None, provider: str = CPU,
                 spinning: bool = True, feeds: dict[str, np.ndarray] | None = None, exact_int8: bool = False):
        self.provider, self.feeds = provider, dict(feeds or {})
        self.what = "the in-memory graph" if isinstance(model, bytes) else str(model)
        self.session = ort_session(model, threads, (provider,), spinning=spinning, exact_int8=exact_int8)
        spec = self.session.get_inputs()[0]
        self.input_name, self.input_shape = spec.name, list(spec.shape)
        self.dtype = _ORT_DTYPES.get(spec.type, np.float32)
        first = spec.shape[0]
        self.static_batch = first if isinstance(first, int) and first > 0 else None

    def infer(self, x: np.ndarray) -> np.ndarray:
        return in_chunks(np.asarray(x), self.static_batch, self._infer_one)

    def _infer_one(self, x: np.ndarray) -> np.ndarray:
        feed = {self.input_name: np.ascontiguousarray(x, dtype=self.dtype), **self.feeds}
        return np.asarray(self.session.run(None, feed)[0], dtype=np.float32)

    def example_input(self, batch: int) -> np.ndarray:
        return random_input(batch_shape(self.input_shape, batch, self.what), self.dtype)

    def run(self, inputs: np.ndarray) -> None:
        self.session.run(None, {self.input_name: inputs, **self.feeds})

    def close(self) -> None:
        self.session = None


def save_optimized(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Write `source` after ORT's EXTENDED graph optimisations to `target` (sessions on it start faster)."""
    ort_session(source, level="extended", save_to=target)
