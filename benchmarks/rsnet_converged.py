"""RS-Net vs parallel vs vanilla MRED vs I-Nets vs an imported 28-only model, on full Fashion-MNIST.

Not a test: the measured comparison of issue 13. Data: Debian's `dataset-fashion-mnist` (installed with
apt-get when missing), written once as an ImageFolder under --work. The LAST 10 000 train and LAST 2 000 test
images of those files are reserved for independent checks: `usable_indices` asserts they are never read.

Every arm gets the same data, schedule and budget; each arm's lr is the best of the same sweep (same lrs,
epochs and images), scored on a holdout carved from the training images; the test images score only the
final table. RS-Net and parallel run --seeds seeds (mean ± sample std per resolution); single-seed arms carry
the 95% binomial interval of the test set instead.

    # the full version, whose results are committed (wall time in its notes: about an hour on 2 cores)
    PYTHONPATH=. nice -n 10 .venv/bin/python benchmarks/rsnet_converged.py
    # a small MobileNetV2 x0.25 configuration (minutes; not converged)
    PYTHONPATH=. nice -n 10 .venv/bin/python benchmarks/rsnet_converged.py --reduced

Writes benchmarks/results/rsnet_converged[_reduced].{json,md}; finished checkpoints in --work are reused.
"""
import argparse
import json
import math
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
from rsnet_jobs import RESULTS, cpu_info, run_jobs, train_log

RES = (28, 24, 20, 16, 12)
SRC = Path("/usr/share/datasets/fashion-mnist")
FILES = {"train": ("train", 60_000), "val": ("t10k", 10_000)}  # split -> (IDX prefix, images in the file)
RESERVED = {"train": 10_000, "val": 2_000}  # the last images of each file: never read here
CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")
# The CNN of fmnist_cnn.py (why not MobileNetV2: see there); --arch mobilenet_v2 --width-mult 0.5 runs the other
FULL = {"arch": "fmnist_cnn:build", "width_mult": 1.0, "train_limit": 30_000, "epochs": 4, "sweep_limit": 5_000,
        "sweep_epochs": 3, "holdout": 2_000, "test_images": 8_000, "seeds": 3, "finetune_epochs": 1,
        "lrs": "0.03,0.1,0.3", "crop_min": 0.8}
REDUCED = {"arch": "mobilenet_v2", "width_mult": 0.25, "train_limit": 2_000, "epochs": 4, "sweep_limit": 1_000,
           "sweep_epochs": 3, "holdout": 1_000, "test_images": 4_000, "seeds": 3, "finetune_epochs": 1,
           "lrs": "0.1,0.3", "crop_min": 0.5}
CNN_KWARGS = {"num_classes": len(CLASSES), "in_channels": 3, "width": 32}  # ImageFolder PNGs load as RGB


def usable_indices(split: str, wanted: int) -> np.ndarray:
    """The first `wanted` images of `split`'s file; asserts none of the reserved last images is among them."""
    total = FILES[split][1]
    indices = np.arange(min(wanted, total - RESERVED[split]))
    assert indices.max() < total - RESERVED[split], f"{split}: reserved images {total - RESERVED[split]}.. touched"
    return indices


def ensure_dataset(root: Path, test_images: int) -> Path:
    """An ImageFolder (grayscale PNG) of the usable train images and the first `test_images` test images."""
    from PIL import Image

    from edgeres.datasets.rebuild import read_idx
    marker = root / "done.json"
    if marker.is_file():
        return root
    if not SRC.is_dir():
        subprocess.run(["apt-get", "install", "-y", "dataset-fashion-mnist"], check=True)
    counts = {}
    for split, wanted in (("train", FILES["train"][1]), ("val", test_images)):
        prefix = FILES[split][0]
        keep = usable_indices(split, wanted)
        images = read_idx(SRC / f"{prefix}-images-idx3-ubyte.gz")[keep]
        labels = read_idx(SRC / f"{prefix}-labels-idx1-ubyte.gz")[keep]
        for cls in CLASSES:
            (root / split / cls).mkdir(parents=True, exist_ok=True)
        for i, (image, label) in enumerate(zip(images, labels)):
            Image.fromarray(image).save(root / split / CLASSES[label] / f"{i:05d}.png")
        counts[split] = len(keep)
    marker.write_text(json.dumps(counts) + "\n")
    return root


