"""How does the order of the timed calls move the cascade's wall-time ratio?

Not a test: the measurement behind `edgeres cascade --block` (issue 15, part 2). `evaluate_cascade` times
highest-only, a random resolution and the cascade on the same report images, the methods taking turns of
`block` consecutive images. With block 1 every call starts with the other two methods' graphs in the caches,
which no deployment does; with long turns drift on a shared CPU could favour one method. This script tunes one
cascade (`evaluate_cascade`, default block), then re-times its three methods on the report half at each
block, the sweep run forwards and then backwards so drift during it shows as a difference between the passes.

    PYTHONPATH=. .venv/bin/python benchmarks/cascade_blocks.py /tmp/conv/full/RS-Net-lr0.3-seed0 \
        --data /tmp/conv/fashion-mnist-test8000 --trust-arch fmnist_cnn:build --threads 1

(the checkpoint exported and built as benchmarks/cascade_speed.py does).

Writes benchmarks/results/cascade_blocks.{json,md}.
"""
import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # this checkout's edgeres, not an installed one
from _machine import add_result_options, cpu_text, machine_record, write_result  # noqa: E402
from cascade_speed import built, model_arguments, trusted  # noqa: E402

BLOCKS = (1, 2, 5, 10, 25, 50, 100)


def tuned_runner(args, work: Path):
    """The cascade `edgeres cascade` would write, reloaded, and its report images."""
    from edgeres.choose.cascade import CascadeRunner
    from edgeres.choose.compare import evaluate_cascade, tune_and_report_images
    build_dir = built(Path(args.checkpoint), work, args.res, args.target, args.data)
    report = evaluate_cascade(build_dir, data=args.data, target=args.target, limit=args.limit,
                              threads=args.threads, fit_threads=args.fit_threads, out=work / "cascade")
    runner = CascadeRunner.from_cascade_json(work / "cascade" / "cascade.json")
    _, (images, indices, name) = tune_and_report_images(args.data, "val-half", args.limit)
    assert name == report.report_split, (name, report.report_split)
    return report, runner, images, indices


def one_block(runner, images, indices, block: int) -> dict:
    from edgeres.choose.compare import time_methods
    rows = {r.method: r for r in time_methods(runner, images, indices, seed=0, block=block)}
    high, cascade = rows["highest"], rows["cascade"]
    return {"block": block, "highest_ms": high.mean_latency_ms, "cascade_ms": cascade.mean_latency_ms,
            "random_ms": rows["random"].mean_latency_ms,
            "ratio_mean": cascade.mean_latency_ms / high.mean_latency_ms,
            "ratio_p50": cascade.p50_latency_ms / high.p50_latency_ms,
            "drop_points": high.top1 - cascade.top1}


def drops_text(result: dict) -> str:
    """The cascade's drop vs highest-only: one value when every timing order gave the same predictions."""
    drops = sorted({round(r["drop_points"], 6) for r in result["forward"] + result["backward"]})
    if len(drops) == 1:
        return f"{drops[0]:+.2f} points at every block (the same predictions)"
    return "differing between blocks (" + ", ".join(f"{d:+.2f}" for d in drops) + " points): predictions changed"


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = ["# Cascade / highest-only wall time by the timing order (methods in turns of `block` images)", "",
             cpu_text(m) + f". {m['shared']}.", "",
             f"Command: `{result['command']}`. Cascade tuned once by evaluate_cascade (stage threads "
             f"{result['stage_threads']}, thresholds {result['thresholds']}, answered at "
             f"{result['stage_share']} % low -> high), re-timed on {result['report_split']}; "
             f"drop {drops_text(result)}.", "",
             "| block | pass | highest ms | random ms | cascade ms | cascade / highest (mean) | (p50) |",
             "|---|---|---|---|---|---|---|"]
    for name, rows in (("forward", result["forward"]), ("backward", result["backward"])):
        for r in sorted(rows, key=lambda r: r["block"]):
            lines.append(f"| {r['block']} | {name} | {r['highest_ms']:.3f} | {r['random_ms']:.3f} | "
                         f"{r['cascade_ms']:.3f} | {r['ratio_mean']:.3f} | {r['ratio_p50']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model_arguments(parser)
    parser.add_argument("--limit", type=int, default=8000, help="val images: half tune, half report")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fit-threads", action="store_true")
    add_result_options(parser, "cascade_blocks")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work, trusted(args):
        report, runner, images, indices = tuned_runner(args, Path(work))
        result = {"machine": machine_record(args.threads, args.machine_note),
                  "command": " ".join(["python", *sys.argv]), "report_split": report.report_split,
                  "stage_threads": [st.threads for st in runner.stages],
                  "thresholds": [None if t == float("inf") else round(t, 4) for t in runner.thresholds],
                  "stage_share": [round(100 * s) for s in report.row("cascade").stage_share],
                  "drop_points": report.row("highest").top1 - report.row("cascade").top1,
                  "forward": [one_block(runner, images, indices, b) for b in BLOCKS],
                  "backward": [one_block(runner, images, indices, b) for b in reversed(BLOCKS)]}
    write_result(args.name, result, markdown(result))


if __name__ == "__main__":
    main()
