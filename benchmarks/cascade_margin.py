"""How far does a tuned cascade's drop move from its tuning images to new ones, and what margin holds it?

Not a test: the measurement behind `edgeres cascade --margin-se`'s default (issue 15, part 2). The threshold
search picks, out of thousands of candidates, one that just meets --max-drop on the tuning images, so on other
images its drop is larger. This script runs every stage of a build once over the val images (logits and each
stage's median ms with preprocessing, as `evaluate_cascade` does), then for `--splits` seeded, stratified
tune/report halves tunes at each margin (in standard errors of the paired difference) and, at margin 2, each
cost tolerance (`--cost-tolerance`: candidates within that fraction of the cheapest count as equal, the most
accurate is taken), and records the drop and the time ratio (from the stages' measured ms and switching costs,
as evaluate_cascade tunes) on the report half. The default margin and tolerance are chosen from these tables.

    PYTHONPATH=. .venv/bin/python benchmarks/cascade_margin.py /tmp/cascade-build --data DIR --threads 1

Writes benchmarks/results/cascade_margin.{json,md}.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # this checkout's edgeres, not an installed one
from _machine import add_result_options, isa_text, machine_record, write_result  # noqa: E402

MARGINS = (0.0, 0.5, 1.0, 1.5, 2.0)  # at cost tolerance 0
TOLERANCES = (0.025, 0.05, 0.1)  # at margin 2, latency costs only (MACs are exact)


def stage_outputs(build_dir: Path, data: str, limit: int | None, threads: int, target: str | None):
    """(S,N,classes logits, S median ms, N labels, S MACs, resolutions, S switch ms) over the first `limit` images
    in stratified order."""
    from edgeres.choose.cascade import CascadeRunner, load_source
    from edgeres.choose.compare import stage_pass, switch_costs
    from edgeres.choose.splits import SPLIT_SEED, stratified_order
    from edgeres.data import open_images
    src = load_source(build_dir, target, threads)
    runner = CascadeRunner(src, [np.inf] * (len(src.stages) - 1))
    images = open_images(data, "val")
    chosen = np.sort(stratified_order(images.labels, SPLIT_SEED)[:limit])
    passes = [stage_pass(runner, s, images, chosen) for s in range(len(src.stages))]
    warm = [p[1] for p in passes]
    return (np.stack([p[0] for p in passes]), np.array(warm), images.labels[chosen],
            [st.macs for st in src.stages], [st.resolution for st in src.stages],
            np.array(switch_costs(runner, images, chosen)))


def cached_stage_outputs(args):
    """stage_outputs, through an npz file when --cache names one (tuning many settings on one set of passes)."""
    cache = Path(args.cache) if args.cache else None
    if cache is not None and cache.exists():
        saved = np.load(cache)
        if "switch" not in saved:
            sys.exit(f"{cache} was written before switching costs were measured: delete it to measure again")
        return (saved["logits"], saved["ms"], saved["labels"], saved["macs"].tolist(), saved["res"].tolist(),
                saved["switch"])
    out = stage_outputs(Path(args.build), args.data, args.limit, args.threads, args.target)
    if cache is not None:
        np.savez(cache, logits=out[0], ms=out[1], labels=out[2], macs=np.array(out[3]), res=np.array(out[4]),
                 switch=out[5])
    return out


def one_split(conf, preds, labels, costs, switch, max_drop: float, seed: int, margin: float,
              tolerance: float) -> dict:
    """Tune on one seeded stratified half at `margin` and cost `tolerance`; the drop and cost ratio on the
    other half. conf, preds: S,N max-softmax confidences and predictions of every stage; switch: S switching
    costs (None for MACs)."""
    from edgeres.choose.splits import stratified_halves, stratified_order
    from edgeres.choose.thresholds import cascade_macs, pick, stop_stages, switching_cost, tune_thresholds
    order = stratified_order(labels, seed)
    tune, report = stratified_halves(labels, order)
    tuning = tune_thresholds(conf[:, tune], preds[:, tune], labels[tune], costs, max_drop, margin_se=margin,
                             switch_costs=switch, cost_tolerance=tolerance)
    stops = stop_stages(conf[:, report], tuning.thresholds)
    hits = preds[:, report] == labels[report]
    top1, reference = 100 * pick(hits, stops).mean(), 100 * hits[-1].mean()
    cost = cascade_macs(stops, costs, tuning.thresholds).mean()
    cost += switching_cost(stops, tuning.thresholds, switch) if switch is not None else 0.0
    return {"seed": seed, "margin_se": margin, "cost_tolerance": tolerance,
            "tune_drop": round(tuning.reference_top1 - tuning.top1, 3),
            "report_drop": round(float(reference - top1), 3), "cost_ratio": round(float(cost / costs[-1]), 4)}


def summary(rows: list[dict], max_drop: float, goal_ratio: float) -> list[dict]:
    out = []
    for margin, tolerance in sorted({(r["margin_se"], r["cost_tolerance"]) for r in rows}):
        mine = [r for r in rows if (r["margin_se"], r["cost_tolerance"]) == (margin, tolerance)]
        drops, ratios = np.array([r["report_drop"] for r in mine]), np.array([r["cost_ratio"] for r in mine])
        out.append({"margin_se": margin, "cost_tolerance": tolerance, "splits": len(mine), "mean_tune_drop": round(float(np.mean([r["tune_drop"] for r in mine])), 3),
                    "mean_report_drop": round(float(drops.mean()), 3),
                    "over_max_drop": round(float((drops > max_drop + 1e-9).mean()), 3),
                    "mean_cost_ratio": round(float(ratios.mean()), 3),
                    "goal_met": round(float(((drops <= max_drop + 1e-9) & (ratios <= goal_ratio)).mean()), 3)})
    return out


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = ["# Cascade tuning margin: the drop on new images", "",
             f"CPU: {m['cpu_model']} ({isa_text(m)}), {m['cpus']} cores, ORT threads {result['threads']}. {m['shared']}.",
             "", f"Command: `{result['command']}`. Stages {result['resolutions']} px; stage ms with preprocessing "
             f"(median over {result['images']} images) {result['stage_ms']}, switching ms {result.get('switch_ms')}, "
             f"MACs {result['macs']}; {result['images']} val images, "
             f"{result['splits']} seeded stratified tune/report halves; max drop {result['max_drop']} points; "
             f"cost {'the stage ms above' if result['cost'] == 'latency' else 'MACs'}; cost ratio = the cascade's summed stage cost per image / "
             "the highest stage's.", "",
             "| margin (s.e.) | cost tolerance | mean drop, tuning half | mean drop, report half | report drop > max | "
             f"mean cost ratio | drop <= {result['max_drop']} and ratio <= {result['goal_ratio']} |",
             "|---|---|---|---|---|---|---|"]
    for s in result["summary"]:
        lines.append(f"| {s['margin_se']} | {s.get('cost_tolerance', 0)} | {s['mean_tune_drop']:+.2f} | {s['mean_report_drop']:+.2f} | "
                     f"{100 * s['over_max_drop']:.0f}% | {s['mean_cost_ratio']:.3f} | {100 * s['goal_met']:.0f}% |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build", help="a build directory (or export directory) of per-resolution graphs")
    parser.add_argument("--data", required=True)
    parser.add_argument("--target", default=None)
    parser.add_argument("--limit", type=int, default=8000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--splits", type=int, default=30)
    parser.add_argument("--max-drop", type=float, default=0.5)
    parser.add_argument("--goal-ratio", type=float, default=0.6)
    parser.add_argument("--cost", choices=("latency", "macs"), default="latency",
                        help="what the tuner minimises and the time ratio counts (macs: a compute-bound device)")
    parser.add_argument("--cache", default=None, help="npz of the stage passes, reused when it exists")
    add_result_options(parser, "cascade_margin")
    args = parser.parse_args()
    logits, ms, labels, macs, res, switch = cached_stage_outputs(args)
    latency = args.cost == "latency"
    costs, switch = (ms, switch) if latency else (np.asarray(macs, np.float64), None)
    from edgeres.choose.thresholds import max_softmax
    conf, preds = np.stack([max_softmax(stage) for stage in logits]), logits.argmax(-1)
    settings = [(m, 0.0) for m in MARGINS] + [(2.0, t) for t in TOLERANCES if latency]
    rows = [one_split(conf, preds, labels, costs, switch, args.max_drop, 1000 + k, margin, tolerance)
            for k in range(args.splits) for margin, tolerance in settings]
    result = {"machine": machine_record(None, args.machine_note), "command": " ".join(["python", *sys.argv]),
              "threads": args.threads, "cost": args.cost, "resolutions": res, "stage_ms": [round(float(v), 4) for v in ms],
              "switch_ms": [round(float(v), 4) for v in switch] if switch is not None else None,
              "macs": macs, "images": int(len(labels)), "splits": args.splits, "max_drop": args.max_drop,
              "goal_ratio": args.goal_ratio, "rows": rows, "summary": summary(rows, args.max_drop, args.goal_ratio)}
    write_result(args.name, result, markdown(result))


if __name__ == "__main__":
    main()
