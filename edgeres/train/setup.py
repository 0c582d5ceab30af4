"""Everything a training run needs, built and validated before the first step: data splits, model, init weights.

Each check raises a one-line EdgeresError naming the bad value, so a run fails before any output exists.
"""
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from edgeres.arch import ArchSpec, parse_quant
from edgeres.data import BUILTINS, DatasetInfo, ImageSet, open_images
from edgeres.errors import EdgeresError
from edgeres.models import (
    at_resolution,
    build_rsnet,
    check_resolutions_fit,
    set_resolution,
)
from edgeres.train.losses import ensemble_logits

# The holdout split is drawn with a fixed seed, not --seed: runs with different seeds (or an lr sweep) are
# then compared on the very same held-out images.
SPLIT_SEED = 12345


class SubsetImages(ImageSet):
    """The images of `base` at `indices` (kept in ascending order for locality on disk)."""

    def __init__(self, base: ImageSet, indices: Sequence[int], tag: str):
        indices = np.sort(np.asarray(indices, dtype=np.int64))
        super().__init__(base.info, base.split, base.labels[indices], f"{base.fingerprint}:{tag}:{len(indices)}")
        self.base, self.indices = base, indices

    def image(self, index: int) -> np.ndarray:
        return self.base.image(int(self.indices[index]))


@dataclass(frozen=True)
class RunData:
    """train: the images trained on; monitor: per-epoch validation (holdout, else val); val: final metrics."""

    train: ImageSet
    monitor: ImageSet
    monitor_name: str
    val: ImageSet

    @property
    def info(self) -> DatasetInfo:
        return self.train.info


def split_data(data: str, holdout: int, train_limit: int | None, val_limit: int | None) -> RunData:
    """Open `data`, carve `holdout` images from its training split, apply the limits (random subsets)."""
    train_all, val = open_images(data, "train"), open_images(data, "val")
    if len(train_all.info.classes) != len(val.info.classes):
        raise EdgeresError(f"--data {data}: train/ has {len(train_all.info.classes)} classes but val/ has "
                           f"{len(val.info.classes)}: both need the same class folders")
    if holdout >= len(train_all):
        raise EdgeresError(f"--holdout {holdout} leaves no training images (the train split has {len(train_all)})")
    order = np.random.default_rng(SPLIT_SEED).permutation(len(train_all))
    rest = order[holdout:holdout + train_limit] if train_limit else order[holdout:]
    train = SubsetImages(train_all, rest, "train")
    if val_limit:
        val = SubsetImages(val, np.random.default_rng(SPLIT_SEED).permutation(len(val))[:val_limit], "val")
    if holdout:
        return RunData(train, SubsetImages(train_all, order[:holdout], "holdout"), "holdout", val)
    return RunData(train, val, "val", val)


def data_label(data: str) -> str:
    """What checkpoint.json records as the data: the built-in name, or the folder's absolute path."""
    from pathlib import Path
    return data if data in BUILTINS else str(Path(data).resolve())


def arch_spec(arch: str, info: DatasetInfo, width_mult: float, small_input: bool, quant: str | None,
              arch_kwargs: dict | None = None) -> ArchSpec:
    """The architecture for this data: classes and channels come from the data, never from a flag."""
    if quant is not None:
        w_bits, a_bits = parse_quant(quant)
        quant = f"w{w_bits}a{a_bits or 32}"
    return ArchSpec(arch, num_classes=len(info.classes), in_channels=info.channels, width_mult=width_mult,
                    small_input=small_input, quant=quant, kwargs=arch_kwargs or {})


def set_classifier_dropout(model: nn.Module, p: float) -> nn.Module:
    """Dropout before the classifier with probability `p`; p = 0 swaps each nn.Dropout for nn.Identity.

    torchvision's MobileNetV2 has Dropout(0.2) there, the RS-Nets authors' MobileNetV2 none; the swap keeps
    module indices, so state-dict keys (and exported graphs) are the same either way.
    """
    drops = [name for name, m in model.named_modules() if isinstance(m, nn.Dropout)]
    if p > 0 and not drops:
        raise EdgeresError(f"--dropout {p}: this architecture has no classifier dropout; use --dropout 0")
    for name in drops:
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent), attr, nn.Dropout(p) if p > 0 else nn.Identity())
    return model


