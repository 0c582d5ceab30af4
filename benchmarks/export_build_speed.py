"""How fast the tooling is: `export` of 5 ResNet18 resolutions vs 5 plain torch.onnx.export calls, and the
`ort-int8` build of those 5 graphs (issue 15, part 3).

Not a test: a measurement. One process with warm imports alternates `--repeats` times: five plain
`torch.onnx.export` calls of torchvision's resnet18 (1 channel, 10 classes, the 5 resolutions) and one
`edgeres.export` of a random-weight ResNet18 RS-Net checkpoint at the same resolutions (verification on
`--verify-images` real images). The goal is export <= 2x the plain calls of the same repeat (or < 10 s), and
the build < 30 s with the evaluation default in mind (`--eval-images`). cProfile splits one export and one
build into their stages.

    nice -n 5 .venv/bin/python benchmarks/export_build_speed.py              # ~4 min on 2 shared cores

Writes benchmarks/results/export_build_speed[_calib<N>].{json,md}.
"""
import argparse
import cProfile
import io
import pstats
import shutil
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # this checkout's edgeres, not an installed one
from _machine import add_result_options, isa_text, machine_record, write_result  # noqa: E402
from _rsnet import make_checkpoint  # noqa: E402

EXPORT_STAGES = ("_open_source", "load_checkpoint", "check_resolutions_fit", "export_resolution", "specialize",
                 "conv_bn_pairs", "fp16_range", "_graph", "export_onnx", "check_graph", "write_bytes", "verify_graph",
                 "torch_logits", "ort_logits", "model_cost", "sha256_file")
BUILD_STAGES = ("run_builder", "preprocess", "calibrate", "dynamic_batch_copy", "ranges_from_batches", "quantize_qdq",
                "row_for", "ort_accuracy_json", "sha256_file", "graph_entries")


def plain_model():
    import torch
    import torchvision
    model = torchvision.models.resnet18(num_classes=10)
    model.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    return model.eval()


def plain_exports(model, res: tuple[int, ...], out: Path) -> None:
    """What a user without edgeres runs: one legacy torch.onnx.export per resolution, nothing else."""
    import torch
    out.mkdir(parents=True, exist_ok=True)
    for r in res:
        torch.onnx.export(model, (torch.zeros(1, 1, r, r),), str(out / f"r{r}.onnx"), dynamo=False, opset_version=17)


def edgeres_export(checkpoint: Path, res: tuple[int, ...], out: Path, verify_images: int) -> dict:
    from edgeres.export import export
    shutil.rmtree(out, ignore_errors=True)
    return export(checkpoint, out, res, verify_images=verify_images)


def timed_pairs(args, work: Path, checkpoint: Path, res: tuple[int, ...]) -> list[dict]:
    """`repeats` (plain, edgeres) pairs, order flipped every other repeat (ABBA), by the one host clock."""
    from edgeres.runtimes.timing import timed_call
    model, pairs = plain_model(), []
    for i in range(args.repeats):
        jobs = {"plain_s": lambda: plain_exports(model, res, work / "plain"),
                "edgeres_s": lambda: edgeres_export(checkpoint, res, work / "export", args.verify_images)}
        order = list(jobs) if i % 2 == 0 else list(jobs)[::-1]
        times = {key: round(timed_call(jobs[key])[1] / 1000.0, 3) for key in order}
        pairs.append({**times, "ratio": round(times["edgeres_s"] / times["plain_s"], 3)})
        print(f"repeat {i + 1}: {pairs[-1]}", file=sys.stderr)
    return pairs


def stage_times(profile: cProfile.Profile, names: tuple[str, ...]) -> dict[str, float]:
    """Cumulative seconds of the named edgeres functions (summed over calls) in a cProfile run."""
    stats = pstats.Stats(profile, stream=io.StringIO())
    out: dict[str, float] = {}
    for (file, _line, func), (_cc, _nc, _tt, cumulative, _callers) in stats.stats.items():
        if func in names and "edgeres" in file:
            out[func] = round(out.get(func, 0.0) + cumulative, 3)
    return {name: out[name] for name in names if name in out}


def profiled(fn) -> tuple[object, dict, float]:
    from edgeres.runtimes.timing import timed_call
    profile = cProfile.Profile()
    result, ms = timed_call(lambda: profile.runcall(fn))
    return result, profile, round(ms / 1000.0, 3)


def build_once(export_dir: Path, out: Path, eval_images: int | None, calib_images: int):
    from edgeres.build import build
    shutil.rmtree(out, ignore_errors=True)
    return build(export_dir, out, ["ort-int8"], eval_images=eval_images, calib_images=calib_images)


