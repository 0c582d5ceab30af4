"""Measure latency per resolution x target x batch (raw samples, then statistics) and gate regressions.

Python twin of `edgeres bench`:

    report = edgeres.bench.bench("build/rsnet", device="cpu", out="build/rsnet/bench")
    result = edgeres.bench.gate("benchmarks/baselines/cpu-tiny.json", report, statistic="consensus")

Torch-free at import: PyTorch (eager backend) and TensorRT (cuda/jetson) load only when used.
"""
import os
from pathlib import Path
from typing import Any, Sequence

from edgeres._io import relative_to, sha256_file, staged_dir
from edgeres.bench.gate import GateResult, check_comparable, compare
from edgeres.bench.machine import cpus_busy, gemm_summary, machine_info, warn_if_contended
from edgeres.bench.worker import cell_key, measure
from edgeres.errors import EdgeresError, EdgeresUsageError
from edgeres.manifests.artifacts import (
    EXPORT_TARGET,
    TORCH_TARGET,
    Artifact,
    read_artifacts,
    select,
    source_of,
    torch_rows,
)
from edgeres.runtimes.stats import (
    PERCENTILE_DEFINITION,
    achieved_gflops,
    add_ratios,
    summarize,
    throughput,
)

DEVICES = {"cpu": "ONNX Runtime CPU (default)", "cuda": "TensorRT engines, or ONNX Runtime's CUDA provider",
           "jetson": "cuda + nvpmodel/clock state + tegrastats power and energy per image"}
BACKENDS = ("ort", "torch", "trt")
MARKERS = ("bench.json",)
OWN_FILES = ("bench.json", "bench.csv")

__all__ = ["BACKENDS", "DEVICES", "EXPORT_TARGET", "TORCH_TARGET", "GateResult", "bench", "compare", "gate"]


def bench(manifest_dir: str | os.PathLike, *, device: str = "cpu", targets: Sequence[str] | None = None,
          resolutions: Sequence[int] | None = None, batch_sizes: Sequence[int] = (1,), threads: int | None = None,
          min_runs: int = 20, min_time_s: float = 1.0, warmup: int = 10, backends: Sequence[str] | None = None,
          out: str | os.PathLike | None = None, processes: int = 1, gemm_size: int = 256,
          power_s: float = 3.0, baseline: dict | None = None, paired: bool = True,
          reference_from: dict | None = None) -> dict[str, Any]:
    """Bench every artifact of a build dir (build.json) or export dir (export.json); returns the bench report.

    Each (target, resolution, batch) gets `warmup` untimed runs, then interleaved timed bursts until it has
    >= `min_runs` samples and >= `min_time_s` seconds of them, in each of `processes` worker processes.
    `backends` default: ("ort",) on cpu, ("trt",) on cuda/jetson when the build has engines. `threads` =
    intra-op threads (None: the backend's default). `paired`: time a reference CNN of about the row's MACs
    beside every run of the row (each row then carries `reference_ratios` and `reference_side`, what the
    gate's "paired" statistic compares; about twice the time). `reference_from`: a bench report (the
    baseline) whose rows' reference sides to reuse, so that the ratios compare. Writes bench.json +
    bench.csv under `out` if given (paths in them relative to `out`). `baseline` (a bench report the caller
    will gate against) is checked before anything is measured: it must share rows with this run, measured on
    the same graphs.
    """
    _check_numbers(batch_sizes, min_runs, min_time_s, warmup, processes)
    manifest, found = read_artifacts(manifest_dir)
    source = source_of(manifest)
    backends, provider = _device_backends(device, backends, found)
    artifacts = _choose(found, backends, targets, resolutions, manifest)
    if baseline is not None:
        check_comparable(baseline, [_planned(a, b) for a in artifacts for b in batch_sizes])
    plan = {"artifacts": [a.to_json() for a in artifacts], "batch_sizes": list(batch_sizes), "threads": threads,
            "provider": provider, "warmup": warmup, "min_runs": min_runs, "min_time_s": min_time_s,
            "gemm_size": gemm_size, "power": {"seconds": power_s} if device == "jetson" else None,
            "reference_sides": _reference_sides(artifacts, batch_sizes, reference_from) if paired else {},
            "trusted_archs": _trusted_factories(artifacts)}
    if out is None:
        return _measured(source, device, plan, artifacts, processes)
    from edgeres.manifests.bench import write_bench
    with staged_dir(out, MARKERS, "bench", keep=lambda name: name not in OWN_FILES) as tmp:  # refuses a bad --out now
        report = _measured(source, device, plan, artifacts, processes)
        write_bench(_relative_paths(report, Path(out)), tmp)
    return report


