"""RS-Net vs parallel-only vs individual models vs an imported 28-only model, on fashion-mnist-mini.

Not a test: a measured comparison (issue 3). Every method gets the same epochs, data and seed. The lr of each
method family (multi-resolution: RS-Net and parallel; single-resolution: individual models) is the best of a
small sweep scored on a holdout carved from the training split; the test split is used only for the table.

    nice -n 10 .venv/bin/python benchmarks/rsnet_fashion_mnist.py            # ~15 min on 2 cores
    .venv/bin/python benchmarks/rsnet_fashion_mnist.py --epochs 1 --train-limit 1000 --work /tmp/quick

Writes benchmarks/results/rsnet_fashion_mnist.{json,md}. Training jobs run in 2 worker processes with one
thread each (on a shared 2-core machine, two single-thread jobs beat one two-thread job by far). Finished
checkpoints in --work are reused, so an interrupted run can be restarted.
"""
import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

RES = (28, 24, 20, 16, 12)
# the recipe its committed results were measured with (before issue 13 changed the defaults; see
# rsnet_recipe.py and rsnet_converged.py for the current recipe)
COMMON = dict(data="fashion-mnist-mini", arch="mobilenet_v2", width_mult=0.5, small_input=True,
              warmup_epochs=1.0, crop_scale=(0.5, 1.0), progress=False,  # crop 0.5-1: FACTS, 28 px objects
              loss_reduction="sum", dropout=0.2, bn_calib_images=0)
RESULTS = Path(__file__).parent / "results"


def job(kwargs: dict) -> tuple[str, float]:
    """Train one model in this worker process (one thread); returns (checkpoint dir, seconds)."""
    import torch
    torch.set_num_threads(1)
    from edgeres.train import TrainConfig, train
    if (Path(kwargs["out"]) / "checkpoint.json").is_file():
        return kwargs["out"], 0.0
    start = time.perf_counter()
    out = train(TrainConfig(**kwargs))
    return str(out), time.perf_counter() - start


def run_jobs(jobs: list[dict], workers: int) -> dict[str, float]:
    with ProcessPoolExecutor(workers) as pool:
        return dict(pool.map(job, jobs))


def sweep(args, work: Path) -> dict[str, float]:
    """Best lr per family, by mean holdout top-1 (all resolutions for RS-Net, 28 and 12 for I-Nets)."""
    lrs = [float(v) for v in args.sweep.split(",")]
    # the sweep keeps the main runs' schedule shape: warm-up over the same fraction of training
    base = {**COMMON, "epochs": args.sweep_epochs, "seed": args.seed, "holdout": args.holdout,
            "batch_size": args.batch_size, "train_limit": args.sweep_limit, "val_limit": 1,
            "warmup_epochs": args.sweep_epochs / args.epochs}
    jobs = [{**base, "lr": lr, "mode": "rsnet", "res": RES, "out": str(work / f"sweep-rsnet-{lr}")} for lr in lrs]
    jobs += [{**base, "lr": lr, "mode": "parallel", "res": (r,), "out": str(work / f"sweep-i{r}-{lr}")}
             for lr in lrs for r in (28, 12)]
    run_jobs(jobs, args.workers)
    scores = {"multi": {}, "single": {}}
    for lr in lrs:
        scores["multi"][lr] = _holdout_top1(work / f"sweep-rsnet-{lr}")
        scores["single"][lr] = (_holdout_top1(work / f"sweep-i28-{lr}") + _holdout_top1(work / f"sweep-i12-{lr}")) / 2
    return {family: max(s, key=s.get) for family, s in scores.items()} | {"scores": scores}


def _holdout_top1(checkpoint: Path) -> float:
    last = (checkpoint / "train_log.jsonl").read_text().strip().splitlines()[-1]
    top1 = json.loads(last)["top1_holdout"]
    return sum(top1.values()) / len(top1)


def main_runs(args, work: Path, lr: dict) -> dict[str, float]:
    base = {**COMMON, "epochs": args.epochs, "seed": args.seed, "holdout": args.holdout,
            "train_limit": args.train_limit, "batch_size": args.batch_size}
    jobs = [{**base, "mode": "rsnet", "res": RES, "lr": lr["multi"], "out": str(work / "rsnet")},
            {**base, "mode": "parallel", "res": RES, "lr": lr["multi"], "out": str(work / "parallel")}]
    jobs += [{**base, "mode": "parallel", "res": (r,), "lr": lr["single"], "out": str(work / f"individual-{r}")}
             for r in RES]
    return run_jobs(jobs, args.workers)


