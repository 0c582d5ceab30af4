"""TensorRT engines: the only module that deserialises an engine or touches pycuda (imported lazily).

Timing (`run`) is device time from CUDA events around `execute_async_v3` on one stream (inputs stay on the
GPU, so no host copies are in the number; trtexec calls this "GPU Compute Time"). `infer` copies the batch
in and the logits out. Needs TensorRT >= 8.5 (the name-based tensor API that JetPack 5/6 ship).
"""
import os

import numpy as np

from edgeres import _optional
from edgeres.errors import EdgeresError
from edgeres.runtimes.base import batch_shape, in_chunks, random_input


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
                           "GPU host the engines were built on")


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

    def _bind(self, batch: int) -> None:
        """Device buffers for every I/O tensor at `batch` (re-made only when the batch changes)."""
        if self.bound_batch == batch:
            return
        self._free()
        shape = batch_shape(tuple(self.engine.get_tensor_shape(self.input_name)), batch, self.path)
        self.context.set_input_shape(self.input_name, shape)
        for name in self.names:
            dims = shape if self._is_input(name) else tuple(self.context.get_tensor_shape(name))
            self.buffers[name] = (self.cuda.mem_alloc(int(np.prod(dims)) * self._dtype(name).itemsize), dims)
            self.context.set_tensor_address(name, int(self.buffers[name][0]))
        self.bound_batch = batch

    def example_input(self, batch: int) -> np.ndarray:
        self._bind(batch)
        host = random_input(self.buffers[self.input_name][1], self._dtype(self.input_name))
        self.cuda.memcpy_htod(self.buffers[self.input_name][0], host)  # copied once: timing excludes it
        return host

    def run(self, inputs: np.ndarray) -> float:
        """Device time of one inference in ms (CUDA events on the runner's stream)."""
        self.start.record(self.stream)
        self.context.execute_async_v3(self.stream.handle)
        self.end.record(self.stream)
        self.end.synchronize()
        return self.start.time_till(self.end)

    def infer(self, x: np.ndarray) -> np.ndarray:
        return in_chunks(np.asarray(x), self.static_batch, self._infer_one)

    def _infer_one(self, x: np.ndarray) -> np.ndarray:
        self._bind(len(x))
        self.cuda.memcpy_htod(self.buffers[self.input_name][0],
                              np.ascontiguousarray(x, dtype=self._dtype(self.input_name)))
        self.context.execute_async_v3(self.stream.handle)
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