def _measured(source, device, plan, artifacts: list[Artifact], processes: int) -> dict[str, Any]:
    """Measure the plan; the report's machine also says how busy the CPUs were just before (None: unknown)."""
    busy = cpus_busy() if device == "cpu" else None
    warn_if_contended(busy, plan["threads"])
    report = _assemble(source, device, plan, measure(plan, processes), artifacts, processes)
    report["machine"]["cpus_busy_at_start"] = busy
    return report


def _trusted_factories(artifacts: list[Artifact]) -> list[str]:
    """The module:factory archs of the torch rows' checkpoints, which the worker processes may import: each
    must be trusted here (--trust-arch, or edgeres.arch.trusting_arch_code around bench()), else one line."""
    from edgeres.arch import arch_code_trusted
    from edgeres.manifests.checkpoint import read_checkpoint_info
    names = set()
    for checkpoint in sorted({a.checkpoint for a in artifacts if a.backend == "torch"}):  # one read per checkpoint
        spec = read_checkpoint_info(checkpoint).arch
        if not arch_code_trusted(spec):
            raise EdgeresError(f"{checkpoint} was built by your code ({spec.name}): benching it with "
                               "--backend torch imports that module; pass --trust-arch if you trust it")
        if spec.kind == "factory":
            names.add(spec.name)
    return sorted(names)


def _planned(artifact: Artifact, batch: int) -> dict[str, Any]:
    """What a row of this run will say about its graph, before it is measured (for the baseline check)."""
    return {**artifact.to_json(), "batch": batch, "graph_sha256": _graph_sha256(artifact)}


def _graph_sha256(artifact: Artifact) -> str | None:
    return sha256_file(artifact.file) if artifact.file else None


def _relative_paths(report: dict[str, Any], out: Path) -> dict[str, Any]:
    """The report as bench.json stores it: files relative to the bench directory, so it can move with them."""
    rows = [{**r, **{k: relative_to(r[k], out) for k in ("file", "checkpoint") if r.get(k)}} for r in report["rows"]]
    source = {**report["source"], "path": relative_to(report["source"]["path"], out)}
    return {**report, "rows": rows, "source": source}


def gate(baseline, current: str | os.PathLike | dict, *, statistic: str = "p50",
         max_regression: float = 10.0, normalize: bool = False, fail_on_missing: bool = False) -> GateResult:
    """Compare a bench report with a baseline (paths to bench.json or report dicts; `baseline` may be a list of
    several recordings of it, pooled); see `edgeres.bench.gate.compare`. The recipe benchmarks/gate_power.py
    measured: statistic="consensus" over 3 recordings at 10% (benchmarks/CI_GATE.md)."""
    from edgeres.manifests.bench import read_bench
    load = (lambda r: r if isinstance(r, dict) else read_bench(r))
    recordings = [load(b) for b in baseline] if isinstance(baseline, (list, tuple)) else load(baseline)
    return compare(recordings, load(current), statistic, max_regression, normalize, fail_on_missing)


