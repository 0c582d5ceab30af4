"""A stand-in for pycuda (`pycuda`, `pycuda.driver`, `pycuda.autoinit`) whose "device memory" is host memory.

Only what edgeres.runtimes.trt uses, with the signatures of pycuda's src/wrapper/wrap_cudadrv.cpp: init(),
Device(i).name(), Device.count(), mem_alloc(n) -> allocation (int() = address, .free()), memcpy_htod(dest, src),
memcpy_dtoh_async(dest, src, stream), Stream().handle / .synchronize(), Event().record(stream) / .synchronize() /
.time_till(end) in ms, and the Error exception. Each stream has a clock in ms that kernels launched on it
(tests.fake_tensorrt's execute_async_v3) advance, and events read: device time without a device.
"""
import itertools
import sys
import types

import numpy as np


class Device:
    """The fake GPU: its memory (address -> bytearray), streams by handle, name and count."""

    def __init__(self, name: str = "NVIDIA Fake GPU", count: int = 1, driver_error: str | None = None):
        self.name, self.count, self.driver_error = name, count, driver_error
        self.memory: dict[int, bytearray] = {}
        self.streams: dict[int, "object"] = {}
        self.addresses = itertools.count(0x10000, 0x10000)  # never 0: a null address is an unset tensor

    def read(self, address: int, shape, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        need = int(np.prod(shape)) * dtype.itemsize
        buffer = self.memory[address]
        assert len(buffer) >= need, f"read of {need} bytes from a {len(buffer)}-byte allocation"
        return np.frombuffer(bytes(buffer[:need]), dtype=dtype).reshape(shape)

    def write(self, address: int, array: np.ndarray) -> None:
        data = np.ascontiguousarray(array).tobytes()
        buffer = self.memory[address]
        assert len(buffer) >= len(data), f"write of {len(data)} bytes into a {len(buffer)}-byte allocation"
        buffer[:len(data)] = data

    def advance(self, stream_handle: int, ms: float) -> None:
        self.streams[stream_handle].clock_ms += ms


def driver_module(device: Device) -> types.ModuleType:
    """A `pycuda.driver` bound to `device`."""
    cuda = types.ModuleType("pycuda.driver")

    class Error(Exception):
        pass

    def init(flags: int = 0) -> None:
        if device.driver_error:
            raise Error(device.driver_error)

    class CudaDevice:
        def __init__(self, ordinal: int):
            if not 0 <= ordinal < device.count:
                raise Error(f"cuDeviceGet failed: invalid device ordinal {ordinal}")

        def name(self) -> str:
            return device.name

        @staticmethod
        def count() -> int:
            return device.count

    class DeviceAllocation:
        def __init__(self, nbytes: int):
            self.address = next(device.addresses)
            device.memory[self.address] = bytearray(max(int(nbytes), 1))

        def __int__(self) -> int:
            return self.address

        def free(self) -> None:
            device.memory.pop(self.address)

    class Stream:
        def __init__(self, flags: int = 0):
            self.clock_ms = 0.0
            self.handle = next(device.addresses)
            device.streams[self.handle] = self

        def synchronize(self) -> None:
            pass

    class Event:
        def __init__(self, flags: int = 0):
            self.at_ms = None

        def record(self, stream=None):
            self.at_ms = stream.clock_ms if stream is not None else 0.0
            return self

        def synchronize(self):
            return self

        def time_till(self, end) -> float:
            if self.at_ms is None or end.at_ms is None:
                raise Error("cuEventElapsedTime failed: an event was not recorded")
            return end.at_ms - self.at_ms

    def memcpy_htod(dest, src) -> None:
        device.write(int(dest), np.asarray(src))

    def memcpy_dtoh_async(dest: np.ndarray, src, stream=None) -> None:
        dest[...] = device.read(int(src), dest.shape, dest.dtype)

    cuda.Error, cuda.init, cuda.Device, cuda.Stream, cuda.Event = Error, init, CudaDevice, Stream, Event
    cuda.mem_alloc, cuda.DeviceAllocation = DeviceAllocation, DeviceAllocation
    cuda.memcpy_htod, cuda.memcpy_dtoh_async = memcpy_htod, memcpy_dtoh_async
    cuda.memcpy_dtoh = memcpy_dtoh_async
    cuda.fake_device = device
    return cuda


def install(monkeypatch, device: Device | None = None) -> Device:
    """Put pycuda, pycuda.driver and pycuda.autoinit for `device` into sys.modules (undone by monkeypatch)."""
    device = device or Device()
    driver = driver_module(device)
    package = types.ModuleType("pycuda")
    package.__path__ = []  # a package, so `import pycuda.driver` resolves through sys.modules
    autoinit = types.ModuleType("pycuda.autoinit")
    autoinit.device = driver.Device(0) if device.count else None
    package.driver, package.autoinit = driver, autoinit
    for name, module in (("pycuda", package), ("pycuda.driver", driver), ("pycuda.autoinit", autoinit)):
        monkeypatch.setitem(sys.modules, name, module)
    return device