def build_checked(spec: ArchSpec, resolutions: Sequence[int]) -> nn.Module:
    """build_rsnet plus the checks that every resolution passes through it (one dummy image each) and that
    a model the user's factory built predicts the data's classes from its channels."""
    model = build_rsnet(spec, resolutions)
    if spec.kind == "factory":
        _check_factory_io(model, spec, min(resolutions))
    check_resolutions_fit(model, resolutions, spec.in_channels)
    return model


def _check_factory_io(model: nn.Module, spec: ArchSpec, res: int) -> None:
    """The factory builds what it builds: its stem's channels and its output width must be the data's."""
    from edgeres.models.rsnet import first_conv
    stem = first_conv(model)[1]
    channels = stem.in_channels
    classes = None
    if channels == spec.in_channels:
        with torch.no_grad(), at_resolution(model, res):
            was = model.training
            classes = model.eval()(torch.zeros(1, channels, res, res)).shape[-1]
            model.train(was)
    if classes != spec.num_classes:
        raise EdgeresError(f"--arch {spec.name} builds a model for {channels}-channel images"
                           f"{'' if classes is None else f' and {classes} classes'}, the data has "
                           f"{spec.in_channels}-channel images of {spec.num_classes} classes: pass the factory's "
                           "own arguments in --arch-kwargs")


def load_init(model: nn.Module, checkpoint: str, spec: ArchSpec, resolutions: Sequence[int]) -> None:
    """Copy a checkpoint's weights into `model` (same architecture and resolutions).

    LQ quantizer state (keys containing "quantizer") may be absent from a full-precision source; those keys
    keep their initial values. Every other key must match exactly.
    """
    from edgeres.models.checkpoint import load_checkpoint, load_into
    from edgeres.models.lq import is_quantizer_key
    source, info, _ = load_checkpoint(checkpoint, trust_arch=spec.name)  # the same --arch re-stated: trusted
    theirs, ours = info.arch, spec
    if theirs.num_classes != ours.num_classes:
        raise EdgeresError(f"--init {checkpoint} predicts {theirs.num_classes} classes but the data has "
                           f"{ours.num_classes}: use a checkpoint trained on this data")
    if (theirs.name, theirs.width_mult, theirs.small_input, theirs.in_channels, theirs.kwargs) != \
            (ours.name, ours.width_mult, ours.small_input, ours.in_channels, ours.kwargs):
        raise EdgeresError(f"--init {checkpoint} is a {_describe(theirs)}, this run trains a {_describe(ours)}: "
                           "use the same --arch, --width-mult and --small-input, and data with the same channels")
    if tuple(info.resolutions) != tuple(resolutions):
        raise EdgeresError(f"--init {checkpoint} has resolutions {list(info.resolutions)}, this run "
                           f"{list(resolutions)}: use the same --res, or `edgeres import` to add resolutions")
    state = source.state_dict()
    own = model.state_dict()
    state.update({k: v for k, v in own.items() if is_quantizer_key(k) and k not in state})
    load_into(model, state, f"--init {checkpoint}")


def _describe(spec: ArchSpec) -> str:
    stem = ", small input" if spec.small_input else ""
    return f"{spec.name} (width {spec.width_mult}{stem}, {spec.in_channels} input channels)"


class MultiResolutionNet(nn.Module):
    """One forward() runs every resolution: views high -> low in, (logits list, ensemble logits or None) out.

    A single forward per backward keeps DDP's gradient hooks simple (FACTS: separate forwards of one DDP
    module before one backward need extra care). `alpha` are the MRED ensemble scores, initialised to ones
    (uniform weights) as in the authors' code.
    """

    def __init__(self, net: nn.Module, resolutions: Sequence[int], ensemble: bool):
        super().__init__()
        self.net, self.resolutions = net, tuple(resolutions)
        self.alpha = nn.Parameter(torch.ones(len(resolutions))) if ensemble else None

    def forward(self, views: Sequence[torch.Tensor]):
        logits = []
        for res, x in zip(self.resolutions, views):
            set_resolution(self.net, res)
            logits.append(self.net(x))
        ens = None if self.alpha is None else ensemble_logits(dict(zip(self.resolutions, logits)), self.alpha)
        return logits, ens