def _reference_sides(artifacts: list[Artifact], batch_sizes, reference_from: dict | None) -> dict[str, int]:
    """Cell key -> side of its paired reference CNN: the baseline's for rows it has, else sized to the row's
    MACs x batch (runtimes.timing.reference_side)."""
    from edgeres.bench.gate import reference_sides_of
    from edgeres.runtimes.timing import reference_side
    known = reference_sides_of(reference_from) if reference_from else {}
    sides = {}
    for artifact in artifacts:
        for batch in batch_sizes:
            key = (artifact.target, artifact.resolution, batch, artifact.backend)
            macs = artifact.macs * batch if artifact.macs else None
            sides[cell_key(artifact.to_json(), batch)] = known.get(key) or reference_side(macs)
    return sides


def _check_numbers(batch_sizes, min_runs, min_time_s, warmup, processes) -> None:
    if not batch_sizes or min(batch_sizes) < 1:
        raise EdgeresUsageError(f"batch sizes must be >= 1 (got {list(batch_sizes or [])})")
    if min_runs < 1 or not min_time_s >= 0 or warmup < 0 or processes < 1:
        raise EdgeresUsageError("need min_runs >= 1, min_time_s >= 0, warmup >= 0 and processes >= 1")


def _device_backends(device: str, backends, found: list[Artifact]) -> tuple[tuple[str, ...], str]:
    """(backends, ORT provider) for the device; off-device a one-line error says what is missing."""
    if device not in DEVICES:
        raise EdgeresUsageError(f"unknown device {device!r}: valid are {', '.join(DEVICES)}")
    unknown = sorted(set(backends or ()) - set(BACKENDS))
    if unknown:
        raise EdgeresUsageError(f"unknown backend {', '.join(unknown)}: valid are {', '.join(BACKENDS)}")
    if device == "cpu":
        if "trt" in (backends or ()):
            raise EdgeresError("TensorRT engines run only on --device cuda or jetson")
        return tuple(backends or ("ort",)), "CPUExecutionProvider"
    return _gpu_backends(device, backends, found)


def _gpu_backends(device: str, backends, found: list[Artifact]) -> tuple[tuple[str, ...], str]:
    from edgeres.bench.power import missing_jetson_tools
    from edgeres.runtimes.trt import cuda_available
    if device == "jetson" and missing_jetson_tools():
        raise EdgeresError(f"--device jetson needs a Jetson: {missing_jetson_tools()}; use --device cpu here")
    if backends and set(backends) == {"torch"}:  # PyTorch eager on the GPU needs neither TensorRT nor ORT's CUDA
        _require_torch_cuda(device)
        return tuple(backends), "CUDAExecutionProvider"
    trt_missing, ort_cuda = cuda_available(), _ort_has_cuda()
    if "torch" in (backends or ()):
        _require_torch_cuda(device)
    if trt_missing and not ort_cuda:
        raise EdgeresError(f"--device {device} needs TensorRT on a CUDA device ({trt_missing}) or onnxruntime-gpu's "
                           "CUDAExecutionProvider (not available): run on the GPU host, or use --device cpu")
    has_engines = any(a.backend == "trt" for a in found)
    backends = tuple(backends or (("trt",) if has_engines and not trt_missing else ("ort",)))
    if "trt" in backends and trt_missing:
        raise EdgeresError(f"the TensorRT backend is unavailable here: {trt_missing}")
    if "ort" in backends and not ort_cuda:
        raise EdgeresError("ONNX Runtime has no CUDAExecutionProvider here: pip install onnxruntime-gpu, or bench "
                           "the TensorRT engines (--backend trt)")
    return backends, "CUDAExecutionProvider"


def _require_torch_cuda(device: str) -> None:
    from edgeres import _optional
    torch = _optional.torch("the PyTorch eager backend")
    if not torch.cuda.is_available():
        raise EdgeresError(f"--device {device} --backend torch needs PyTorch with a CUDA device (torch "
                           f"{torch.__version__} sees none): run on the GPU host, or use --device cpu")


