"""`edgeres train`: RS-Nets (parallel training + MRED), parallel-only, or one individual model per resolution.

`train(TrainConfig(...))` is the Python twin of the command. Everything a user can get wrong is checked
before the first step (one-line EdgeresError); the checkpoint directory appears only when training ends
(atomically). While training, `<out>.resume/` holds the resume file and the per-epoch log.
"""
import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from edgeres import _optional
from edgeres._io import check_out_dir, write_json
from edgeres.errors import EdgeresError, EdgeresUsageError
from edgeres.resolutions import parse_resolutions

MODES = ("rsnet", "parallel", "individual")
DEVICES = re.compile(r"auto|cpu|cuda(:\d+)?")
INDIVIDUAL_MARKERS = ("summary.json", "individual-*")  # what a (partial) individual-mode output holds


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Defaults follow the RS-Nets recipe where it transfers, FACTS probes where it did not."""

    out: str  # checkpoint directory (individual mode: a directory of individual-<res> checkpoints)
    data: str = "fashion-mnist-mini"  # built-in name or ImageFolder root (train/, val/)
    arch: str = "mobilenet_v2"  # see edgeres.arch.ARCH_HELP: torchvision NAME, timm:NAME or module.path:factory
    arch_kwargs: dict = field(default_factory=dict)  # the architecture builder's keyword arguments (JSON)
    res: tuple[int, ...] = (224, 192, 160, 128, 96)  # the paper's ImageNet set; stored high -> low
    mode: str = "rsnet"  # rsnet = parallel + MRED (Sec. 3.3); parallel = Σ CE only; individual = I-Nets
    kd: str = "full"  # full MRED (ensemble + top-down, λ = 2/(S+1)) or vanilla (ensemble only, λ = 1)
    width_mult: float = 1.0
    small_input: bool = False  # 3x3 stride-1 stem, no max-pool: for 12-64 px images
    quant: str | None = None  # "lq:w2a2": LQ-Nets quantizers shared by all resolutions
    epochs: int = 10
    batch_size: int = 128
    # benchmarks/results/rsnet_recipe.md (5 resolutions, 3000 images, batch 128): the old default (sum, 0.03)
    # left the training loss at chance in epoch 2 in both modes; mean 0.03 lowered it every epoch in both;
    # mean 0.1 trained at batch 128 but diverged at batch 64 (x0.25, 768 images).
    lr: float = 0.03
    # mean: Σ CE and L_dis divided by S, so the network's step does not grow with S and I-Nets (S = 1) and
    # RS-Nets share one lr; sum: the authors' code (mean at lr η = sum at η / S, weight decay aside)
    loss_reduction: str = "mean"
    warmup_epochs: float = 1.0
    momentum: float = 0.9  # SGD momentum as in RS-Nets Sec. 4.1
    # on conv/linear weights and α (the authors' optimizer decays α with the weights' lr); BN and biases not
    weight_decay: float = 1e-4
    # precise BN: re-estimate BN statistics from this many training images before each evaluation (0: keep the
    # running averages, which lag the weights mid-training; see train/validate.reestimate_bn)
    bn_calib_images: int = 256
    dropout: float = 0.0  # before the classifier: the authors' MobileNetV2 has none (torchvision's has 0.2)
    clip_grad_norm: float | None = None  # max L2 norm of the network's gradient per step; None: no clipping
    label_smoothing: float = 0.0
    crop_scale: tuple[float, float] = (0.08, 1.0)  # RandomResizedCrop area range; (0.5, 1) suits 28 px images
    seed: int = 0
    workers: int = 0  # DataLoader worker processes; 0 decodes in the training process
    holdout: int = 0  # images carved from the training split for per-epoch validation (never the test split)
    train_limit: int | None = None  # use only this many training images (quick runs, tests)
    val_limit: int | None = None  # evaluate on only this many val images
    device: str = "auto"
    init: str | None = None  # start from this checkpoint's weights
    resume: bool = False  # continue from <out>.resume/resume.pt
    progress: bool = True  # rich progress bar on stderr (rank 0 only)
    extra: dict = field(default_factory=dict)  # free-form notes recorded in checkpoint.json "training"

    def __post_init__(self) -> None:
        object.__setattr__(self, "res", parse_resolutions(self.res))
        object.__setattr__(self, "crop_scale", tuple(float(v) for v in self.crop_scale))
        _check_choices(self)
        _check_numbers(self)

    def settings(self) -> dict:
        """What checkpoint.json records under "training"."""
        skip = {"out", "resume", "progress", "workers", "extra", "device"}
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items() if k not in skip} | self.extra


def _check_choices(config: TrainConfig) -> None:
    from edgeres.train.losses import KD_KINDS, REDUCTIONS
    if config.mode not in MODES:
        raise EdgeresUsageError(f"unknown training mode {config.mode!r}: choose one of {', '.join(MODES)}")
    if config.kd not in KD_KINDS:
        raise EdgeresUsageError(f"unknown distillation {config.kd!r}: choose one of {', '.join(KD_KINDS)}")
    if config.loss_reduction not in REDUCTIONS:
        raise EdgeresUsageError(f"unknown loss reduction {config.loss_reduction!r}: choose one of {', '.join(REDUCTIONS)}")
    if not DEVICES.fullmatch(str(config.device)):
        raise EdgeresUsageError(f"--device {config.device!r} is not a training device: use auto, cpu, cuda or cuda:N")


def _check_numbers(config: TrainConfig) -> None:
    low, high = config.crop_scale
    problems = [(config.epochs >= 1, f"epochs must be >= 1, got {config.epochs}"),
                (config.batch_size >= 2, f"batch size must be >= 2 (BatchNorm), got {config.batch_size}"),
                (config.lr > 0 and math.isfinite(config.lr), f"lr must be a finite number > 0, got {config.lr}"),
                (0 <= config.warmup_epochs <= config.epochs, f"warm-up must lie in 0..epochs, got {config.warmup_epochs}"),
                (config.weight_decay >= 0, f"weight decay must be >= 0, got {config.weight_decay}"),
                (0 <= config.dropout < 1, f"dropout must lie in [0, 1), got {config.dropout}"),
                (config.clip_grad_norm is None or config.clip_grad_norm > 0,
                 f"gradient clipping norm must be > 0, got {config.clip_grad_norm}"),
                (0 <= config.label_smoothing < 1, f"label smoothing must lie in [0, 1), got {config.label_smoothing}"),
                (0 < low <= high <= 1, f"crop scale must satisfy 0 < min <= max <= 1, got {config.crop_scale}"),
                (config.holdout >= 0 and config.workers >= 0 and config.bn_calib_images >= 0,
                 "holdout, workers and BN calibration images must be >= 0")]
    for ok, message in problems:
        if not ok:
            raise EdgeresUsageError(message)


def _check_out_and_device(config: TrainConfig) -> None:
    """Before any data is read: an --out this run may write, and the device it asks for."""
    if config.mode == "individual":
        check_out_dir(config.out, INDIVIDUAL_MARKERS, "train --mode individual")
    else:
        from edgeres.models.checkpoint import check_checkpoint_out
        check_checkpoint_out(config.out)
    if str(config.device).startswith("cuda"):
        import torch
        index, count = int(config.device.partition(":")[2] or 0), torch.cuda.device_count()
        if index >= count:
            seen = "no CUDA GPU is visible" if count == 0 else f"only {count} CUDA GPU(s) are visible"
            raise EdgeresError(f"--device {config.device}: {seen} here: use --device cpu (or auto)")


def train(config: TrainConfig) -> Path:
    """Train as `config` says; return the checkpoint directory (individual mode: the directory of them).

    Under `torchrun --nproc_per_node N -m edgeres train ...` the same call runs data-parallel (DDP).
    """
    _optional.torch("training")
    from edgeres.train import distributed
    from edgeres.train import loop as train_loop

    if config.mode == "individual" and config.init and len(config.res) > 1:
        raise EdgeresUsageError("--init with --mode individual needs a single --res (one model per run)")
    _check_out_and_device(config)
    ctx = distributed.setup(config.device)
    try:
        if config.mode != "individual":
            return train_loop.run(config, ctx)  # run() validates everything before it trains
        train_loop.validate(config)  # every resolution checked before the first model trains
        out, runs = Path(config.out), {}
        for r in config.res:  # same options, one resolution each: the paper's I-Nets baselines
            sub = replace(config, res=(r,), mode="parallel", out=str(out / f"individual-{r}"))
            # --resume: finished models are kept, the interrupted one continues, the rest start afresh
            sub = replace(sub, resume=config.resume and (train_loop.state_dir(sub.out) / "resume.pt").is_file())
            if not (config.resume and (Path(sub.out) / "checkpoint.json").is_file()):
                train_loop.run(sub, ctx, label=f"individual {r}px")
            runs[r] = Path(sub.out)
        return _write_summary(out, runs, ctx.main)
    finally:
        distributed.teardown(ctx)


def _write_summary(out: Path, runs: dict[int, Path], main: bool) -> Path:
    from edgeres.manifests.checkpoint import read_checkpoint_info
    if main:  # under torchrun only rank 0 writes
        rows = {str(r): {"checkpoint": p.name, **read_checkpoint_info(p).metrics.get(str(r), {})}
                for r, p in runs.items()}
        write_json(out / "summary.json", {"mode": "individual", "models": rows})
    return out

