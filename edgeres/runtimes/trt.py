"""TensorRT engine runner: the only bench module that touches tensorrt/pycuda, imported lazily in prepare.

Timing is device time from CUDA events around `execute_async_v3` on one stream (inputs stay on the GPU,
so no host copies are in the number; trtexec calls this "GPU Compute Time"). Needs TensorRT >= 8.5 (the
name-based tensor API that JetPack 5/6 ship).
"""
import numpy as np

from edgeres import _optional
from edgeres.errors import EdgeresError
from edgeres.manifests.artifacts import Artifact
from edgeres.runtimes.base import random_input


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


class TrtRunner:
    provider = "tensorrt"

    def prepare(self, artifact: Artifact, batch: int) -> np.ndarray:
        trt = _optional.require("tensorrt", "the TensorRT bench backend")
        _optional.require("pycuda.autoinit", "the TensorRT bench backend")
        import pycuda.driver as cuda
        self.cuda = cuda
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        with open(artifact.file, "rb") as f:
            self.engine = runtime.deserialize_cuda_engine(f.read())
        if self.engine is None:
            raise EdgeresError(f"TensorRT cannot load {artifact.file}: engines only run on the TensorRT version "
                               "and GPU they were built with; rebuild it on this device with `edgeres build`")
        self.context = self.engine.create_execution_context()
        self.stream = cuda.Stream()
        self.start, self.end = cuda.Event(), cuda.Event()
        return self._bind(trt, batch)

    def _bind(self, trt, batch: int) -> np.ndarray:
        """Allocate device buffers for every I/O tensor; returns the host input (copied to the GPU once)."""
        self.buffers, host_input = [], None
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(self.engine.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                shape = (batch, *shape[1:]) if shape[0] == -1 else shape
                self.context.set_input_shape(name, shape)
                host_input = random_input(shape, dtype)
                buffer = self.cuda.to_device(host_input)
            else:
                shape = tuple(self.context.get_tensor_shape(name))
                buffer = self.cuda.mem_alloc(int(np.prod(shape)) * dtype.itemsize)
            self.buffers.append(buffer)
            self.context.set_tensor_address(name, int(buffer))
        return host_input

    def run(self, inputs: np.ndarray) -> float:
        """Device time of one inference in ms (CUDA events on the runner's stream)."""
        self.start.record(self.stream)
        self.context.execute_async_v3(self.stream.handle)
        self.end.record(self.stream)
        self.end.synchronize()
        return self.start.time_till(self.end)

    def close(self) -> None:
        for buffer in getattr(self, "buffers", []):
            buffer.free()
        self.buffers, self.context, self.engine = [], None, None
