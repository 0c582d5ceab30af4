"""Facts about the measuring machine, recorded in every report so numbers compare honestly."""
import platform
from importlib import metadata

from edgeres.runtimes.base import usable_cpus

LIBRARIES = ("edgeres", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "torch", "tensorrt", "pycuda")


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (Linux x86 "model name", ARM "Hardware"/"Model"), else platform."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def library_versions() -> dict[str, str]:
    """Installed versions read from package metadata (nothing is imported, so torch stays unloaded)."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def machine_info(device: str, threads: int | None, provider: str, device_name: str | None = None) -> dict:
    """device (cpu|cuda|jetson), intra-op threads (None = backend default = all usable CPUs), provider, CPU, libraries."""
    versions = library_versions()
    return {"device": device, "device_name": device_name or cpu_model(), "cpu_model": cpu_model(),
            "cpus_usable": usable_cpus(), "threads": threads or usable_cpus(), "threads_requested": threads,
            "provider": provider, "platform": platform.platform(), "python": platform.python_version(),
            "onnxruntime": versions.get("onnxruntime") or versions.get("onnxruntime-gpu"), "libraries": versions}


def gemm_summary(n: int, stats: dict) -> dict:
    """The reference workload's identity and its achieved GFLOP/s at its p50 (2 n^3 FLOP per run)."""
    flop = 2 * n ** 3
    return {"workload": f"ONNX Runtime CPU float32 MatMul {n}x{n} @ {n}x{n}, same intra-op threads as the rows", "flop": flop,
            "gflops_per_s": round(flop / (stats["p50"] * 1e-3) / 1e9, 3)}
