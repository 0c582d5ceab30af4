"""The main job on the embedded default: bundled data, CPU, a few minutes, every stage once.

train (RS-Net + MRED) -> export (one ONNX per resolution) -> build (ort-fp32, ort-int8) -> bench (ORT CPU)
-> cascade (low resolution first) -> report (tables, latency-vs-MACs and accuracy-vs-latency plots).
Each stage is the same library call a user makes; outputs land in one folder.
"""
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

log = logging.getLogger("edgeres.demo")


@dataclass(frozen=True)
class DemoConfig:
    out: str = "demo"
    data: str = "fashion-mnist-mini"
    res: tuple[int, ...] = (28, 24, 20, 16, 12)
    arch: str = "mobilenet_v2"
    width_mult: float = 0.5  # small enough for 2 CPU cores, big enough to learn Fashion-MNIST
    epochs: int = 3
    # lr 0.1 (mean reduction) and crops of 80-100% of the image: after one epoch 74.4/73.8/73.4/64.6/64.3% top-1
    # at 28..12 px, where lr 0.1 with 50-100% crops gave 56.7..46.2 (fashion-mnist-mini's test split, 2000 images;
    # README "Measured" has the finished demo's numbers)
    lr: float | None = 0.1
    crop_scale: tuple[float, float] = (0.8, 1.0)
    train_limit: int | None = None
    val_limit: int | None = None  # images for the checkpoint's own metrics (None: the whole test split)
    targets: tuple[str, ...] = ("ort-fp32", "ort-int8")
    calib_images: int = 256
    eval_images: int | None = None  # None: the whole 2000-image test split
    bench_min_time_s: float = 0.5
    bench_min_runs: int = 20
    cascade_max_drop: float = 0.5
    seed: int = 0
    progress: bool = True


DEMO_MARKERS = ("checkpoint/checkpoint.json", "checkpoint.resume")  # a previous (maybe interrupted) demo
TOY = dict(res=(28, 20, 12), width_mult=0.25, epochs=1, train_limit=256, val_limit=200, calib_images=32, eval_images=200,
           bench_min_time_s=0.05, bench_min_runs=5)


def toy_config(out: str) -> DemoConfig:
    """The same pipeline at toy size (tests): seconds, not minutes; the numbers mean nothing."""
    return replace(DemoConfig(out=out), progress=False, **TOY)


def run_demo(config: DemoConfig) -> dict[str, Path]:
    """Run every stage into config.out; return where each stage's output went."""
    from edgeres._io import check_out_dir
    out = check_out_dir(config.out, DEMO_MARKERS, "demo")  # a user's folder is refused before training
    paths = {"checkpoint": out / "checkpoint", "export": out / "export", "build": out / "build",
             "bench": out / "bench", "cascade": out / "cascade", "report": out / "report"}
    for name, stage in (("checkpoint", _train), ("export", _export), ("build", _build), ("bench", _bench),
                        ("cascade", _cascade), ("report", _report)):
        start = time.perf_counter()
        stage(config, paths)
        log.warning("demo: %s done in %.1f s -> %s", name, time.perf_counter() - start, paths[name])
    return paths


def _train(config: DemoConfig, paths: dict[str, Path]) -> None:
    from edgeres.train import TrainConfig, train
    lr = {} if config.lr is None else {"lr": config.lr}
    train(TrainConfig(out=str(paths["checkpoint"]), data=config.data, arch=config.arch, res=config.res,
                      width_mult=config.width_mult, small_input=True, epochs=config.epochs,
                      crop_scale=config.crop_scale, train_limit=config.train_limit, val_limit=config.val_limit,
                      seed=config.seed, progress=config.progress, device="cpu", **lr))


def _export(config: DemoConfig, paths: dict[str, Path]) -> None:
    from edgeres.export import export
    export(paths["checkpoint"], paths["export"], resolutions=config.res)


def _build(config: DemoConfig, paths: dict[str, Path]) -> None:
    from edgeres.build import build
    build(paths["export"], paths["build"], list(config.targets), calib_images=config.calib_images,
          eval_images=config.eval_images)


def _bench(config: DemoConfig, paths: dict[str, Path]) -> None:
    from edgeres.bench import bench
    bench(paths["build"], device="cpu", min_time_s=config.bench_min_time_s, min_runs=config.bench_min_runs,
          out=paths["bench"])


def _cascade(config: DemoConfig, paths: dict[str, Path]) -> None:
    from edgeres.choose.compare import evaluate_cascade
    evaluate_cascade(paths["build"], max_drop=config.cascade_max_drop, target=config.targets[0],
                     limit=config.eval_images, out=paths["cascade"])


def _report(config: DemoConfig, paths: dict[str, Path]) -> None:
    from edgeres.report import report
    report([paths["bench"] / "bench.json"], paths["report"], cascades=[paths["cascade"] / "cascade.json"])
