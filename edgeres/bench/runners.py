"""One small runner interface per backend: prepare(artifact, batch) -> run(inputs) -> close().

`run` returns None when the host clock is the right one (CPU backends; the caller times it with
perf_counter), or the device time in ms when the backend has a better clock (TensorRT: CUDA events).
Heavy imports (torch, tensorrt) happen inside prepare, so importing this module is cheap and torch-free.
"""
from typing import Protocol

import numpy as np

from ..errors import EdgeresError
from ..artifacts import Artifact

_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


class Runner(Protocol):
    provider: str

    def prepare(self, artifact: Artifact, batch: int) -> np.ndarray:
        """Load the artifact; return an input batch (N,C,H,W) that `run` accepts."""

    def run(self, inputs: np.ndarray) -> float | None:
        """One inference of the whole batch, finished (synchronised) on return."""

    def close(self) -> None:
        """Free the session / engine / model."""


def random_input(shape: tuple[int, ...], dtype=np.float32, seed: int = 0) -> np.ndarray:
    """Fixed pseudo-random normal input: timings must not depend on data, but zeros can hit fast paths."""
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


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
    from ..runtime import ort_session
    return ort_session(model, threads, (provider,), spinning=False)


def _batch_shape(shape: list, batch: int, artifact: Artifact) -> tuple[int, ...]:
    """The graph's input shape at `batch`; a static batch dimension other than `batch` cannot run."""
    if len(shape) != 4 or not all(isinstance(d, int) for d in shape[1:]):
        raise EdgeresError(f"{artifact.file}: input shape {shape} is not N,C,H,W with static C,H,W")
    if isinstance(shape[0], int) and shape[0] != batch:
        raise SkipCell(f"graph has a static batch of {shape[0]} (export with --dynamic-batch for batch {batch})")
    return (batch, *shape[1:])


class SkipCell(Exception):
    """This (artifact, batch) cannot be measured here, for the stated reason; the rest of the sweep goes on."""


class TorchRunner:
    """PyTorch eager: the RS-Net from the checkpoint, switched to the row's resolution before every run
    (what users do without export). One model is shared by all resolutions of a checkpoint."""

    provider = "torch-cpu"
    _models: dict = {}

    def __init__(self, threads: int | None = None):
        self.threads = threads

    def prepare(self, artifact: Artifact, batch: int) -> np.ndarray:
        from .. import _optional
        torch = _optional.torch("the PyTorch eager bench backend")
        from ..checkpoint import load_checkpoint
        from ..models import choose_bn, switchable_layers
        if self.threads:
            torch.set_num_threads(self.threads)
        if artifact.checkpoint not in self._models:
            self._models[artifact.checkpoint] = load_checkpoint(artifact.checkpoint)[:2]
        self.model, info = self._models[artifact.checkpoint]
        self.torch, self.layers = torch, switchable_layers(self.model)
        self.choice = choose_bn(artifact.resolution, self.layers[0].resolutions, allow_nearest=True)
        shape = (batch, info.arch.in_channels, artifact.resolution, artifact.resolution)
        return random_input(shape)

    def run(self, inputs: np.ndarray) -> None:
        with self.torch.inference_mode():
            for layer in self.layers:  # the switch is part of the cost: rows of one model interleave
                layer.choice = self.choice
            self.model(self.torch.from_numpy(inputs))

    def close(self) -> None:
        self.model = None


def make_runner(backend: str, threads: int | None, provider: str = "CPUExecutionProvider") -> Runner:
    """The runner for an artifact's backend ("ort", "torch", "trt")."""
    if backend == "ort":
        return OrtRunner(threads, provider)
    if backend == "torch":
        return TorchRunner(threads)
    if backend == "trt":
        from .trt_runner import TrtRunner
        return TrtRunner()
    raise EdgeresError(f"unknown bench backend {backend!r}: valid are ort, torch, trt")
