"""Which training recipe is stable: loss reduction (sum vs mean over resolutions) x lr, clipping, dropout.

Not a test: the measured comparison behind TrainConfig's defaults (issue 13). Every arm trains MobileNetV2
x0.5 (small input) on fashion-mnist-mini at 28,24,20,16,12 px with the same data, seed and schedule and is
scored on a holdout carved from the training split (never the test split). The setting is the one where
the old default (summed loss, lr 0.03) diverged: 3000 images, batch 128, 1 warm-up epoch + cosine.

    PYTHONPATH=. nice -n 10 .venv/bin/python benchmarks/rsnet_recipe.py --arms base,options

Writes benchmarks/results/rsnet_recipe.{json,md} (arms of earlier calls are kept, reruns reuse checkpoints).
"""
import argparse
import json
import time
from pathlib import Path

from rsnet_jobs import RESULTS, cpu_info, run_jobs, train_log

RES = (28, 24, 20, 16, 12)
COMMON = dict(data="fashion-mnist-mini", arch="mobilenet_v2", width_mult=0.5, small_input=True, res=RES,
              batch_size=128, warmup_epochs=1.0, crop_scale=(0.5, 1.0), holdout=1000, val_limit=1, progress=False)
# arm name -> TrainConfig overrides; every arm runs in both rsnet and parallel mode
ARMS = {
    "base": {"sum lr 0.03 (old default)": dict(loss_reduction="sum", lr=0.03),
             "mean lr 0.03": dict(loss_reduction="mean", lr=0.03),
             "mean lr 0.1": dict(loss_reduction="mean", lr=0.1),
             "mean lr 0.3": dict(loss_reduction="mean", lr=0.3)},
    "options": {"mean lr 0.3 clip 2": dict(loss_reduction="mean", lr=0.3, clip_grad_norm=2.0),
                "mean lr 0.1 dropout 0.2": dict(loss_reduction="mean", lr=0.1, dropout=0.2),
                "mean lr 0.1 seed 1": dict(loss_reduction="mean", lr=0.1, seed=1)},
}


def arm_jobs(args, names: list[str], work: Path) -> list[dict]:
    jobs = []
    for name in names:
        for mode in ("rsnet", "parallel"):
            tag = name.replace(" ", "_").replace("(", "").replace(")", "")
            jobs.append({**COMMON, "epochs": args.epochs, "train_limit": args.train_limit, "seed": 0,
                         **ARMS_FLAT[name], "mode": mode, "out": str(work / f"{mode}-{tag}")})
    return jobs


ARMS_FLAT = {name: o for group in ARMS.values() for name, o in group.items()}


def summarize(job: dict, seconds: float) -> dict:
    """Per-epoch holdout top-1 (mean over resolutions), final per-resolution top-1, losses, α."""
    failed = Path(job["out"] + ".failed")
    if failed.is_file():
        return {"failed": failed.read_text().strip(), "seconds": seconds}
    log = train_log(job["out"])
    per_epoch = [round(sum(r["top1_holdout"].values()) / len(RES), 2) for r in log]
    return {"holdout_mean_top1_per_epoch": per_epoch, "holdout_top1_final": log[-1]["top1_holdout"],
            "loss_total_per_epoch": [r["loss"]["total"] for r in log], "alpha": log[-1]["alpha"],
            "seconds": seconds}


def table(results: dict) -> str:
    lines = ["| arm | mode | holdout mean top-1 per epoch | final 28 / 24 / 20 / 16 / 12 | α (high -> low) |",
             "|---|---|---|---|---|"]
    for key, row in results["arms"].items():
        name, mode = key.rsplit(" | ", 1)
        if "failed" in row:
            lines.append(f"| {name} | {mode} | failed: {row['failed']} | | |")
            continue
        final = " / ".join(f"{row['holdout_top1_final'][str(r)]:.1f}" for r in RES)
        alpha = " / ".join(f"{a:.3f}" for a in row["alpha"]) if row["alpha"] else "-"
        lines.append(f"| {name} | {mode} | {' -> '.join(f'{v:.1f}' for v in row['holdout_mean_top1_per_epoch'])} "
                     f"| {final} | {alpha} |")
    s = results["setting"]
    note = (f"\nfashion-mnist-mini, {s['train_limit']} train images, top-1 % on a 1000-image holdout carved from the "
            f"train split (95% interval about ±2.5-3 points per cell), MobileNetV2 x0.5 small-input, "
            f"{s['epochs']} epochs, batch 128, SGD momentum 0.9, 1 warm-up epoch + cosine, wd 1e-4, crop 0.5-1, "
            f"seed 0 unless named. CPU: {results['cpu']['model']}, single-thread workers on a shared machine.\n")
    return "\n".join(lines) + "\n" + note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arms", default="base", help=f"comma-separated groups: {', '.join(ARMS)}")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train-limit", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", default="/tmp/edgeres-recipe")
    args = parser.parse_args()
    names = [n for g in args.arms.split(",") for n in ARMS[g]]
    jobs = arm_jobs(args, names, Path(args.work))
    start = time.perf_counter()
    seconds = run_jobs(jobs, args.workers)
    path = RESULTS / "rsnet_recipe.json"
    results = json.loads(path.read_text()) if path.is_file() else {"arms": {}}
    results.update(setting={"epochs": args.epochs, "train_limit": args.train_limit, **COMMON}, cpu=cpu_info())
    for name, job in zip([n for n in names for _ in (0, 1)], jobs):
        results["arms"][f"{name} | {job['mode']}"] = summarize(job, seconds[job["out"]])
    results.setdefault("wall_seconds", {})[args.arms] = round(time.perf_counter() - start, 1)
    from edgeres._io import write_json, write_text
    write_json(path, results)
    write_text(RESULTS / "rsnet_recipe.md", table(results))
    print(table(results))


if __name__ == "__main__":
    main()