def _ort_has_cuda() -> bool:
    import onnxruntime
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def _choose(found: list[Artifact], backends, targets, resolutions, manifest) -> list[Artifact]:
    pool = [a for a in found if a.backend in backends]
    if "torch" in backends:
        pool += torch_rows(found, manifest)
    chosen = select(pool, targets, resolutions)
    if not chosen:
        have = sorted({a.backend for a in found})
        raise EdgeresError(f"nothing to bench with backend(s) {', '.join(backends)}: the manifest has {', '.join(have)} "
                           "artifacts")
    return chosen


def _assemble(source, device, plan, raw, artifacts: list[Artifact], processes: int) -> dict[str, Any]:
    rows = []
    for artifact in artifacts:
        for batch in plan["batch_sizes"]:
            cell = raw["cells"].get(cell_key(artifact.to_json(), batch))
            if cell is not None:
                rows.append(_row(artifact, batch, cell, plan["provider"]))
                rows[-1]["reference_side"] = plan["reference_sides"].get(cell_key(artifact.to_json(), batch))
    if not rows:
        raise EdgeresError("no cell could be measured: " + "; ".join(f"{s['key']}: {s['reason']}" for s in raw["skipped"]))
    add_ratios(rows)
    reference = raw["reference"]
    reference["stats"] = summarize(reference["samples_ms"], reference["chunk_medians_ms"])
    reference.update(gemm_summary(plan["gemm_size"], reference["stats"]))
    settings = {k: plan[k] for k in ("batch_sizes", "threads", "warmup", "min_runs", "min_time_s")}
    settings.update(processes=processes, percentile=PERCENTILE_DEFINITION, interleaved=True, **_meanings())
    report = {"source": source, "device": device, "settings": settings, "reference": reference,
              "machine": _machine(device, plan, reference), "rows": rows, "skipped": raw["skipped"]}
    if raw.get("paired_references"):
        report["paired_reference"] = _paired_reference(raw["paired_references"])
    return report


def _paired_reference(cells: dict) -> dict[str, Any]:
    from edgeres.runtimes.tiny import tiny_macs
    return {"workload": "edgeres.runtimes.tiny CNN (depth 2) at `side` px in ONNX Runtime, same intra-op threads, "
                        "one run beside every run of the rows it serves (row `reference_side`)",
            "sides": {side: {"macs": tiny_macs(int(side), 2), "stats": summarize(c["samples_ms"], c["chunk_medians_ms"])}
                      for side, c in cells.items()}}


def _meanings() -> dict[str, str]:
    return {"memory": "prepare_rss_delta_mb = resident-set growth while loading and warming this cell; "
                      "peak_rss_mb = the measuring process's high-water mark after it (includes earlier cells)",
            "latency": "ms per batch; host wall clock (perf_counter) except TensorRT: CUDA events, device time"}


def _machine(device, plan, reference) -> dict[str, Any]:
    info = machine_info(device, plan["threads"], plan["provider"])
    info["gemm_gflops_per_s"] = reference["gflops_per_s"]
    if device == "jetson":
        from edgeres.bench.power import power_state
        info["power_state"] = power_state()
    return info


def _row(artifact: Artifact, batch: int, cell: dict, provider: str) -> dict[str, Any]:
    stats = summarize(cell["samples_ms"], cell["chunk_medians_ms"])
    row = artifact.to_json()
    row.update(batch=batch, graph_sha256=_graph_sha256(artifact), provider=provider if artifact.backend == "ort" else artifact.backend, stats=stats,
               img_per_s=throughput(stats["p50"], batch), gflops_per_s=achieved_gflops(artifact.macs, batch, stats["p50"]),
               memory=cell["memory"], power=cell["power"], samples_ms=cell["samples_ms"],
               chunk_medians_ms=cell["chunk_medians_ms"], process_medians_ms=cell["process_medians_ms"],
               reference_ratios=cell.get("reference_ratios", []))
    return row
