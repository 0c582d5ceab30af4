"""Is the confidence cascade faster per image than the highest resolution alone, at <= 0.5 points less top-1?

Not a test: the measurement of issue 15, part 2. Exports an RS-Net checkpoint at --res (or takes an export
or build directory), builds --target, then
runs `edgeres.choose.evaluate_cascade` (thresholds tuned on one stratified half of the val images, every
number measured on the other half) for each ORT setting (intra-op threads x spinning). Every timed call
starts from the decoded image and pays the resize/crop/normalise of each stage it runs; the three methods
take turns of --block consecutive images (evaluate_cascade's default; benchmarks/cascade_blocks.py
measures the order's effect), so drift on a shared CPU hits them alike. Goal: cascade mean wall time per image
<= 0.6x highest-only at a top-1 drop <= 0.5 points on the report half.

    # the converged benchmark's RS-Net (seed 0) on its own test images (the first 8000 of Fashion-MNIST's test file)
    PYTHONPATH=. .venv/bin/python benchmarks/cascade_speed.py /tmp/edgeres-converged/full/RS-Net-lr0.1-seed0 \
        --data /tmp/edgeres-converged/fashion-mnist-test8000 --trust-arch fmnist_cnn:build

    # the same through the TensorRT runner, on a Jetson or GPU host with TensorRT (no torch there: export the
    # checkpoint on a host with `edgeres export`, copy the export directory over, and pass it instead)
    python3 benchmarks/cascade_speed.py <export dir> --data <dir> --target trt-fp16 --name cascade_speed_trt_<device>

Writes benchmarks/results/cascade_speed.{json,md}.
"""
import argparse
import contextlib
import math
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # this checkout's edgeres (and fmnist_cnn), not an installed one
from _machine import add_result_options, cpu_text, machine_record, write_result  # noqa: E402

from edgeres.defaults import CASCADE_BLOCK, CASCADE_MARGIN_SE  # noqa: E402

# (intra-op threads, spinning, fit_threads: a stage measured faster on one thread runs on one)
SETTINGS = ((1, False, False), (2, False, False), (2, False, True), (2, True, True))
ENGINE_SETTINGS = ((None, False, False),)  # an engine has no intra-op threads: one setting


def settings_for(target: str) -> tuple:
    from edgeres.build.targets import get_target
    return ENGINE_SETTINGS if get_target(target).backend == "trt" else SETTINGS


def built(source: Path, work: Path, res: str, target: str, data: str) -> Path:
    """The build directory to measure: `source` itself when it is one; else `source` (an export directory, or a
    checkpoint exported here at `res`) built for `target`. A Jetson has no torch: export on a host, pass the
    export (or a build with engines) there."""
    from edgeres.build import build
    if (source / "build.json").is_file():
        return source
    if not (source / "export.json").is_file():
        from edgeres.export import export
        export(source, work / "export", resolutions=res, data=data)
        source = work / "export"
    build(source, work / "build", [target], data=data, calib_data=data, evaluate=False)
    return work / "build"


def one_setting(build_dir: Path, args, threads: int, spinning: bool, fit: bool) -> dict:
    from edgeres.choose import evaluate_cascade
    report = evaluate_cascade(build_dir, data=args.data, max_drop=args.max_drop, target=args.target,
                              limit=args.limit, threads=threads, spinning=spinning, margin_se=args.margin_se,
                              fit_threads=fit, block=args.block)
    rows = {r.method: {k: v for k, v in r.__dict__.items() if k != "method"} for r in report.rows}
    rows = {m: {**r, "stage_share": list(r["stage_share"])} for m, r in rows.items()}
    high, cascade = rows["highest"], rows["cascade"]
    thresholds = [None if math.isinf(t) else t for t in report.tuning.thresholds]  # strict JSON: None = never exits
    return {"threads": threads, "spinning": spinning, "fit_threads": fit,
            "stage_threads": [st.threads for st in report.source.stages], "rows": rows, "thresholds": thresholds,
            "tune_split": report.tune_split, "report_split": report.report_split,
            "drop_points": round(high["top1"] - cascade["top1"], 2),
            "time_ratio_mean": round(cascade["mean_latency_ms"] / high["mean_latency_ms"], 3),
            "time_ratio_p50": round(cascade["p50_latency_ms"] / high["p50_latency_ms"], 3),
            "macs_ratio": round(cascade["mean_macs"] / high["mean_macs"], 3)}


