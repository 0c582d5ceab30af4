"""The training loop of one model: SGD + warm-up/cosine, MRED loss, per-epoch log, exact resume, DDP.

Layout while training: `<out>.resume/resume.pt` (model, α, optimizer, scheduler, scaler, epoch, RNG states;
rewritten atomically after every epoch) and `<out>.resume/train_log.jsonl`. At the end the checkpoint
directory `<out>` is written atomically, the log is copied into it, and `<out>.resume/` is removed.
"""
import io
import json
import logging
import math
import random
import shutil
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from edgeres._io import write_bytes, write_text
from edgeres.errors import EdgeresError
from edgeres.manifests.checkpoint import CheckpointInfo
from edgeres.models.checkpoint import save_checkpoint
from edgeres.train import distributed
from edgeres.train.augment import MultiResolutionTrainSet
from edgeres.train.losses import ensemble_weights, mred_terms
from edgeres.train.setup import (
    MultiResolutionNet,
    arch_spec,
    build_checked,
    data_label,
    load_init,
    set_classifier_dropout,
    split_data,
)
from edgeres.train.validate import EvalSet, calibration_set, measure, reestimate_bn

log = logging.getLogger("edgeres.train")
RESUME_FIELDS = ("settings", "model", "optimizer", "scheduler", "scaler", "epoch", "seconds", "records", "rng")
LOSS_KEYS = ("ce", "ens", "dis", "total")


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Multiplier of the base lr at optimizer step `step` (0-based): linear warm-up, then cosine to 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def state_dir(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".resume")


def validate(config):
    """Every check that needs data or a model, before anything is trained or written; returns (data, spec)."""
    data = split_data(config.data, config.holdout, config.train_limit, config.val_limit)
    spec = arch_spec(config.arch, data.info, config.width_mult, config.small_input, config.quant, config.arch_kwargs)
    net = set_classifier_dropout(build_checked(spec, config.res), config.dropout)
    if config.init:
        load_init(net, config.init, spec, config.res)
    return data, spec, net


def run(config, ctx: distributed.Dist, label: str = "") -> Path:
    """Train one model as `config` says (mode rsnet or parallel) and write its checkpoint to config.out."""
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    np.random.seed(config.seed)
    data, spec, net = validate(config)
    module = MultiResolutionNet(net, config.res, ensemble=config.mode == "rsnet").to(ctx.device)
    trainer = _Trainer(config, ctx, module, data, label)
    trainer.fit()
    return trainer.finish(spec)


