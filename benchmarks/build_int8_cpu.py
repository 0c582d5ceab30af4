"""ORT on CPU: FP32 vs `ort-int8` (U8 act / S8 w) vs `int8-qdq` (S8/S8) latency and top-1, per resolution.

Not a test: a measurement (issue 5). Exports an RS-Net checkpoint (default: trains a MobileNetV2 x0.5 RS-Net on
fashion-mnist-mini for --epochs into --work), builds the three targets with one calibration per resolution,
takes top-1 from build.json (ONNX Runtime, full val split) and times each graph at batch 1.

    nice -n 10 .venv/bin/python benchmarks/build_int8_cpu.py                       # trains ~5 min first
    .venv/bin/python benchmarks/build_int8_cpu.py --checkpoint runs/rs --threads 2
    .venv/bin/python benchmarks/build_int8_cpu.py --tiny-cnn        # 3-conv CNN from the tests, ~1 min

Writes benchmarks/results/build_int8_cpu.{json,md}. Latency: --warmup runs, then --runs timed runs of
session.run on one preprocessed image; p50 in ms (the median resists the noise of a shared machine).
"""
import argparse
import platform
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
TARGETS = ("ort-fp32", "ort-int8", "int8-qdq")


def checkpoint_for(args) -> Path:
    if args.checkpoint:
        return Path(args.checkpoint)
    out = Path(args.work) / "rsnet"
    if not (out / "checkpoint.json").is_file():
        from edgeres.train import TrainConfig, train
        train(TrainConfig(out=str(out), arch="mobilenet_v2", width_mult=0.5, small_input=True, res=args.res,
                          epochs=args.epochs, crop_scale=(0.5, 1.0), progress=False))
    return out


def latency_ms(path: Path, shape: list, threads: int, warmup: int, runs: int) -> dict:
    """p50/p90 ms of session.run on one random input of `shape` (values do not change CPU kernels' speed)."""
    from edgeres.runtimes.ort import ort_session
    session = ort_session(path, threads)
    feed = {session.get_inputs()[0].name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    for _ in range(warmup):
        session.run(None, feed)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feed)
        samples.append((time.perf_counter() - start) * 1e3)
    return {"p50_ms": round(float(np.median(samples)), 4), "p90_ms": round(float(np.percentile(samples, 90)), 4)}


def measure(args) -> dict:
    from edgeres.build import build
    from edgeres.export import export
    export_dir = Path(args.work) / "export"
    if args.tiny_cnn:  # the build tests' 3-conv CNN, trained in seconds (no RS-Net; for slow machines)
        import sys
        sys.path.insert(0, str(Path(__file__).parent.parent))
        from tests.test_build_support import make_tiny_export
        make_tiny_export(export_dir)
    else:
        export(checkpoint_for(args), export_dir, args.res)
    manifest = build(export_dir, export_dir, list(TARGETS), calib_images=args.calib_images,
                     calib_method=args.calib_method, recalibrate=True)
    rows = []
    for row in manifest["artifacts"]:
        timing = latency_ms(export_dir / row["file"], row["input"]["shape"], args.threads, args.warmup, args.runs)
        rows.append({k: row[k] for k in ("target", "resolution", "precision", "bytes", "macs")}
                    | {"top1": row["accuracy"]["top1"], "images": row["accuracy"]["count"]} | timing)
    return {"machine": machine(args.threads), "settings": vars(args), "rows": rows}


def machine(threads: int) -> dict:
    import onnxruntime
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "threads": threads, "onnxruntime": onnxruntime.__version__, "python": platform.python_version()}


def markdown(result: dict) -> str:
    fp32 = {r["resolution"]: r for r in result["rows"] if r["target"] == "ort-fp32"}
    lines = [f"ORT {result['machine']['onnxruntime']} on {result['machine']['cpu']}, "
             f"{result['machine']['threads']} threads, batch 1; top-1 on {result['rows'][0]['images']} val images; "
             f"calibration {result['settings']['calib_method']} on {result['settings']['calib_images']} train images.",
             "", "| target | res | precision | KB | top-1 % | Δ top-1 vs FP32 | p50 ms | speed-up vs FP32 |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(result["rows"], key=lambda r: (-r["resolution"], TARGETS.index(r["target"]))):
        base = fp32[r["resolution"]]
        lines.append(f"| {r['target']} | {r['resolution']} | {r['precision']} | {r['bytes'] / 1024:.0f} | "
                     f"{r['top1']:.2f} | {r['top1'] - base['top1']:+.2f} | {r['p50_ms']:.3f} | "
                     f"{base['p50_ms'] / r['p50_ms']:.2f}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="RS-Net checkpoint dir (default: train one in --work)")
    parser.add_argument("--work", default="/tmp/edgeres-build-int8-cpu")
    parser.add_argument("--tiny-cnn", action="store_true", help="use the build tests' tiny CNN (28/16 px) instead")
    parser.add_argument("--res", type=int, nargs="+", default=[28, 20, 12])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--calib-images", type=int, default=512)
    parser.add_argument("--calib-method", default="minmax")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--runs", type=int, default=500)
    args = parser.parse_args()
    result = measure(args)
    from edgeres._io import write_json, write_text
    write_json(RESULTS / "build_int8_cpu.json", result)
    write_text(RESULTS / "build_int8_cpu.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
