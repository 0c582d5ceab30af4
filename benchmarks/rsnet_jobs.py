"""Shared by the rsnet_* benchmarks: train TrainConfig jobs in single-thread worker processes, read their logs.

On a shared 2-core machine two single-thread jobs side by side beat one two-thread job by far. A job whose
checkpoint already exists is skipped, so an interrupted benchmark restarts where it stopped.
"""
import json
import platform
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def job(kwargs: dict) -> tuple[str, float]:
    """Train one model in this worker process (one thread); returns (checkpoint dir, seconds)."""
    import torch
    torch.set_num_threads(1)
    from edgeres.train import TrainConfig, train
    if (Path(kwargs["out"]) / "checkpoint.json").is_file() or (Path(kwargs["out"]) / "summary.json").is_file():
        return kwargs["out"], 0.0
    Path(kwargs["out"]).parent.mkdir(parents=True, exist_ok=True)
    from edgeres.train.loop import state_dir
    resume = (state_dir(kwargs["out"]) / "resume.pt").is_file()  # an interrupted benchmark continues exactly
    start = time.perf_counter()
    try:
        out = train(TrainConfig(**kwargs, resume=resume))
    except Exception as exc:  # noqa: BLE001 - a diverged arm is a result, not a crash of the benchmark
        Path(kwargs["out"] + ".failed").write_text(f"{type(exc).__name__}: {exc}\n")
        return kwargs["out"], -1.0
    return str(out), round(time.perf_counter() - start, 1)


def run_jobs(jobs: list[dict], workers: int) -> dict[str, float]:
    """Run every job, `workers` at a time; {checkpoint dir: seconds (0: reused, -1: failed)}."""
    with ProcessPoolExecutor(workers) as pool:
        return dict(pool.map(job, jobs))


def train_log(checkpoint: str | Path) -> list[dict]:
    """The per-epoch records (loss terms, monitor top-1 per resolution, α) of a finished run."""
    return [json.loads(line) for line in (Path(checkpoint) / "train_log.jsonl").read_text().splitlines()]


def cpu_info() -> dict:
    """The lscpu model name and the SIMD flags that decide CPU kernel speed, recorded with every result."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {"model": platform.processor(), "isa": []}
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    flags = fields.get("Flags", "").split()
    isa = [f for f in flags if f.startswith(("avx", "amx")) or f in ("fma", "f16c")]
    return {"model": fields.get("Model name", "").strip(), "cpus": fields.get("CPU(s)", "").strip(), "isa": isa}
