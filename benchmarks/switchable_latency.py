"""The switchable graph vs the folded graph of the same resolution, side by side (issue 15, part 1).

Not a test: a measurement. Makes a ResNet18 RS-Net (1 channel, 10 classes, random weights and BNs; speed does not
depend on training), exports it with `edgeres.export(..., switchable=True)` (which verifies the switchable graph
against the folded ones and records its own ratio in export.json), also exports the previous Gather-table
switchable graph, then times the three graphs of every resolution in ONE interleaved run through the timing
primitive (runtimes.timing.paired_burst: a folded run, a switchable run, in turn), ORT CPU, batch 1, spinning off.
`--profile` adds ORT's per-op-type profile of each graph (where the time goes).

    nice -n 5 .venv/bin/python benchmarks/switchable_latency.py                  # ~3 min on 2 shared cores
    nice -n 5 .venv/bin/python benchmarks/switchable_latency.py --profile --res 224

Writes benchmarks/results/switchable_latency.{json,md}.
"""
import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # this checkout's edgeres, not an installed one
from _machine import add_result_options, isa_text, machine_record, write_result  # noqa: E402
from _rsnet import make_checkpoint  # noqa: E402

GRAPHS = ("folded", "switchable", "tables")


def make_export(work: Path, res: tuple[int, ...], verify_images: int) -> dict:
    from edgeres.export import export
    checkpoint, model = make_checkpoint(work / "checkpoint", res)
    manifest = export(checkpoint, work / "export", res, switchable=True, verify_images=verify_images)
    tables_graph(model, res, work / "export" / "tables.onnx")
    return manifest


def tables_graph(model, res: tuple[int, ...], path: Path) -> None:
    """The switchable graph as exported before issue 15: BN affine tables gathered by res_index after each conv."""
    import torch

    from edgeres.export.checks import onnx_from_module
    from edgeres.export.switchable import SwitchableGraph
    raw = onnx_from_module(SwitchableGraph(model), (torch.zeros(1, 1, res[0], res[0]), torch.zeros(1, dtype=torch.int64)),
                           ["input", "res_index"], ["logits"], 17, {"input": {2: "height", 3: "width"}})
    path.write_bytes(raw)


def runners(export_dir: Path, manifest: dict, threads: int) -> dict:
    """{(graph, res): (runner, input)} for the folded, switchable and tables graphs of every resolution."""
    from edgeres.runtimes.base import random_input
    from edgeres.runtimes.ort import OrtRunner
    sw = manifest["switchable"]
    out = {}
    for g in manifest["graphs"]:
        res, index = g["resolution"], sw["resolutions"].index(g["resolution"])
        feeds = {"res_index": np.array([index], np.int64)}
        x = random_input((1, 1, res, res))
        out[("folded", res)] = (OrtRunner(export_dir / g["file"], threads, spinning=False), x)
        out[("switchable", res)] = (OrtRunner(export_dir / sw["file"], threads, spinning=False, feeds=feeds), x)
        out[("tables", res)] = (OrtRunner(export_dir / "tables.onnx", threads, spinning=False, feeds=feeds), x)
    return out


def measure(run: dict, rounds: int, burst_s: float, warmup: int) -> list[dict]:
    """`rounds` rotations over the resolutions; in each, one paired burst (runs alternating with the folded
    graph's) for the switchable and for the tables graph."""
    from edgeres.runtimes.timing import paired_burst, runner_cell, warm_up
    cells = {key: runner_cell(f"{key[0]}@{key[1]}", runner, x) for key, (runner, x) in run.items()}
    warm_up(list(cells.values()), warmup)
    resolutions = sorted({r for _, r in cells}, reverse=True)
    for turn in range(rounds):
        for res in resolutions if turn % 2 == 0 else resolutions[::-1]:
            for graph in ("switchable", "tables"):
                paired_burst(cells[(graph, res)], cells[("folded", res)], burst_s)
    return [row(cells, res) for res in resolutions]


def row(cells: dict, res: int) -> dict:
    out = {"resolution": res, **{f"{g}_ms": round(statistics.median(cells[(g, res)].samples_ms), 3) for g in GRAPHS}}
    for g in ("switchable", "tables"):
        ratios = cells[(g, res)].reference_ratios
        out[f"{g}_ratio"] = round(statistics.median(ratios), 4)
        out[f"{g}_ratio_iqr"] = [round(float(q), 4) for q in np.percentile(ratios, [25, 75])]
        out[f"{g}_bursts"] = len(ratios)
    return out


def max_diffs(run: dict) -> dict[str, float]:
    """max |switchable - folded| logits per resolution on the timing input (export verified real images too)."""
    out = {}
    for (graph, res), (runner, x) in run.items():
        if graph == "switchable":
            out[str(res)] = float(np.abs(runner.infer(x) - run[("folded", res)][0].infer(x)).max())
    return out


def same_kernels(export_dir: Path, manifest: dict) -> dict[str, bool]:
    """Per resolution: does ORT's optimised branch run exactly the folded graph's nodes (op, domain, inputs,
    attributes such as the fused activation)? A check of the mechanism that no load on the machine can blur."""
    import onnx

    from edgeres.runtimes.ort import ort_session
    sw = manifest["switchable"]
    ort_session(export_dir / sw["file"], 2, save_to=export_dir / "switchable.opt.onnx")
    branches = subgraphs(onnx.load(export_dir / "switchable.opt.onnx").graph)
    out = {}
    for g in manifest["graphs"]:
        ort_session(export_dir / g["file"], 2, save_to=export_dir / "folded.opt.onnx")
        folded = onnx.load(export_dir / "folded.opt.onnx").graph
        branch = branches[f"resolution_{sw['resolutions'].index(g['resolution'])}"]
        out[str(g["resolution"])] = signature(folded) == signature(branch)
    return out