def threads_text(setting: dict) -> str:
    per_stage = "/".join(str(t) for t in setting.get("stage_threads", []))
    if setting["threads"] is None:
        return "n/a (engine)"
    return f"{setting['threads']}" + (f", fitted ({per_stage})" if setting.get("fit_threads") else "")


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = ["# Cascade vs highest resolution: wall time per image (preprocessing included)", "",
             cpu_text(m) + f". {m['shared']}.", "",
             f"Command: `{result['command']}`. Target {result['target']} at {result['res']} px; "
             f"max drop {result['max_drop']} points, tuning margin {result.get('margin_se', 0)} s.e.; tuned on "
             f"{result['settings'][0]['tune_split']}, measured on {result['settings'][0]['report_split']}; the "
             f"methods timed in turns of {result.get('block', 1)} images.", "",
             "| threads (per stage, low -> high) | spinning | method | top-1 % | MMACs/img | ms mean | p50 | p90 | p99 | "
             "answered at % (low -> high) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for s in result["settings"]:
        for method, r in s["rows"].items():
            share = "/".join(f"{100 * v:.0f}" for v in r["stage_share"])
            lines.append(f"| {threads_text(s)} | {s['spinning']} | {method} | {r['top1']:.2f} | {r['mean_macs'] / 1e6:.3f} "
                         f"| {r['mean_latency_ms']:.3f} | {r['p50_latency_ms']:.3f} | {r['p90_latency_ms']:.3f} | "
                         f"{r['p99_latency_ms']:.3f} | {share} |")
    lines += ["", "| threads (per stage) | spinning | drop (points) | cascade / highest: mean ms | p50 ms | MACs | goal met |",
              "|---|---|---|---|---|---|---|"]
    for s in result["settings"]:
        met = s["drop_points"] <= result["max_drop"] and s["time_ratio_mean"] <= 0.6
        lines.append(f"| {threads_text(s)} | {s['spinning']} | {s['drop_points']:+.2f} | {s['time_ratio_mean']} | "
                     f"{s['time_ratio_p50']} | {s['macs_ratio']} | {'yes' if met else 'no'} |")
    return "\n".join(lines) + "\n"


def model_arguments(parser: argparse.ArgumentParser) -> None:
    """The checkpoint and what `built` needs to export and build it (cascade_blocks.py takes the same)."""
    parser.add_argument("checkpoint", help="an RS-Net checkpoint, or an export or build directory")
    parser.add_argument("--data", required=True)
    parser.add_argument("--res", default="28,24,20,16,12")
    parser.add_argument("--target", default="ort-fp32")
    parser.add_argument("--trust-arch", default=None, help="the checkpoint's module:factory arch, if it has one")


def trusted(args: argparse.Namespace):
    """A context in which the checkpoint's --trust-arch factory may be imported (none given: nothing changes)."""
    from edgeres.arch import trusting_arch_code
    return trusting_arch_code(args.trust_arch) if args.trust_arch else contextlib.nullcontext()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model_arguments(parser)
    parser.add_argument("--limit", type=int, default=4000, help="val images: half tune, half report")
    parser.add_argument("--max-drop", type=float, default=0.5)
    parser.add_argument("--margin-se", type=float, default=CASCADE_MARGIN_SE, help="evaluate_cascade's tuning margin")
    parser.add_argument("--block", type=int, default=CASCADE_BLOCK, help="evaluate_cascade's timing turns (images)")
    add_result_options(parser, "cascade_speed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work, trusted(args):
        result = {"machine": machine_record(None, args.machine_note),
                  "command": " ".join(["python", *sys.argv]), "target": args.target, "res": args.res,
                  "max_drop": args.max_drop, "margin_se": args.margin_se, "block": args.block,
                  "checkpoint": args.checkpoint}
        build_dir = built(Path(args.checkpoint), Path(work), args.res, args.target, args.data)
        result["settings"] = [one_setting(build_dir, args, t, s, fit) for t, s, fit in settings_for(args.target)]
    write_result(args.name, result, markdown(result))


if __name__ == "__main__":
    main()
