"""Run one measurement plan (JSON in, JSON out), in this process or in fresh worker processes.

Several sequential worker processes per cell (`processes`) sample process-level luck (memory layout,
thread placement, a neighbour's burst) that repeats inside one process; their per-process medians are kept.
Run as `python -m edgeres.bench.worker < plan.json` by `measure`.
"""
import contextlib
import json
import subprocess
import sys
from typing import Any

from edgeres.errors import EdgeresError
from edgeres.manifests.artifacts import Artifact
from edgeres.runtimes import open_runner
from edgeres.runtimes.base import SkipCell
from edgeres.runtimes.stats import percentile
from edgeres.runtimes.timing import (
    GEMM_SIZE,
    Cell,
    conv_reference_cell,
    gemm_cell,
    interleave,
    interleave_paired,
    peak_rss_mb,
    rss_mb,
    warm_up,
)
from edgeres.runtimes.torch_eager import TorchRunner


def cell_key(artifact: dict, batch: int) -> str:
    return f"{artifact['target']}@{artifact['resolution']}/b{batch}/{artifact['backend']}"


def run_plan(plan: dict[str, Any]) -> dict[str, Any]:
    """Prepare every (artifact, batch) cell, warm up, interleave timed bursts (plus the reference GEMM)."""
    from edgeres.arch import trusting_arch_code
    trusted = plan.get("trusted_archs") or []  # checked by the parent (bench._trusted_factories)
    with trusting_arch_code(*trusted) if trusted else contextlib.nullcontext():
        cells, runners, memory, skipped = _prepare(plan)
    reference = gemm_cell(plan.get("gemm_size", GEMM_SIZE), plan.get("threads"))
    sides = plan.get("reference_sides") or {}
    used = sorted({sides[c.key] for c in cells if c.key in sides})  # not those of skipped cells
    paired = {side: conv_reference_cell(side, plan.get("threads")) for side in used}
    warm_up([reference, *paired.values()], 3)
    if not paired:
        interleave(cells + [reference], plan["min_runs"], plan["min_time_s"])
    else:  # each row's reference runs beside its every run (timing.paired_burst); the GEMM stays for GFLOP/s
        interleave_paired(cells, {c.key: paired[sides[c.key]] for c in cells}, plan["min_runs"], plan["min_time_s"],
                          unpaired=(reference,))
    power = _power(plan, cells)
    for runner in runners:
        runner.close()
    TorchRunner._models.clear()  # one checkpoint load per plan, not a cache across plans
    return {"cells": {c.key: _result(c, memory.get(c.key), power.get(c.key)) for c in cells},
            "reference": _result(reference, None, None), "skipped": skipped,
            "paired_references": {str(side): _result(cell, None, None) for side, cell in paired.items()}}


def _prepare(plan: dict[str, Any]) -> tuple[list[Cell], list, dict, list]:
    """(cells, runners, memory per key, skipped cells with reasons); each cell is warmed right after loading."""
    cells, runners, memory, skipped = [], [], {}, []
    for item in plan["artifacts"]:
        for batch in plan["batch_sizes"]:
            key = cell_key(item, batch)
            before = rss_mb()
            runner = open_runner(Artifact(**item), plan.get("threads"), plan.get("provider", "CPUExecutionProvider"))
            try:
                inputs = runner.example_input(batch)
            except SkipCell as why:
                runner.close()
                skipped.append({"key": key, "reason": str(why)})
                continue
            cells.append(Cell(key, _bound(runner, inputs)))
            runners.append(runner)
            warm_up(cells[-1:], plan["warmup"])
            memory[key] = _memory(before)
    return cells, runners, memory, skipped


def _bound(runner, inputs):
    return lambda: runner.run(inputs)


def _memory(before: float | None) -> dict[str, float | None]:
    after = rss_mb()
    return {"prepare_rss_delta_mb": None if before is None or after is None else round(after - before, 2),
            "peak_rss_mb": round(peak_rss_mb(), 2)}


def _power(plan: dict, cells: list[Cell]) -> dict:
    if not plan.get("power"):
        return {}
    from edgeres.bench.power import measure_power
    return measure_power(cells, **plan["power"], batch_of=lambda key: int(key.rsplit("/b", 1)[1].split("/")[0]))


def _result(cell: Cell, memory, power) -> dict[str, Any]:
    return {"samples_ms": [round(s, 6) for s in cell.samples_ms],
            "chunk_medians_ms": [round(s, 6) for s in cell.chunk_medians_ms],
            "reference_ratios": [round(s, 6) for s in cell.reference_ratios],
            "process_medians_ms": [round(percentile(cell.samples_ms, 50), 6)], "memory": memory, "power": power}


def measure(plan: dict[str, Any], processes: int = 1) -> dict[str, Any]:
    """run_plan here (processes=1) or in `processes` fresh sequential worker processes, merged."""
    if processes <= 1:
        return run_plan(plan)
    results = [_in_subprocess(plan) for _ in range(processes)]
    merged = results[0]
    for other in results[1:]:
        pairs = [(merged["cells"][key], cell) for key, cell in other["cells"].items()]
        pairs += [(merged["reference"], other["reference"])]
        pairs += [(merged["paired_references"][side], cell) for side, cell in other.get("paired_references", {}).items()]
        for into, cell in pairs:
            for field in ("samples_ms", "chunk_medians_ms", "reference_ratios", "process_medians_ms"):
                into[field] = into[field] + cell[field]
            if cell["memory"]:
                into["memory"]["peak_rss_mb"] = max(into["memory"]["peak_rss_mb"], cell["memory"]["peak_rss_mb"])
    return merged


def _in_subprocess(plan: dict[str, Any]) -> dict[str, Any]:
    run = subprocess.run([sys.executable, "-m", "edgeres.bench.worker"], input=json.dumps(plan),
                         capture_output=True, text=True)
    if run.returncode != 0:
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        raise EdgeresError(f"a bench worker process failed: {last}")
    return json.loads(run.stdout)


def main() -> None:
    try:
        result = run_plan(json.loads(sys.stdin.read()))
    except EdgeresError as exc:
        sys.stderr.write(f"{exc}\n")
        sys.exit(1)
    sys.stdout.write(json.dumps(result))


if __name__ == "__main__":
    main()