def subgraphs(graph) -> dict:
    found = {}
    for node in graph.node:
        for attr in node.attribute:
            if attr.g.name:
                found[attr.g.name] = attr.g
                found.update(subgraphs(attr.g))
    return found


def signature(graph) -> list:
    import onnx
    return [(n.domain, n.op_type, len(n.input), sorted((a.name, str(onnx.helper.get_attribute_value(a)))
                                                        for a in n.attribute)) for n in graph.node]


def profile(export_dir: Path, manifest: dict, threads: int, runs: int) -> dict:
    """ORT profiler: mean ms per run by op type, for each graph and resolution. A diagnostic, so it opens its own
    sessions with enable_profiling (runtimes.ort.ort_session has no profiling switch)."""
    import onnxruntime as ort
    sw, out = manifest["switchable"], {}
    for g in manifest["graphs"]:
        res = g["resolution"]
        x = np.random.default_rng(0).standard_normal((1, 1, res, res)).astype(np.float32)
        index = {"res_index": np.array([sw["resolutions"].index(res)], np.int64)}
        for name, file, feeds in (("folded", g["file"], {}), ("switchable", sw["file"], index),
                                  ("tables", "tables.onnx", index)):
            options = ort.SessionOptions()
            options.intra_op_num_threads, options.enable_profiling = threads, True
            options.profile_file_prefix = str(export_dir / f"profile_{name}_{res}")
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            session = ort.InferenceSession(str(export_dir / file), options, providers=["CPUExecutionProvider"])
            for _ in range(runs):
                session.run(None, {"input": x, **feeds})
            out[f"{name}@{res}"] = op_times(json.loads(Path(session.end_profiling()).read_text()), runs)
    return out


def op_times(events: list, runs: int) -> dict[str, float]:
    """ms per run by op type (kernel time), largest first; If is left out (it includes its branch's nodes)."""
    by_op: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["args"]["op_name"] != "If":
            by_op[e["args"]["op_name"]] = by_op.get(e["args"]["op_name"], 0.0) + e["dur"] / 1000.0 / runs
    return {k: round(v, 3) for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])}


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = ["# Switchable graph vs folded graph (ResNet18 RS-Net, 1 channel, 10 classes)", "",
             f"CPU: {m['cpu_model']} ({isa_text(m)}), {m['threads']} threads, spinning off, batch 1; "
             f"load average at start {m['load_average_1_5_15']}. {m['shared']}.", "",
             f"Command: `{result['command']}`", "",
             "| res | folded ms | switchable ms | switchable / folded (IQR) | export.json ratio | old Gather-table graph / folded |",
             "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['resolution']} | {r['folded_ms']} | {r['switchable_ms']} | {r['switchable_ratio']:.3f} "
                     f"({r['switchable_ratio_iqr'][0]:.3f}-{r['switchable_ratio_iqr'][1]:.3f}) | "
                     f"{result['export_ratios'][str(r['resolution'])]:.3f} | {r['tables_ratio']:.3f} |")
    lines += ["", ("Ratios: median over bursts of each burst's median (graph run / the folded run beside it) "
                   "(runtimes.timing.paired_burst); IQR over bursts. ms are medians of all runs and move with the "
                   "machine's load."), "",
              f"Switchable file {result['bytes']['switchable']} bytes, folded graphs together "
              f"{result['bytes']['folded_total']} bytes; max |switchable - folded| logits {result['max_abs_diff']}.",
              "", "ORT's optimised branch runs exactly the folded graph's nodes (op, domain, inputs, attributes incl. "
              f"fused activations), per resolution: {result['same_kernels_as_folded']}."]
    for key, ops in result.get("profile", {}).items():
        lines.append(f"- profile {key}: " + ", ".join(f"{op} {ms}" for op, ms in list(ops.items())[:7]))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--res", default="224,160,96")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=21, help="paired bursts per graph and resolution (odd)")
    parser.add_argument("--burst", type=float, default=0.3, help="seconds per paired burst")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--verify-images", type=int, default=8)
    parser.add_argument("--profile", type=int, default=0, metavar="RUNS", help="also profile each graph RUNS times")
    parser.add_argument("--work", default="/tmp/edgeres-switchable-bench")
    add_result_options(parser, "switchable_latency")
    args = parser.parse_args()
    from edgeres.resolutions import parse_resolutions
    res, work = parse_resolutions(args.res), Path(args.work)
    result = {"machine": machine_record(args.threads, args.machine_note), "command": " ".join(["python", *sys.argv]),
              "settings": vars(args)}
    manifest = make_export(work, res, args.verify_images)
    sw = manifest["switchable"]
    run = runners(work / "export", manifest, args.threads)
    result["rows"] = measure(run, args.rounds, args.burst, args.warmup)
    result["export_ratios"] = {k: v["ratio"] for k, v in sw["latency_ms"].items()}
    result["max_abs_diff"] = max_diffs(run)
    result["same_kernels_as_folded"] = same_kernels(work / "export", manifest)
    result["bytes"] = {"switchable": sw["bytes"], "folded_total": sw["folded_bytes_total"]}
    if args.profile:
        result["profile"] = profile(work / "export", manifest, args.threads, args.profile)
    result["machine"]["load_average_end"] = [round(x, 2) for x in __import__("os").getloadavg()]
    write_result(args.name, result, markdown(result))


if __name__ == "__main__":
    main()
