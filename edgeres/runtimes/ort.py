"""ONNX Runtime sessions on CPU (the embedded default backend), shared by build, eval, bench and cascade."""
import os
from typing import Sequence

import numpy as np

from edgeres.errors import EdgeresError
from edgeres.manifests.artifacts import Artifact
from edgeres.runtimes.base import SkipCell, random_input

_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def ort_session(model: str | os.PathLike | bytes, threads: int | None = None,
                providers: Sequence[str] = ("CPUExecutionProvider",), spinning: bool = True):
    """An InferenceSession with full graph optimisation from a path or serialized ONNX bytes.

    threads: intra-op threads (None: ORT default). spinning=False stops idle pool threads from busy-waiting
    after each run: several sessions used in turn (bench interleaving, cascade stages) then do not fight each
    other's spinners (bench measured p99 28.6 -> 4.4 ms on a tiny CNN on a busy 2-core box).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # warnings about unused initializers etc. are noise for users
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                    providers=list(providers))
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types for bad files
        where = "the in-memory graph" if isinstance(model, bytes) else model
        raise EdgeresError(f"ONNX Runtime cannot load {where}: {str(exc).splitlines()[0][:200]}") from None


def ort_scorer(path: str | os.PathLike, threads: int | None = None, spinning: bool = True):
    """Callable N,C,H,W float32 -> logits for a single-input, single-output graph.

    `score.static_batch` is the graph's fixed batch size, or None when its batch axis is dynamic.
    """
    session = ort_session(path, threads, spinning=spinning)
    node = session.get_inputs()[0]

    def score(x: np.ndarray) -> np.ndarray:
        return session.run(None, {node.name: np.ascontiguousarray(x, dtype=np.float32)})[0]
    score.static_batch = node.shape[0] if isinstance(node.shape[0], int) else None
    return score


class OrtRunner:
    """ONNX Runtime session (CPU by default, or the CUDA execution provider) with a fixed intra-op thread count."""

    def __init__(self, threads: int | None = None, provider: str = "CPUExecutionProvider"):
        self.threads, self.provider, self.session = threads, provider, None

    def prepare(self, artifact: Artifact, batch: int) -> np.ndarray:
        self.session = bench_session(artifact.file, self.threads, self.provider)
        spec = self.session.get_inputs()[0]
        self.input_name = spec.name
        return random_input(_batch_shape(spec.shape, batch, artifact), _ORT_DTYPES.get(spec.type, np.float32))

    def run(self, inputs: np.ndarray) -> None:
        self.session.run(None, {self.input_name: inputs})

    def close(self) -> None:
        self.session = None


def bench_session(model: str | bytes, threads: int | None, provider: str = "CPUExecutionProvider"):
    """An ORT session for timing: intra-op spinning off, because interleaved sessions (and the reference
    GEMM) would otherwise fight each other's spinning idle threads (see runtime.ort_session)."""
    return ort_session(model, threads, (provider,), spinning=False)


def _batch_shape(shape: list, batch: int, artifact: Artifact) -> tuple[int, ...]:
    """The graph's input shape at `batch`; a static batch dimension other than `batch` cannot run."""
    if len(shape) != 4 or not all(isinstance(d, int) for d in shape[1:]):
        raise EdgeresError(f"{artifact.file}: input shape {shape} is not N,C,H,W with static C,H,W")
    if isinstance(shape[0], int) and shape[0] != batch:
        raise SkipCell(f"graph has a static batch of {shape[0]} (export with --dynamic-batch for batch {batch})")
    return (batch, *shape[1:])
