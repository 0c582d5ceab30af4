"""How many calibration images `ort-int8` needs: INT8 top-1 against FP32 per calibration count (issue 15).

Not a test: the measurement behind edgeres.defaults.BUILD_CALIB_IMAGES. Builds ort-fp32 once and ort-int8 at
each --counts calibration count (MinMax, train split, seeded stratified subset) from one export directory;
every graph is scored on ALL val images, FP32 and INT8 on the same images, so the paired difference
(INT8 - FP32 top-1) is what calibration changes. Also times each build (calibration included, evaluation off).

    PYTHONPATH=. .venv/bin/python benchmarks/build_defaults.py demo/export      # after `make demo`

Writes benchmarks/results/build_defaults.{json,md}.
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # this checkout's edgeres, not an installed one
from _machine import cpu_text, machine_record, write_result  # noqa: E402



def top1_by_res(manifest: dict, target: str) -> dict[int, dict]:
    return {a["resolution"]: a["accuracy"] for a in manifest["artifacts"] if a["target"] == target}


def timed_build(export: Path, out: Path, targets: list[str], calib: int, evaluate: bool) -> tuple[dict, float]:
    from edgeres.build import build
    start = time.perf_counter()
    manifest = build(export, out, targets, calib_images=calib, eval_images=None, evaluate=evaluate)
    return manifest, round(time.perf_counter() - start, 2)


def measure(export: Path, counts: list[int], work: Path) -> dict:
    fp32, _ = timed_build(export, work / "fp32", ["ort-fp32"], counts[0], True)
    result = {"fp32": {str(r): a for r, a in top1_by_res(fp32, "ort-fp32").items()}, "int8": {}}
    for count in counts:
        _, seconds = timed_build(export, work / f"time{count}", ["ort-int8"], count, False)
        int8, _ = timed_build(export, work / f"int8-{count}", ["ort-int8"], count, True)
        result["int8"][str(count)] = {"build_s_no_eval": seconds,
                                     "top1": {str(r): a for r, a in top1_by_res(int8, "ort-int8").items()}}
        print(f"calib {count}: {seconds} s", file=sys.stderr)
    return result


def markdown(result: dict) -> str:
    m = result["machine"]
    res = sorted(result["fp32"], key=int, reverse=True)
    n = result["fp32"][res[0]]["count"]
    lines = ["# ort-int8: calibration images vs top-1", "",
             cpu_text(m) + f". Export: `{result['export']}`. Command: `{result['command']}`.", "",
             f"INT8 top-1 minus FP32 top-1 (points) on the same {n} val images per resolution; build seconds "
             "with calibration, without evaluation.", "",
             "| calib images | " + " | ".join(f"{r} px" for r in res) + " | build s |",
             "|---|" + "---|" * (len(res) + 1),
             "| FP32 top-1 | " + " | ".join(f"{result['fp32'][r]['top1']:.2f}" for r in res) + " | - |"]
    for count, row in result["int8"].items():
        diffs = [row["top1"][r]["top1"] - result["fp32"][r]["top1"] for r in res]
        lines.append(f"| {count} | " + " | ".join(f"{d:+.2f}" for d in diffs) + f" | {row['build_s_no_eval']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir")
    parser.add_argument("--counts", default="16,32,64,128,256,512")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    with tempfile.TemporaryDirectory() as work:
        result = {"machine": machine_record(None, "2-core VM"), "command": " ".join(["python", *sys.argv]),
                  "export": args.export_dir, **measure(Path(args.export_dir), counts, Path(work))}
    write_result("build_defaults", result, markdown(result))


if __name__ == "__main__":
    main()
