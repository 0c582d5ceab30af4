"""One small runner interface per backend: prepare(artifact, batch) -> run(inputs) -> close().

`run` returns None when the host clock is the right one (CPU backends; the caller times it with
perf_counter), or the device time in ms when the backend has a better clock (TensorRT: CUDA events).
Heavy imports (torch, tensorrt) happen inside prepare, so importing this module is cheap and torch-free.
"""
from typing import Protocol

import numpy as np

from edgeres.manifests.artifacts import Artifact


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


class SkipCell(Exception):
    """This (artifact, batch) cannot be measured here, for the stated reason; the rest of the sweep goes on."""
