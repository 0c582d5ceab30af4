"""The runner interface every backend implements, so every stage runs every backend the same way.

A runner is one loaded model at one resolution:
- `infer(x)` -> logits: N,C,H,W float32 in, N,classes float32 out, for any N (a static-batch graph is fed
  in chunks of its batch). Export verification, build accuracy, eval and the cascade use this.
- `example_input(batch)` -> a fixed random batch the runner accepts (raises SkipCell when it cannot run that
  batch), and `run(inputs)` -> one synchronised inference of it, returning device ms or None (host clock).
  The bench times these through `edgeres.runtimes.timing`.
- `close()` frees the session / engine / model.
"""
import os
from typing import Protocol

import numpy as np


class Runner(Protocol):
    provider: str
    static_batch: int | None  # the graph's fixed batch size, None when any batch runs

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Logits of the whole batch (N,C,H,W float32 -> N,classes float32)."""

    def example_input(self, batch: int) -> np.ndarray:
        """A fixed pseudo-random input of `batch` images that `run` accepts."""

    def run(self, inputs: np.ndarray) -> float | None:
        """One inference of the whole batch, finished (synchronised) on return; device ms or None."""

    def close(self) -> None:
        """Free the session / engine / model."""


def random_input(shape: tuple[int, ...], dtype=np.float32, seed: int = 0) -> np.ndarray:
    """Fixed pseudo-random normal input: timings must not depend on data, but zeros can hit fast paths."""
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def in_chunks(x: np.ndarray, static_batch: int | None, infer_one) -> np.ndarray:
    """Feed `x` to `infer_one` in chunks of the model's static batch (all at once when it has none)."""
    if static_batch is None or len(x) == static_batch:
        return infer_one(x)
    if len(x) % static_batch:
        raise SkipCell(f"{len(x)} images do not split into the model's static batch of {static_batch}")
    return np.concatenate([infer_one(x[i:i + static_batch]) for i in range(0, len(x), static_batch)])


def batch_shape(shape, batch: int, what: str) -> tuple[int, ...]:
    """The input shape at `batch`; a static batch dimension other than `batch` cannot run (SkipCell)."""
    from edgeres.errors import EdgeresError
    if len(shape) != 4 or not all(isinstance(d, int) and d > 0 for d in shape[1:]):
        raise EdgeresError(f"{what}: input shape {list(shape)} is not N,C,H,W with static C,H,W")
    if isinstance(shape[0], int) and shape[0] > 0 and shape[0] != batch:
        raise SkipCell(f"graph has a static batch of {shape[0]} (export with --dynamic-batch for batch {batch})")
    return (batch, *shape[1:])


class SkipCell(Exception):
    """This (artifact, batch) cannot be measured here, for the stated reason; the rest of the sweep goes on."""


def usable_cpu_ids() -> set[int]:
    """The CPUs this process may run on (its affinity mask, which a container or taskset narrows), else all."""
    try:
        return os.sched_getaffinity(0)
    except AttributeError:
        return set(range(os.cpu_count() or 1))


def usable_cpus() -> int:
    """How many CPUs this process may run on (usable_cpu_ids)."""
    return len(usable_cpu_ids())
