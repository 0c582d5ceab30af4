"""ONNX Runtime sessions on CPU (the embedded default backend), shared by build, eval, bench and cascade."""
import os
from typing import Sequence

import numpy as np

from .errors import EdgeresError


def ort_session(path: str | os.PathLike, threads: int | None = None,
                providers: Sequence[str] = ("CPUExecutionProvider",)):
    """An InferenceSession with full graph optimisation; `threads` = intra-op threads (None: ORT default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # warnings about unused initializers etc. are noise for users
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=list(providers))
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types for bad files
        raise EdgeresError(f"ONNX Runtime cannot load {path}: {str(exc).splitlines()[0][:200]}") from None


def ort_scorer(path: str | os.PathLike, threads: int | None = None):
    """Callable N,C,H,W float32 -> logits for a single-input, single-output graph."""
    session = ort_session(path, threads)
    name = session.get_inputs()[0].name

    def score(x: np.ndarray) -> np.ndarray:
        return session.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]
    return score