def markdown(result: dict) -> str:
    m, e, b = result["machine"], result["export"], result.get("build")
    lines = ["# Tooling speed: export and ort-int8 build of 5 ResNet18 resolutions", "",
             f"CPU: {m['cpu_model']} ({isa_text(m)}), {m['cpus']} cores, torch threads {result['torch_threads']}; "
             f"load average at start {m['load_average_1_5_15']}, at end {m['load_average_end']}. {m['shared']}.", "",
             f"Command: `{result['command']}`", "",
             f"## Export ({', '.join(map(str, result['resolutions']))} px, --verify-images {result['verify_images']})",
             "", "| repeat | 5 plain torch.onnx.export (s) | edgeres export (s) | ratio |", "|---|---|---|---|"]
    lines += [f"| {i + 1} | {p['plain_s']} | {p['edgeres_s']} | {p['ratio']} |" for i, p in enumerate(e["pairs"])]
    lines += ["", f"Median ratio {e['median_ratio']} (goal <= 2), median edgeres export {e['median_edgeres_s']} s "
              "(goal < 10 s).", "", f"Profiled export ({e['profiled_s']} s under cProfile), cumulative s per stage: "
              + ", ".join(f"{k} {v}" for k, v in e["stages"].items())]
    if b:
        lines += ["", f"## Build --target ort-int8 (calib images {b['calib_images']}, eval images {b['eval_images']})",
                  "", f"Wall {b['wall_s']} s, median of {b['walls_s']} (goal < 30 s); under cProfile {b['profiled_s']} s, "
                  "cumulative s per stage: "
                  + ", ".join(f"{k} {v}" for k, v in b["stages"].items())]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--res", default="224,192,160,128,96")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--verify-images", type=int, default=8)
    parser.add_argument("--eval-images", type=int, default=None, help="build's evaluation images (default: its own)")
    parser.add_argument("--calib-images", type=int, default=None, help="build's calibration images (default: its own)")
    parser.add_argument("--build-repeats", type=int, default=3, help="unprofiled builds timed (median reported)")
    parser.add_argument("--skip-build", action="store_true")
    parser.add_argument("--work", default="/tmp/edgeres-export-speed")
    add_result_options(parser, None, "export_build_speed, with _calibN when --calib-images is given")
    args = parser.parse_args()
    import torch

    from edgeres.build.targets import CalibSettings
    from edgeres.runtimes.timing import timed_call
    from edgeres.defaults import BUILD_EVAL_IMAGES
    from edgeres.resolutions import parse_resolutions
    res, work = parse_resolutions(args.res), Path(args.work)
    result = {"machine": machine_record(None, args.machine_note), "command": " ".join(["python", *sys.argv]),
              "resolutions": list(res), "verify_images": args.verify_images, "torch_threads": torch.get_num_threads()}
    checkpoint, _ = make_checkpoint(work / "checkpoint", res)
    pairs = timed_pairs(args, work, checkpoint, res)
    _, profile, seconds = profiled(lambda: edgeres_export(checkpoint, res, work / "export", args.verify_images))
    result["export"] = {"pairs": pairs, "median_ratio": statistics.median(p["ratio"] for p in pairs),
                        "median_edgeres_s": statistics.median(p["edgeres_s"] for p in pairs),
                        "median_plain_s": statistics.median(p["plain_s"] for p in pairs),
                        "profiled_s": seconds, "stages": stage_times(profile, EXPORT_STAGES)}
    if not args.skip_build:
        calib_images = args.calib_images or CalibSettings().images
        eval_images = args.eval_images or BUILD_EVAL_IMAGES
        walls = [round(timed_call(lambda: build_once(work / "export", work / "build", eval_images, calib_images))[1]
                       / 1000.0, 3) for _ in range(args.build_repeats)]
        _, profile, seconds = profiled(lambda: build_once(work / "export", work / "build", eval_images, calib_images))
        result["build"] = {"walls_s": walls, "wall_s": statistics.median(walls), "profiled_s": seconds,
                           "calib_images": calib_images, "eval_images": eval_images,
                           "stages": stage_times(profile, BUILD_STAGES)}
    result["machine"]["load_average_end"] = [round(x, 2) for x in __import__("os").getloadavg()]
    name = args.name or "export_build_speed" + (f"_calib{args.calib_images}" if args.calib_images else "")
    write_result(name, result, markdown(result))


if __name__ == "__main__":
    main()