def base_config(args, data: Path, seed: int, sweep: bool) -> dict:
    """The options every arm shares; the sweep scores on the holdout and never reads the test images."""
    return {"data": str(data), **arch_options(args), "batch_size": 128, "warmup_epochs": 1.0,
            "crop_scale": (args.crop_min, 1.0), "holdout": args.holdout,
            "epochs": args.sweep_epochs if sweep else args.epochs, "seed": seed, "progress": False,
            "train_limit": args.sweep_limit if sweep else args.train_limit, **({"val_limit": 1} if sweep else {})}


def arch_options(args) -> dict:
    """TrainConfig's architecture fields: MobileNetV2 with its width and small-input stem, or a factory."""
    if args.arch == "mobilenet_v2":
        return {"arch": args.arch, "width_mult": args.width_mult, "small_input": True}
    return {"arch": args.arch, "arch_kwargs": CNN_KWARGS}


def arch_text(args) -> str:
    if args.arch == "mobilenet_v2":
        return f"MobileNetV2 x{args.width_mult} small-input"
    return f"the 5-conv BN CNN of benchmarks/fmnist_cnn.py ({args.arch}, {json.dumps(CNN_KWARGS)})"


# arm -> the TrainConfig fields that make it; "individual" trains one model per resolution
TRAINED_ARMS = {"RS-Net": {"mode": "rsnet", "kd": "full"}, "parallel": {"mode": "parallel"},
                "vanilla MRED": {"mode": "rsnet", "kd": "vanilla"}, "I-Nets": {"mode": "individual"}}


def arm_job(args, data: Path, work: Path, arm: str, lr: float, seed: int, sweep: bool) -> dict:
    tag = f"{'sweep-' if sweep else ''}{arm.replace(' ', '_')}-lr{lr}-seed{seed}"
    return {**base_config(args, data, seed, sweep), **TRAINED_ARMS[arm], "res": RES, "lr": lr,
            "out": str(work / tag)}


def holdout_mean(out: str, arm: str) -> float:
    """Mean holdout top-1 over the resolutions after the last epoch (I-Nets: over their five models)."""
    if arm == "I-Nets":
        return statistics.mean(holdout_mean(str(Path(out) / f"individual-{r}"), "one") for r in RES)
    top1 = train_log(out)[-1]["top1_holdout"]
    return statistics.mean(top1.values())


def sweep(args, data: Path, work: Path) -> dict:
    """Best lr per trained arm on the holdout, every arm with the same lrs, images and epochs."""
    lrs = [float(v) for v in args.lrs.split(",")]
    jobs = {(arm, lr): arm_job(args, data, work, arm, lr, 0, True) for arm in TRAINED_ARMS for lr in lrs}
    run_jobs(list(jobs.values()), args.workers)
    scores = {arm: {lr: _score(jobs[arm, lr]["out"], arm) for lr in lrs} for arm in TRAINED_ARMS}
    return {"scores": scores, "best": {arm: max(s, key=s.get) for arm, s in scores.items()}}


def _score(out: str, arm: str) -> float:
    return -1.0 if Path(out + ".failed").is_file() else round(holdout_mean(out, arm), 2)


def imported(args, data: Path, work: Path, i28: Path, tag: str, finetune_lr: float | None) -> Path:
    """I-28 as a user brings it (plain state dict) -> RS-Net with BN recalibration, optionally + MRED fine-tune."""
    import torch

    from edgeres.models.checkpoint import load_checkpoint
    from edgeres.importer import import_model
    out = work / tag
    if (out / "checkpoint.json").is_file():
        return out
    model, _, _ = load_checkpoint(i28)
    plain = work / f"{tag}-plain.pt"
    torch.save({k.replace(".bn.28.", "."): v for k, v in model.state_dict().items()}, plain)
    options = {}
    if finetune_lr is not None:
        config = base_config(args, data, 0, tag.startswith("sweep"))
        options = {k: config[k] for k in ("batch_size", "crop_scale", "holdout", "train_limit", "seed", "progress")}
        options |= {"lr": finetune_lr, "warmup_epochs": 0.0, "val_limit": config.get("val_limit")}
    arch = arch_options(args)
    return import_model(args.arch, plain, RES, out, data=str(data), width_mult=arch.get("width_mult", 1.0),
                        small_input=arch.get("small_input", False), arch_kwargs=arch.get("arch_kwargs"),
                        recalibrate=True, calib_images=512,
                        finetune_epochs=args.finetune_epochs if finetune_lr is not None else 0,
                        finetune_options=options, measure=finetune_lr is None or not tag.startswith("sweep"),
                        val_limit=args.test_images)