class _Trainer:
    """Holds the mutable state of one run (model, optimizer, schedule, log) between epochs."""

    def __init__(self, config, ctx, module: MultiResolutionNet, data, label: str):
        self.config, self.ctx, self.module, self.data, self.label = config, ctx, module, data, label
        self.loader, self.sampler = _make_loader(data.train, config, ctx)
        self.optimizer = _make_optimizer(module, config)
        steps = len(self.loader) * config.epochs
        warmup = round(len(self.loader) * config.warmup_epochs)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, partial(lr_factor, warmup_steps=warmup, total_steps=steps))
        self.amp = ctx.device.startswith("cuda")  # AMP on CUDA only: CPU autocast is slower for convs
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.paths = state_dir(config.out)
        self.records: list[dict] = []
        self.epoch, self.seconds = 0, 0.0
        if config.resume:
            self._load_resume()
        self.ddp = module
        if ctx.active:
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                module, device_ids=[int(ctx.device.split(":")[1])] if self.amp else None)
        self.monitor = EvalSet(data.monitor, config.res, ctx)
        self.calib = calibration_set(data.train, config.res, config.bn_calib_images, ctx)

    def fit(self) -> None:
        while self.epoch < self.config.epochs:
            start = time.perf_counter()
            losses = self._train_epoch()
            seconds = time.perf_counter() - start
            if not all(math.isfinite(v) for v in losses.values()):
                raise EdgeresError(f"training diverged in epoch {self.epoch + 1} (loss {losses['total']}): "
                                   f"lower --lr (now {self.config.lr}) or raise --warmup-epochs")
            if self.calib is not None:  # before every evaluation, so the checkpoint's BN statistics are precise too
                reestimate_bn(self.module.net, self.calib, self.ctx.device)
            top1 = {k: v["top1"] for k, v in measure(self.module.net, self.monitor, self.ctx).items()}
            self.seconds += seconds
            self._record(losses, top1, seconds)
            self.epoch += 1
            self._save_resume()

    def _train_epoch(self) -> dict[str, float]:
        """One pass over this rank's share of the data; returns the image-weighted mean loss terms (all ranks)."""
        self.sampler.set_epoch(self.epoch)
        self.loader.dataset.set_epoch(self.epoch)
        self.ddp.train()
        sums = [0.0] * (len(LOSS_KEYS) + 1)
        with _progress(self.ctx.main and self.config.progress, self._title(), len(self.loader)) as advance:
            for views, target in self.loader:
                terms = self._step([v.to(self.ctx.device) for v in views], target.to(self.ctx.device))
                for i, key in enumerate(LOSS_KEYS):
                    sums[i] += terms[key] * len(target)
                sums[-1] += len(target)
                advance()
        totals = distributed.all_sum(sums, self.ctx)
        self.images_seen = totals[-1]
        return {key: totals[i] / max(totals[-1], 1.0) for i, key in enumerate(LOSS_KEYS)}

    def _step(self, views: list[torch.Tensor], target: torch.Tensor) -> dict[str, float]:
        config = self.config
        with torch.autocast("cuda" if self.amp else "cpu", enabled=self.amp):
            logits, ens = self.ddp(views)
            terms = mred_terms(dict(zip(config.res, logits)), target, ens,
                               mode="rsnet" if config.mode == "rsnet" else "parallel", kd=config.kd,
                               label_smoothing=config.label_smoothing, reduction=config.loss_reduction)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(terms["total"]).backward()
        if config.clip_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)  # clip true gradients, not AMP-scaled ones
            # the network only: α's gradient stays the authors' (it is tiny and trains the ensemble alone)
            torch.nn.utils.clip_grad_norm_(self.module.net.parameters(), config.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return {k: float(v.detach()) for k, v in terms.items()}

    def _title(self) -> str:
        return f"{self.label + ' ' if self.label else ''}epoch {self.epoch + 1}/{self.config.epochs}"

    def _alpha(self) -> list[float] | None:
        alpha = self.module.alpha
        return None if alpha is None else [round(w, 5) for w in ensemble_weights(alpha.detach().cpu()).tolist()]

    def _record(self, losses: dict, top1: dict, seconds: float) -> None:
        record = {"epoch": self.epoch + 1, "lr": self.optimizer.param_groups[0]["lr"],
                  "loss": {k: round(v, 5) for k, v in losses.items()},
                  f"top1_{self.data.monitor_name}": top1, "alpha": self._alpha(),
                  "img_per_s": round(self.images_seen / max(seconds, 1e-9), 1), "seconds": round(seconds, 2)}
        self.records.append(record)
        if self.ctx.main:
            log.info("%s", json.dumps(record))
            write_text(self.paths / "train_log.jsonl", "".join(json.dumps(r) + "\n" for r in self.records))

    def _save_resume(self) -> None:
        if not self.ctx.main:
            return
        state = {"epoch": self.epoch, "seconds": self.seconds, "settings": _jsonable(self.config.settings()),
                 "model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                 "records": json.dumps(self.records), "rng": _rng_state()}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        write_bytes(self.paths / "resume.pt", buffer.getvalue())

    def _load_resume(self) -> None:
        path = self.paths / "resume.pt"
        if not path.is_file():
            raise EdgeresError(f"--resume: no resume file at {path}: run without --resume to start afresh")
        try:
            state = torch.load(path, map_location=self.ctx.device, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - a damaged file is the user's to delete, not a bug
            raise EdgeresError(f"--resume: cannot read {path} ({type(exc).__name__}): delete it and start afresh") from None
        missing = [k for k in RESUME_FIELDS if k not in state] if isinstance(state, dict) else list(RESUME_FIELDS)
        if missing or not isinstance(state.get("settings"), dict):
            raise EdgeresError(f"--resume: {path} lacks {', '.join(missing) or 'settings'}: it is not a resume file "
                               "edgeres wrote; delete it and start afresh")
        ours = _jsonable(self.config.settings())
        changed = sorted(k for k in ours if state["settings"].get(k) != ours[k])
        if changed:
            raise EdgeresError(f"--resume: {path} was written with different settings ({', '.join(changed)}): "
                               "resume with the same options, or drop --resume to start afresh")
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.seconds = state["epoch"], state["seconds"]
        self.records = json.loads(state["records"])
        _set_rng_state(state["rng"])

    def finish(self, spec) -> Path:
        """Final per-resolution top-1/top-5 on val, then the checkpoint (rank 0) and cleanup."""
        val = self.monitor if self.data.monitor_name == "val" else EvalSet(self.data.val, self.config.res, self.ctx)
        metrics = measure(self.module.net, val, self.ctx, self.module.alpha)
        ensemble = metrics.pop("ensemble", None)
        out = Path(self.config.out)
        if self.ctx.main:
            self._write_checkpoint(out, spec, metrics, ensemble)
        distributed.barrier(self.ctx)
        return out

    def _write_checkpoint(self, out: Path, spec, metrics: dict, ensemble: dict | None) -> None:
        info = self.data.info
        training = {**self.config.settings(), "world_size": self.ctx.world, "device": self.ctx.device,
                    "seconds": round(self.seconds, 1), "final_loss": self.records[-1]["loss"] if self.records else None,
                    "val_images": len(self.data.val), "train_images": len(self.data.train),
                    "ensemble_val": ensemble}
        alpha = self._alpha()
        checkpoint = CheckpointInfo(arch=spec, resolutions=self.config.res, mean=info.mean, std=info.std,
                                    eval_crop_ratio=info.eval_crop_ratio, data=data_label(self.config.data),
                                    classes=info.classes, ensemble_weights=None if alpha is None else tuple(alpha),
                                    metrics=metrics, training=_jsonable(training))
        self.module.net.to("cpu")
        save_checkpoint(out, self.module.net, checkpoint)
        log_file = self.paths / "train_log.jsonl"
        if log_file.is_file():
            write_bytes(out / "train_log.jsonl", log_file.read_bytes())
        shutil.rmtree(self.paths, ignore_errors=True)


def _make_loader(images, config, ctx):
    """DistributedSampler (also on one process: its order depends only on seed + epoch, which makes resume
    exact) and a DataLoader over one-crop-all-resolutions samples. --batch-size is the global batch."""
    if config.batch_size % ctx.world:
        raise EdgeresError(f"--batch-size {config.batch_size} is not divisible by the {ctx.world} processes")
    dataset = MultiResolutionTrainSet(images, config.res, images.info.mean, images.info.std,
                                      scale=config.crop_scale, seed=config.seed)
    sampler = torch.utils.data.DistributedSampler(dataset, ctx.world, ctx.rank, shuffle=True, seed=config.seed)
    per_rank = config.batch_size // ctx.world
    # drop the ragged last batch: a batch of 1 in train-mode BN fails on 1x1 maps and is noisy anyway
    drop = len(sampler) > per_rank
    loader = torch.utils.data.DataLoader(dataset, per_rank, sampler=sampler, num_workers=config.workers,
                                         drop_last=drop, pin_memory=ctx.device.startswith("cuda"))
    return loader, sampler


def _make_optimizer(module: torch.nn.Module, config) -> torch.optim.Optimizer:
    """SGD momentum, one lr for all; weight decay on conv/linear weights and on α (as the authors' optimizer,
    which decays every parameter), not on BN scales/shifts or biases (decaying those just shrinks them)."""
    decayed = {n for n, p in module.named_parameters() if p.ndim > 1 or n == "alpha"}
    decay = [p for n, p in module.named_parameters() if n in decayed]
    rest = [p for n, p in module.named_parameters() if n not in decayed]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)


def _rng_state() -> dict:
    version, state, gauss = random.getstate()
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": torch.tensor(state, dtype=torch.int64),
            "python_version": version, "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
            "numpy_pos": int(np_state[2]),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"].cpu())
    random.setstate((state["python_version"], tuple(int(v) for v in state["python"].tolist()), None))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    if state["cuda"]:
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=str))


class _NoProgress:
    def __enter__(self):
        return lambda: None

    def __exit__(self, *exc):
        return False


def _progress(enabled: bool, title: str, total: int):
    """A rich progress bar on stderr yielding `advance()`; a no-op when disabled (other ranks, quiet runs)."""
    if not enabled:
        return _NoProgress()
    from contextlib import contextmanager

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    @contextmanager
    def bar():
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
            task = progress.add_task(title, total=total)
            yield lambda: progress.advance(task)
    return bar()
