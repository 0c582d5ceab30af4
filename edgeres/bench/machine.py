"""Facts about the measuring machine, recorded in every report so numbers compare honestly."""
import logging
import platform
import time
from importlib import metadata

from edgeres.runtimes.base import usable_cpu_ids, usable_cpus

log = logging.getLogger("edgeres.bench")
PROC_STAT = "/proc/stat"
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


def _cpu_jiffies(stat_path: str) -> dict[int, tuple[int, int]] | None:
    """{CPU: (busy, total) jiffies} from /proc/stat's per-CPU lines; None where there is no /proc/stat."""
    try:
        with open(stat_path) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    jiffies = {}
    for line in lines:
        name, *values = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            fields = [int(x) for x in values[:8]]  # user nice system idle iowait irq softirq steal
            jiffies[int(name[3:])] = (sum(fields) - fields[3] - fields[4], sum(fields))
    return jiffies


def cpus_busy(seconds: float = 0.25, stat_path: str = PROC_STAT, cpus: set[int] | None = None) -> float | None:
    """How many of `cpus` (default: this process's affinity mask) other processes kept busy over `seconds`
    (this one sleeps meanwhile). CPUs outside the mask are not counted: work there does not compete.

    Sampled, not the load average: the load average trails by a minute, so a job started just before the
    benchmark reads as an idle machine (benchmarks/CI_GATE.md, run I)."""
    before = _cpu_jiffies(stat_path)
    time.sleep(seconds)
    after = _cpu_jiffies(stat_path)
    if not before or not after:
        return None
    cpus = set(after) & set(before) & (cpus if cpus is not None else usable_cpu_ids())
    deltas = [(after[c][0] - before[c][0], after[c][1] - before[c][1]) for c in cpus]
    if not deltas or any(total <= 0 for _, total in deltas):
        return None
    return round(sum(busy / total for busy, total in deltas), 2)


def warn_if_contended(busy: float | None, threads: int | None) -> None:
    """A one-line warning when other work leaves fewer free CPUs than the benchmark's threads: the numbers
    would then measure the scheduler, not the model (pinning to one thread, or a quiet machine, helps)."""
    usable = usable_cpus()
    wanted = threads or usable
    if busy is not None and usable - busy < wanted - 0.5:  # half a CPU of slack for the sample's own noise
        log.warning("other processes kept %.1f of %d usable CPUs busy just before measuring, and %d "
                    "threads were asked for: latencies will include waiting for a CPU (use --threads 1, or a "
                    "quiet machine)", busy, usable, wanted)
