"""What `ort-int8`'s 7-bit weights (its default, reduce_range) cost in top-1 against 8-bit weights, on this CPU.

Not a test: a measurement. On x86 without VNNI, ORT's fast U8 x S8 kernels add pairs of products in int16 and
saturate with full-range 8-bit weights (FACTS; build.py's `ort-int8` therefore keeps weights in 7 bits unless
`--int8-full-range`); with VNNI the fast kernels are exact, so the 8-bit graph shows what the 7-bit default gives
up. Exports the checkpoint at --res, builds `ort-fp32`, `ort-int8` (7-bit) and `ort-int8` with full-range weights
(8-bit) from one calibration, then runs every graph on the same --limit val images (stratified subset, one ORT
thread): top-1 and the share of images whose top-1 class differs from FP32's, the 8-bit graph both on the fast
kernels and on ORT's exact ones (`session.x64quantprecision`).

    PYTHONPATH=. .venv/bin/python benchmarks/int8_weight_bits.py /tmp/conv/full/RS-Net-lr0.3-seed0 \\
        --data /tmp/conv/fashion-mnist-test8000 --trust-arch fmnist_cnn:build --limit 8000 --name int8_weight_bits

Writes benchmarks/results/<--name>.{json,md}.
"""
import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # this checkout's edgeres (and fmnist_cnn), not an installed one
from _machine import add_result_options, isa_text, machine_record, write_result  # noqa: E402

# column -> (build directory, target, exact INT8 kernels)
GRAPHS = {"fp32": ("b7", "ort-fp32", False), "int8 7-bit": ("b7", "ort-int8", False),
          "int8 8-bit fast": ("b8", "ort-int8", False), "int8 8-bit exact": ("b8", "ort-int8", True)}


def build_all(checkpoint: Path, work: Path, res: str, data: str | None) -> None:
    from edgeres.build import build
    from edgeres.export import export
    export(checkpoint, work / "export", resolutions=res, data=data)
    calib = work / "calib"  # one calibration for both INT8 builds: only the weight range differs
    build(work / "export", work / "b7", ["ort-fp32", "ort-int8"], data=data, calib_data=data, calib_dir=calib,
          evaluate=False)
    build(work / "export", work / "b8", ["ort-int8"], data=data, calib_data=data, calib_dir=calib, evaluate=False,
          options={"int8_full_range": True})


def open_graphs(work: Path, res: int) -> tuple[dict, object]:
    """column -> runner of that graph at `res` (one ORT thread), and the build manifest (the same export's)."""
    from edgeres.manifests.artifacts import read_artifacts
    from edgeres.runtimes import open_runner
    listed = {folder: read_artifacts(work / folder) for folder in {f for f, _, _ in GRAPHS.values()}}
    runners = {}
    for column, (folder, target, exact) in GRAPHS.items():
        artifact = next(a for a in listed[folder][1] if a.target == target and a.resolution == res)
        runners[column] = open_runner(artifact, threads=1, exact_int8=exact)
    return runners, listed["b7"][0]


def row(work: Path, res: int, data: str | None, limit: int | None) -> dict:
    """Every graph on the same stratified val subset, each batch preprocessed once for all of them."""
    from edgeres.data import eval_batches, open_images
    from edgeres.evaluate import Accuracy, subset
    runners, manifest = open_graphs(work, res)
    try:
        images, pre = open_images(data or manifest.data, "val"), manifest.preprocessing
        (batch,) = {r.static_batch or 64 for r in runners.values()}  # graphs of one export share their batch
        preds, labels = {c: [] for c in runners}, []
        for x, y in eval_batches(images, res, pre.mean, pre.std, pre.crop_ratio, batch, indices=subset(images, limit)):
            labels.append(y)
            for column, runner in runners.items():
                preds[column].append(runner.infer(x).argmax(1))
    finally:
        for runner in runners.values():
            runner.close()
    labels = np.concatenate(labels)
    preds = {c: np.concatenate(p) for c, p in preds.items()}
    n = len(labels)
    out = {"resolution": res, "images": n}
    for column, p in preds.items():
        accuracy = Accuracy(100 * float((p == labels).mean()), float("nan"), n)  # top-5 not measured
        low, high = accuracy.top1_interval()
        out[column] = {"top1": round(accuracy.top1, 2), "top1_ci95": [round(low, 2), round(high, 2)],
                       "differs_from_fp32_pct": round(100 * float((p != preds["fp32"]).mean()), 2)}
    return out


def markdown(result: dict) -> str:
    m = result["machine"]
    cols = list(GRAPHS)
    lines = ["# ort-int8: 7-bit (default) vs 8-bit weights, top-1 and disagreement with FP32", "",
             f"CPU: {m['cpu_model']} ({isa_text(m)}), ORT {m['libraries'].get('onnxruntime', '?')}, 1 thread. "
             f"{m['shared']}.", "",
             f"Command: `{result['command']}`. One calibration ({result['calib']}) for both INT8 builds.", "",
             "| res | images | " + " | ".join(f"{c} top-1 %" for c in cols) + " | " +
             " | ".join(f"{c}: differs from FP32 %" for c in cols[1:]) + " |",
             "|" + "---|" * (2 + 2 * len(cols) - 1)]
    for r in result["rows"]:
        tops = " | ".join(f"{r[c]['top1']:.2f} ({r[c]['top1_ci95'][0]:.2f}-{r[c]['top1_ci95'][1]:.2f})" for c in cols)
        flips = " | ".join(f"{r[c]['differs_from_fp32_pct']:.2f}" for c in cols[1:])
        lines.append(f"| {r['resolution']} | {r['images']} | {tops} | {flips} |")
    lines += ["", "In brackets: the 95% (Wilson) interval of each top-1 alone; the graphs see the same images, so "
              "differences between columns are tighter than that (the disagreement columns count them directly)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--res", default="28,24,20,16,12")
    parser.add_argument("--data", default=None, help="eval and calibration data (default: the checkpoint's)")
    parser.add_argument("--limit", type=int, default=None, help="val images (stratified subset; default all)")
    parser.add_argument("--trust-arch", default=None, help="module:function of a custom architecture to import")
    parser.add_argument("--work", default=None, help="keep the exports and builds here (default: a temp dir)")
    add_result_options(parser, "int8_weight_bits")
    args = parser.parse_args()
    from edgeres.arch import trusting_arch_code
    from edgeres.defaults import BUILD_CALIB_IMAGES
    from edgeres.resolutions import parse_resolutions
    result = {"machine": machine_record(1, args.machine_note), "command": " ".join(["python", *sys.argv]),
              "calib": f"minmax, {BUILD_CALIB_IMAGES} train images", "rows": []}
    arch = trusting_arch_code(args.trust_arch) if args.trust_arch else contextlib.nullcontext()
    with arch, (contextlib.nullcontext(args.work) if args.work else tempfile.TemporaryDirectory()) as work:
        build_all(args.checkpoint, Path(work), args.res, args.data)
        for res in parse_resolutions(args.res):
            result["rows"].append(row(Path(work), res, args.data, args.limit))
            print(result["rows"][-1], flush=True)
    write_result(args.name, result, markdown(result))


if __name__ == "__main__":
    main()