def finetune_sweep(args, data: Path, work: Path, best_i28_lr: float) -> dict:
    """The fine-tune arm's lr, by the same sweep: from the sweep's I-28, same lrs, scored on the holdout."""
    i28 = work / f"sweep-I-Nets-lr{best_i28_lr}-seed0" / "individual-28"
    lrs = [float(v) for v in args.lrs.split(",")]
    scores = {lr: round(statistics.mean(train_log(imported(args, data, work, i28, f"sweep-finetune-lr{lr}", lr))
                                        [-1]["top1_holdout"].values()), 2) for lr in lrs}
    return {"scores": scores, "best": max(scores, key=scores.get)}


def main_runs(args, data: Path, work: Path, best: dict) -> dict[str, list[str]]:
    """Trained arms at their swept lr: RS-Net and parallel with every seed, the others with seed 0."""
    seeded = {"RS-Net": range(args.seeds), "parallel": range(args.seeds)}
    jobs = {arm: [arm_job(args, data, work, arm, best[arm], s, False) for s in seeded.get(arm, [0])]
            for arm in TRAINED_ARMS}
    run_jobs([j for arm_jobs in jobs.values() for j in arm_jobs], args.workers)
    return {arm: [j["out"] for j in arm_jobs] for arm, arm_jobs in jobs.items()}


def test_top1(checkpoint: str | Path, res=RES, allow_nearest: bool = False) -> dict[str, float]:
    """Test top-1 % per resolution: as recorded in checkpoint.json (all test images), else measured now."""
    from edgeres.evaluate import evaluate
    from edgeres.manifests.checkpoint import read_checkpoint_info
    recorded = read_checkpoint_info(checkpoint).metrics
    if all(str(r) in recorded for r in res) and not allow_nearest:
        return {str(r): recorded[str(r)]["top1"] for r in res}
    return {str(r): a.top1 for r, a in evaluate(checkpoint, resolutions=res, allow_nearest=allow_nearest).items()}


def arm_rows(outs: dict[str, list[str]], work: Path, ft: Path, recal: Path) -> dict[str, dict]:
    """{arm: {"runs": [{res: top1}], "ensemble": [top1], "alpha": [[w]]}} for every arm of the table."""
    rows = {}
    for arm in ("RS-Net", "parallel", "vanilla MRED"):
        metas = [json.loads((Path(o) / "checkpoint.json").read_text()) for o in outs[arm]]
        rows[arm] = {"runs": [test_top1(o) for o in outs[arm]],
                     "ensemble": [(m["training"].get("ensemble_val") or {}).get("top1") for m in metas],
                     "alpha": [m["ensemble_weights"] for m in metas]}
    inets = Path(outs["I-Nets"][0])
    rows["I-Nets"] = {"runs": [{str(r): test_top1(inets / f"individual-{r}", (r,))[str(r)] for r in RES}]}
    rows["I-max (I-28 at every res)"] = {"runs": [test_top1(inets / "individual-28", allow_nearest=True)]}
    rows["I-max imported + BN recalibration"] = {"runs": [test_top1(recal)]}
    rows["import + recalibration + MRED fine-tune"] = {"runs": [test_top1(ft)]}
    return rows


def cell(values: list[float], n_test: int) -> str:
    """mean ± sample std over seeds, or one value ± its 95% binomial interval on n_test images."""
    if len(values) > 1:
        return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"
    p = values[0] / 100
    return f"{values[0]:.2f} (±{196 * math.sqrt(p * (1 - p) / n_test):.1f})"