def imported(work: Path) -> dict[str, dict]:
    """The 28-only model as a user would bring it (a plain state dict) -> RS-Net, with and without recalibration."""
    import torch

    from edgeres.models.checkpoint import load_checkpoint
    from edgeres.importer import import_model
    model, _, _ = load_checkpoint(work / "individual-28")
    plain = {k.replace(".bn.28.", "."): v for k, v in model.state_dict().items()}
    torch.save(plain, work / "i28-plain.pt")
    rows, seconds = {}, {}
    for name, recal in (("I-28 imported, no recalibration", False), ("I-28 imported + BN recalibration", True)):
        start = time.perf_counter()
        out = import_model("mobilenet_v2", work / "i28-plain.pt", RES, work / f"import-{recal}", data=COMMON["data"],
                           width_mult=0.5,
                           small_input=True, recalibrate=recal, calib_images=512)
        seconds[name] = time.perf_counter() - start
        rows[name] = _top1(out)
    return rows, seconds


def _top1(checkpoint: Path, allow_nearest: bool = False, res=RES) -> dict[str, float]:
    """Test-split top-1 per resolution: recorded in checkpoint.json (full test split) or measured now."""
    from edgeres.evaluate import evaluate
    from edgeres.manifests.checkpoint import read_checkpoint_info
    recorded = read_checkpoint_info(checkpoint).metrics
    if all(str(r) in recorded for r in res):
        return {str(r): round(recorded[str(r)]["top1"], 2) for r in res}
    acc = evaluate(checkpoint, resolutions=res, allow_nearest=allow_nearest)
    return {str(r): round(a.top1, 2) for r, a in acc.items()}


def table(args, lr, rows, wall) -> str:
    head = "| method | models | " + " | ".join(f"{r} px" for r in RES) + " | mean |\n"
    head += "|---|---|" + "---|" * (len(RES) + 1) + "\n"
    lines = [f"| {name} | {n} | " + " | ".join(f"{row[str(r)]:.2f}" for r in RES)
             + f" | {sum(row.values()) / len(row):.2f} |" for name, (n, row) in rows.items()]
    notes = (f"\nfashion-mnist-mini (train on {args.train_limit or 'all remaining'} images after carving a "
             f"{args.holdout}-image holdout from the train split; "
             f"top-1 % on the 2000-image test split), MobileNetV2 x0.5 small-input, seed {args.seed}, "
             f"{args.epochs} epochs, batch {args.batch_size}, SGD momentum 0.9, 1 warm-up epoch + cosine, wd 1e-4, crop scale "
             f"0.5-1. lr: multi-resolution {lr['multi']}, single-resolution {lr['single']} (best mean holdout top-1 "
             f"of {args.sweep} after {args.sweep_epochs} epoch(s) on {args.sweep_limit} images; RS-Net scored for the "
             f"multi-resolution family, I-28/I-12 for the single-resolution one). Wall time "
             f"{wall / 60:.1f} min, {args.workers} single-thread workers on a shared 2-core CPU.\n")
    return head + "\n".join(lines) + "\n" + notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--holdout", type=int, default=1000)
    parser.add_argument("--train-limit", type=int, default=6000)
    parser.add_argument("--sweep", default="0.01,0.03,0.1")
    parser.add_argument("--sweep-epochs", type=int, default=2)
    parser.add_argument("--sweep-limit", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", default="/tmp/edgeres-bench")
    args = parser.parse_args()
    import torch
    torch.set_num_threads(1)  # evaluation and import in this process: one thread, as the workers
    work, start = Path(args.work), time.perf_counter()
    lr = sweep(args, work)
    print("lr choice:", json.dumps(lr), flush=True)
    seconds = main_runs(args, work, lr)
    print("trained:", json.dumps(seconds), flush=True)
    rows = {"RS-Net (parallel + MRED)": (1, _top1(work / "rsnet")), "parallel only": (1, _top1(work / "parallel")),
            "individual I-Nets": (5, {str(r): _top1(work / f"individual-{r}", res=(r,))[str(r)] for r in RES}),
            "I-28 at every res (I-max)": (1, _top1(work / "individual-28", allow_nearest=True))}
    imports, import_seconds = imported(work)
    rows.update({name: (1, row) for name, row in imports.items()})
    wall = time.perf_counter() - start
    result = {"resolutions": list(RES), "seed": args.seed, "epochs": args.epochs, "lr": lr, "settings": vars(args),
              "top1": {name: row for name, (_, row) in rows.items()}, "models": {n: m for n, (m, _) in rows.items()},
              "train_seconds": seconds, "import_seconds": import_seconds, "wall_seconds": round(wall, 1),
              "ensemble_weights": json.loads((work / "rsnet" / "checkpoint.json").read_text())["ensemble_weights"]}
    from edgeres._io import write_json, write_text
    write_json(RESULTS / "rsnet_fashion_mnist.json", result)
    write_text(RESULTS / "rsnet_fashion_mnist.md", table(args, lr, rows, wall))
    print(table(args, lr, rows, wall))


if __name__ == "__main__":
    main()
