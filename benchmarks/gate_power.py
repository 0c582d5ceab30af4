"""How often the CPU latency gate cries wolf, and how often it catches a real slowdown (issue 15, part 4).

Not a test: a measurement. Benches the tiny build (`edgeres.runtimes.tiny`, depth 2) `--recordings` times as
baselines, then `--reruns` times each an unchanged build and a build made slower by work of known cost
(tiny `extra=5`: five identity 1x1 convs, +25.4% MACs, logits unchanged), alternating, each with the recipe's bench settings
(`--threads --processes --min-time`, paired reference on). Every candidate gate (statistic x normaliser x
baseline recordings x threshold) is then evaluated on the same reports:

    false alarms = unchanged reruns that FAIL;   catches = slower reruns that FAIL   (any row regressed)

A single-recording candidate is evaluated against each recording in turn (recordings x reruns verdicts),
because one unlucky recording is what made the old recipe fail every later run.

    nice -n 5 .venv/bin/python benchmarks/gate_power.py                 # ~12 min on 2 shared cores
    nice -n 5 .venv/bin/python benchmarks/gate_power.py --reruns 5      # a quick look

Writes benchmarks/results/gate_power.{json,md} (per-report statistics kept, raw samples dropped).
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # this checkout's edgeres, not an installed one
from _machine import add_result_options, cpu_text, machine_record, write_result  # noqa: E402

EXTRA = 5  # identity 1x1 convs of the slower build: +25.4% MACs at depth 2, measured +25% (5% each)
THRESHOLDS = (8.0, 10.0, 12.0, 15.0, 20.0)
# (name, statistic, normalize, recordings used as one baseline)
CANDIDATES = (("raw p50, 1 recording", "p50", False, 1), ("raw p50, 3 recordings", "p50", False, 3),
              ("raw median_of_medians, 3 recordings", "median_of_medians", False, 3),
              ("GEMM-normalised p50, 1 recording (issue 15's recipe)", "p50", True, 1),
              ("GEMM-normalised p50, 3 recordings", "p50", True, 3),
              ("paired reference CNN, 1 recording", "paired", False, 1),
              ("paired reference CNN, 3 recordings", "paired", False, 3),
              ("consensus of GEMM-normalised p50 and paired, 1 recording", "consensus", False, 1),
              ("consensus of GEMM-normalised p50 and paired, 3 recordings", "consensus", False, 3))


def builds(work: Path) -> dict[str, Path]:
    from edgeres.runtimes.tiny import tiny_export
    return {"unchanged": tiny_export(work / "unchanged"), "slower": tiny_export(work / "slower", extra=EXTRA)}


def bench_once(directory: Path, args, baseline: dict | None) -> dict:
    """One CI run of the recipe: a bench report reduced to what the gate reads (raw samples dropped).
    `baseline`: whose reference CNNs to bench beside (as `edgeres bench --baseline` does); None for the first."""
    from edgeres.bench import bench
    start = time.perf_counter()
    report = bench(directory, threads=args.threads, processes=args.processes, min_time_s=args.min_time,
                   reference_from=baseline)
    keep = ("target", "resolution", "batch", "backend", "stats", "reference_ratios", "reference_side", "macs")
    return {"rows": [{k: row.get(k) for k in keep} for row in report["rows"]],
            "reference": {"stats": report["reference"]["stats"]},
            "paired_reference": report["paired_reference"],
            "machine": {k: report["machine"].get(k) for k in ("cpu_model", "threads", "onnxruntime",
                                                               "cpus_busy_at_start")},
            "seconds": round(time.perf_counter() - start, 1), "load_average_1": round(__import__("os").getloadavg()[0], 2)}


def record(args, dirs: dict[str, Path]) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {"baseline": [], "unchanged": [], "slower": []}
    for i in range(args.recordings):
        runs["baseline"].append(bench_once(dirs["unchanged"], args, (runs["baseline"] or [None])[0]))
        print(f"baseline {i + 1}/{args.recordings}: {runs['baseline'][-1]['seconds']} s", file=sys.stderr)
    for i in range(args.reruns):
        for kind in (("unchanged", "slower") if i % 2 == 0 else ("slower", "unchanged")):
            runs[kind].append(bench_once(dirs[kind], args, runs["baseline"][0]))
        print(f"rerun {i + 1}/{args.reruns}", file=sys.stderr)
    return runs


def baselines_for(recordings: list[dict], count: int) -> list[list[dict]]:
    """The baselines a candidate is judged with: each recording alone (count 1), or all of them together."""
    return [[r] for r in recordings] if count == 1 else [recordings[:count]]


def verdicts(runs: dict, statistic: str, normalize: bool, count: int, threshold: float) -> dict[str, int]:
    from edgeres.bench.gate import compare
    out = {"false_alarms": 0, "unchanged_verdicts": 0, "catches": 0, "slower_verdicts": 0}
    for baseline in baselines_for(runs["baseline"], count):
        for kind, hit in (("unchanged", "false_alarms"), ("slower", "catches")):
            for report in runs[kind]:
                failed = not compare(baseline, report, statistic, threshold, normalize).passed
                out[hit] += failed
                out[f"{kind}_verdicts"] += 1
    return out


def evaluate(runs: dict) -> list[dict]:
    rows = []
    for name, statistic, normalize, count in CANDIDATES:
        if count > len(runs["baseline"]):
            continue
        for threshold in THRESHOLDS:
            rows.append({"candidate": name, "statistic": statistic, "normalize": normalize, "recordings": count,
                         "max_regression_pct": threshold, **verdicts(runs, statistic, normalize, count, threshold)})
    return rows


def changes(runs: dict, statistic: str, normalize: bool) -> dict[str, list[float]]:
    """Worst-row change (%) of every rerun against all recordings: the spread the threshold has to clear."""
    from edgeres.bench.gate import compare
    return {kind: [round(max(r.change_pct for r in compare(runs["baseline"], report, statistic, 1e9, normalize).rows),
                         2) for report in runs[kind]] for kind in ("unchanged", "slower")}


def true_slowdown(runs: dict) -> dict[str, float]:
    """Slower / unchanged per resolution, from the medians over all reruns of raw p50 and of the paired ratio."""
    from edgeres.bench.gate import row_values
    out = {}
    for statistic in ("p50", "paired"):
        med = {kind: {} for kind in ("unchanged", "slower")}
        for kind in med:
            for report in runs[kind]:
                for key, value in row_values(report, statistic).items():
                    med[kind].setdefault(key, []).append(value)
        for key in med["unchanged"]:
            out[f"{statistic} {key[0]}@{key[1]}"] = round(statistics.median(med["slower"][key])
                                                          / statistics.median(med["unchanged"][key]), 4)
    return out


def markdown(result: dict) -> str:
    m, s = result["machine"], result["settings"]
    lines = ["# Latency gate: false alarms and catches", "",
             cpu_text(m) + f"; load average at end {m['load_average_end']}. {m['shared']}.", "",
             f"Command: `{result['command']}`; each run = `edgeres bench` of the tiny build with --threads "
             f"{s['threads']} --processes {s['processes']} --min-time {s['min_time']} (paired reference on), "
             f"{s['recordings']} baseline recordings, {s['reruns']} unchanged + {s['reruns']} slower reruns, "
             f"alternating. Mean seconds per run: {result['seconds_per_run']}.", "",
             *([f"Candidates evaluated again on the same runs: `{result['evaluated_again']}`.", ""]
               if result.get("evaluated_again") else []),
             f"Slower build: tiny extra={EXTRA} (+{100 * (result['macs_ratio'] - 1):.1f}% MACs); measured "
             f"slower/unchanged: {result['true_slowdown']}.", "",
             "| candidate | max regression % | false alarms | catches |", "|---|---|---|---|"]
    for r in result["candidates"]:
        lines.append(f"| {r['candidate']} | {r['max_regression_pct']:g} | {r['false_alarms']}/{r['unchanged_verdicts']} "
                     f"| {r['catches']}/{r['slower_verdicts']} |")
    lines += ["", "Worst-row change % per rerun against all recordings (unchanged | slower):"]
    for name, spread in result["spread"].items():
        lines.append(f"- {name}: unchanged {min(spread['unchanged'])}..{max(spread['unchanged'])}, "
                     f"slower {min(spread['slower'])}..{max(spread['slower'])}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=int, default=3)
    parser.add_argument("--reruns", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)  # the recipe's (CI_GATE.md: runs E vs F)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--min-time", type=float, default=0.5)
    parser.add_argument("--work", default="/tmp/edgeres-gate-power")
    parser.add_argument("--evaluate", metavar="JSON", help="re-evaluate the runs saved in a previous result file")
    add_result_options(parser, "gate_power")
    args = parser.parse_args()
    from edgeres.runtimes.tiny import tiny_macs
    if args.evaluate:
        result = json.loads(Path(args.evaluate).read_text())
        result["evaluated_again"] = " ".join(["python", *sys.argv])  # same runs, today's candidates
        runs = result["runs"]
    else:
        result = {"machine": machine_record(args.threads, args.machine_note), "command": " ".join(["python", *sys.argv]),
                  "settings": vars(args)}
        runs = record(args, builds(Path(args.work)))
        result["machine"]["load_average_end"] = [round(x, 2) for x in __import__("os").getloadavg()]
    every = [r for kind in runs.values() for r in kind]
    result["seconds_per_run"] = round(statistics.mean(r["seconds"] for r in every), 1)
    result["macs_ratio"] = tiny_macs(64, 2, EXTRA) / tiny_macs(64, 2)
    result["true_slowdown"] = true_slowdown(runs)
    result["candidates"] = evaluate(runs)
    result["spread"] = {name: changes(runs, stat, norm) for name, stat, norm, _ in CANDIDATES if "3 rec" in name}
    result["runs"] = runs
    write_result(args.name, result, markdown(result))


if __name__ == "__main__":
    main()