def table(rows: dict, result: dict) -> str:
    n = result["settings"]["test_images"]
    head = ["| method | seeds | " + " | ".join(f"{r} px" for r in RES) + " | ensemble | α (high -> low) |",
            "|---|---|" + "---|" * (len(RES) + 2)]
    for arm, row in rows.items():
        cells = [cell([run[str(r)] for run in row["runs"]], n) for r in RES]
        ens = [e for e in row.get("ensemble", []) if e is not None]
        alphas = [a for a in row.get("alpha", []) if a]
        alpha = np.mean(alphas, axis=0) if alphas else None
        head.append(f"| {arm} | {len(row['runs'])} | " + " | ".join(cells) + f" | {cell(ens, n) if ens else '-'} | "
                    + (" / ".join(f"{a:.2f}" for a in alpha) if alpha is not None else "-") + " |")
    s = result["settings"]
    notes = (f"\n{'REDUCED configuration (not the full benchmark). ' if s['reduced'] else ''}Fashion-MNIST "
             f"(Debian dataset-fashion-mnist; the last 10 000 train / 2 000 test images never read): train on "
             f"{s['train_limit']} of the first 50 000 train images after a {s['holdout']}-image holdout, top-1 % on "
             f"the first {n} test images. {arch_text(argparse.Namespace(**s))}, {s['epochs']} epochs, batch "
             f"128, SGD 0.9, 1 warm-up epoch + cosine, wd 1e-4, crop {s['crop_min']}-1, mean loss reduction (the default). "
             f"lr per arm = best mean holdout top-1 of {s['lrs']} after {s['sweep_epochs']} epochs on "
             f"{s['sweep_limit']} images: {json.dumps(result['lr'])}. Multi-seed cells: mean ± sample std over "
             f"seeds 0..{s['seeds'] - 1}; single-seed cells: value (± 95% binomial interval on {n} images). "
             f"Fine-tune: {s['finetune_epochs']} MRED epoch(s) after import + recalibration (512 images). "
             f"CPU: {result['cpu']['model']}, {s['workers']} single-thread workers; wall "
             f"{result['wall_seconds'] / 60:.1f} min.\n")
    return "\n".join(head) + "\n" + notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reduced", action="store_true", help=f"the small configuration: {json.dumps(REDUCED)}")
    for key, value in FULL.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", default="/tmp/edgeres-converged")
    args = parser.parse_args()
    for key, value in (REDUCED if args.reduced else FULL).items():
        setattr(args, key, value if getattr(args, key) is None else getattr(args, key))
    import torch

    from edgeres.arch import trusting_arch_code
    torch.set_num_threads(1)  # evaluation and import here: one thread, as the workers
    with trusting_arch_code(args.arch):  # the benchmark's own CNN, named on its command line
        run(args)


def run(args) -> None:
    start, work = time.perf_counter(), Path(args.work) / ("reduced" if args.reduced else "full")
    data = ensure_dataset(Path(args.work) / f"fashion-mnist-test{args.test_images}", args.test_images)
    lr = sweep(args, data, work)
    lr["finetune"] = finetune_sweep(args, data, work, lr["best"]["I-Nets"])
    print("lr:", json.dumps(lr), flush=True)
    outs = main_runs(args, data, work, lr["best"])
    i28 = Path(outs["I-Nets"][0]) / "individual-28"
    recal = imported(args, data, work, i28, "import-recal", None)
    ft = imported(args, data, work, i28, "import-recal-finetune", lr["finetune"]["best"])
    rows = arm_rows(outs, work, ft, recal)
    result = {"settings": vars(args), "lr": {**lr["best"], "finetune": lr["finetune"]["best"]}, "sweep": lr,
              "top1": rows, "cpu": cpu_info(), "wall_seconds": round(time.perf_counter() - start, 1)}
    from edgeres._io import write_json, write_text
    name = "rsnet_converged_reduced" if args.reduced else "rsnet_converged"
    write_json(RESULTS / f"{name}.json", result)
    write_text(RESULTS / f"{name}.md", table(rows, result))
    print(table(rows, result))


if __name__ == "__main__":
    main()
