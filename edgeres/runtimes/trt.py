"""TensorRT engines: the only module that deserialises an engine or touches pycuda (imported lazily).

Timing (`run`) is device time from CUDA events around `execute_async_v3` on one stream (inputs stay on the
GPU, so no host copies are in the number; trtexec calls this "GPU Compute Time"). `infer` copies the batch
in and the logits out. Needs TensorRT >= 8.5 (the name-based tensor API that JetPack 5/6 ship).

`set_input_shape`, `set_tensor_address` and `execute_async_v3` return False on failure (pyCore.cpp, 8.5 to
11.1) instead of raising: each is checked, so a launch that did not run fails in one line instead of being
timed as a near-zero sample.
"""
import os
from pathlib import Path

import numpy as np

from edgeres import _optional
from edgeres.errors import EdgeresError
from edgeres.runtimes.base import SkipCell, batch_shape, in_chunks, random_input

DEVICE_TREE_MODEL = Path("/proc/device-tree/model")  # Jetson: "NVIDIA Jetson Orin Nano Developer Kit"
NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")  # x86 driver: <bus id>/information has "Model: NVIDIA ..."


def cuda_available() -> str | None:
    """None when TensorRT + pycuda + a CUDA device are usable, else what is missing (one phrase)."""
    for module in ("tensorrt", "pycuda.driver"):
        if not _optional.available(module):
            return f"{module.split('.')[0]} is not importable"
    import pycuda.driver as cuda
    try:
        cuda.init()
        if cuda.Device.count() == 0:
            return "no CUDA device is visible"
    except cuda.Error as exc:  # no driver / no device
        return f"CUDA cannot start ({exc})"
    return None


def require_device(purpose: str) -> None:
    """One line saying what is missing when TensorRT engines cannot run here."""
    missing = cuda_available()
    if missing:
        raise EdgeresError(f"{purpose} needs TensorRT and a CUDA device, but {missing}: run it on the Jetson or "
                           "GPU host the engines were built with")


def device_name() -> str:
    """The GPU this machine builds for, without needing pycuda: the Jetson's device-tree model, else the NVIDIA
    driver's model of GPU 0, else CUDA device 0 through pycuda; "gpu" when none can be read."""
    if DEVICE_TREE_MODEL.exists():
        return DEVICE_TREE_MODEL.read_bytes().rstrip(b"\0").decode(errors="replace").strip()
    for info in sorted(NVIDIA_GPUS.glob("*/information")) if NVIDIA_GPUS.is_dir() else []:
        for line in info.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model" and value.strip():
                return value.strip()
    if cuda_available() is None:
        import pycuda.driver as cuda
        return cuda.Device(0).name()
    return "gpu"


def checked(ok: bool, call: str, where: str) -> None:
    """TensorRT reports these failures by returning False: turn that into one line."""
    if not ok:
        raise EdgeresError(f"TensorRT {call} failed for {where} (it returned False): run with -v for TensorRT's log, "
                           "and rebuild the engine on this device if it came from elsewhere")


class TrtRunner:
    """One serialized engine (see runtimes.base.Runner)."""

    provider = "tensorrt"

    def __init__(self, path: str | os.PathLike):
        require_device("running a TensorRT engine")
        self.trt = _optional.require("tensorrt", "the TensorRT backend")
        _optional.require("pycuda.autoinit", "the TensorRT backend")
        import pycuda.driver as cuda
        self.cuda, self.path = cuda, str(path)
        runtime = self.trt.Runtime(self.trt.Logger(self.trt.Logger.WARNING))
        with open(path, "rb") as f:
            self.engine = runtime.deserialize_cuda_engine(f.read())
        if self.engine is None:
            raise EdgeresError(f"TensorRT cannot load {path}: engines only run on the TensorRT version "
                               "and GPU they were built with; rebuild it on this device with `edgeres build`")
        self.context = self.engine.create_execution_context()
        self.stream = cuda.Stream()
        self.start, self.end = cuda.Event(), cuda.Event()
        self.names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_name = next(n for n in self.names if self._is_input(n))
        self.output_name = next(n for n in self.names if not self._is_input(n))
        first = tuple(self.engine.get_tensor_shape(self.input_name))[0]
        self.static_batch = None if first == -1 else int(first)
        self.buffers, self.bound_batch = {}, None

    def _is_input(self, name: str) -> bool:
        return self.engine.get_tensor_mode(name) == self.trt.TensorIOMode.INPUT

    def _dtype(self, name: str) -> np.dtype:
        return np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(name)))

    def profile_batches(self) -> tuple[int, int] | None:
        """(min, max) batch of the engine's optimization profile 0; None for a static-batch engine."""
        if self.static_batch is not None:
            return None
        low, _, high = self.engine.get_tensor_profile_shape(self.input_name, 0)
        return int(low[0]), int(high[0])

    def _bind(self, batch: int) -> None:
        """Device buffers for every I/O tensor at `batch` (re-made only when the batch changes)."""
        if self.bound_batch == batch:
            return
        shape = batch_shape(tuple(self.engine.get_tensor_shape(self.input_name)), batch, self.path)
        bounds = self.profile_batches()
        if bounds and not bounds[0] <= batch <= bounds[1]:
            raise SkipCell(f"batch {batch} is outside the engine's optimization profile (batch {bounds[0]}.."
                           f"{bounds[1]}): rebuild with options={{'profile_batches': [...]}} covering it")
        self._free()
        checked(self.context.set_input_shape(self.input_name, shape), "set_input_shape", f"{self.path} at {shape}")
        for name in self.names:
            dims = shape if self._is_input(name) else tuple(self.context.get_tensor_shape(name))
            self.buffers[name] = (self.cuda.mem_alloc(int(np.prod(dims)) * self._dtype(name).itemsize), dims)
            checked(self.context.set_tensor_address(name, int(self.buffers[name][0])), "set_tensor_address",
                    f"{self.path} tensor {name!r}")
        self.bound_batch = batch

    def example_input(self, batch: int) -> np.ndarray:
        self._bind(batch)
        host = random_input(self.buffers[self.input_name][1], self._dtype(self.input_name))
        self.cuda.memcpy_htod(self.buffers[self.input_name][0], host)  # copied once: timing excludes it
        return host

    def _launch(self) -> None:
        checked(self.context.execute_async_v3(self.stream.handle), "execute_async_v3",
                f"{self.path} at batch {self.bound_batch}")

    def run(self, inputs: np.ndarray) -> float:
        """Device time of one inference in ms (CUDA events on the runner's stream)."""
        self.start.record(self.stream)
        self._launch()
        self.end.record(self.stream)
        self.end.synchronize()
        return self.start.time_till(self.end)

    def infer(self, x: np.ndarray) -> np.ndarray:
        return in_chunks(np.asarray(x), self.static_batch, self._infer_one)

    def _infer_one(self, x: np.ndarray) -> np.ndarray:
        self._bind(len(x))
        self.cuda.memcpy_htod(self.buffers[self.input_name][0],
                              np.ascontiguousarray(x, dtype=self._dtype(self.input_name)))
        self._launch()
        out_buffer, dims = self.buffers[self.output_name]
        out = np.empty(dims, dtype=self._dtype(self.output_name))
        self.cuda.memcpy_dtoh_async(out, out_buffer, self.stream)
        self.stream.synchronize()
        return out.astype(np.float32)

    def _free(self) -> None:
        for buffer, _ in self.buffers.values():
            buffer.free()
        self.buffers, self.bound_batch = {}, None

    def close(self) -> None:
        self._free()
        self.context, self.engine = None, None
