"""`edgeres import`: turn a BN CNN a user already has into an RS-Net, with per-resolution BN recalibration.

Steps: build the plain torchvision model, load its weights (a local state dict, or a torchvision `weights=`
name where there is internet), give every BN one private copy per resolution (`convert_to_switchable`: the
model is still exactly the original), then re-estimate each private BN's running statistics at its own
resolution. `recalibrate=False` is the naive baseline of the "Resolution-Wise CNNs" thesis (copy and run).
"""
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from edgeres import _optional
from edgeres.arch import ArchSpec
from edgeres.errors import EdgeresError
from edgeres.manifests.checkpoint import CheckpointInfo
from edgeres.models.checkpoint import (
    check_checkpoint_out,
    load_into,
    load_state_dict_file,
    save_checkpoint,
)
from edgeres.resolutions import parse_resolutions

log = logging.getLogger("edgeres.import")
CALIB_SEED = 0  # which training images calibrate: fixed, so an import is reproducible


def import_model(arch: str, weights: str | os.PathLike, resolutions: Sequence[int] | str, out: str | os.PathLike,
                 data: str = "fashion-mnist-mini", num_classes: int | None = None, in_channels: int | None = None,
                 small_input: bool = False, width_mult: float = 1.0, recalibrate: bool = True,
                 calib_images: int = 512, batch_size: int = 64, finetune_epochs: int = 0,
                 finetune_options: dict | None = None, measure: bool = True, val_limit: int | None = None) -> Path:
    """Write an RS-Net checkpoint to `out` made from `arch` + `weights`; return `out`.

    weights: a .safetensors/.pt/.pth state dict file, or a torchvision weights name (e.g. IMAGENET1K_V1).
    num_classes / in_channels default to the data's. recalibrate: re-estimate BN statistics per resolution
    from `calib_images` training images (eval preprocessing). finetune_epochs > 0 then trains with MRED
    (`finetune_options` are extra TrainConfig fields). measure: record val top-1/top-5 in checkpoint.json.
    """
    _optional.torch("importing a model")
    from edgeres.data import open_images
    from edgeres.train.setup import data_label

    resolutions = parse_resolutions(resolutions)
    check_checkpoint_out(out)
    train_images = open_images(data, "train")
    info = train_images.info
    spec = ArchSpec(arch, num_classes=num_classes or len(info.classes), in_channels=in_channels or info.channels,
                    width_mult=width_mult, small_input=small_input)
    _check_data_fits(spec, info, data)
    model = switchable_from_weights(spec, weights, resolutions)
    if recalibrate:
        for res in resolutions:
            recalibrate_bn(model, res, train_images, calib_images, batch_size)
    checkpoint = CheckpointInfo(arch=spec, resolutions=resolutions, mean=info.mean, std=info.std,
                                eval_crop_ratio=info.eval_crop_ratio, data=data_label(data), classes=info.classes,
                                training={"imported_from": str(weights), "recalibrated": recalibrate,
                                          "calib_images": calib_images if recalibrate else 0,
                                          "calib_preprocessing": "eval"})
    if measure:
        checkpoint = checkpoint.with_metrics(_val_metrics(model, data, resolutions, info, val_limit))
    out = save_checkpoint(out, model, checkpoint)
    if finetune_epochs > 0:
        out = _finetune(out, data, resolutions, spec, finetune_epochs,
                        {"extra": {"imported": checkpoint.training}, **(finetune_options or {})})
    return out


def switchable_from_weights(spec: ArchSpec, weights: str | os.PathLike, resolutions: Sequence[int]):
    """The plain torchvision model with `weights`, every BN made switchable (still exactly the original), eval mode."""
    from edgeres.models import build_plain, check_resolutions_fit, convert_to_switchable
    model = build_plain(spec)
    load_into(model, _source_state(spec.name, weights), f"weights {weights}")
    convert_to_switchable(model, resolutions).eval()
    check_resolutions_fit(model, resolutions, spec.in_channels)
    return model


def _check_data_fits(spec: ArchSpec, info, data: str) -> None:
    if spec.num_classes != len(info.classes) or spec.in_channels != info.channels:
        raise EdgeresError(f"the model predicts {spec.num_classes} classes from {spec.in_channels}-channel images "
                           f"but --data {data} has {len(info.classes)} classes of {info.channels}-channel images: "
                           "import weights trained on this kind of data")


def _source_state(arch: str, weights: str | os.PathLike) -> dict:
    """A local state dict file, else a torchvision weights name (downloads: needs internet)."""
    if Path(weights).is_file():
        return load_state_dict_file(weights)
    if any(sep in str(weights) for sep in ("/", os.sep)) or Path(str(weights)).suffix in (".pt", ".pth", ".safetensors"):
        raise EdgeresError(f"weights file not found: {weights}")
    return torchvision_state(arch, str(weights))


def torchvision_state(arch: str, name: str) -> dict:
    """torchvision's pretrained weights `name` (e.g. IMAGENET1K_V1 or ResNet18_Weights.IMAGENET1K_V1) for `arch`."""
    from torchvision.models import get_model_weights
    enum = get_model_weights(arch)
    choices = [w.name for w in enum]
    short = name.split(".")[-1]
    if short not in choices:
        raise EdgeresError(f"{name!r} is neither a file nor a torchvision weights name for {arch}: "
                           f"choose one of {', '.join(choices)} or pass a state-dict file")
    try:
        return enum[short].get_state_dict(progress=False, check_hash=True)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; no network or a bad download
        raise EdgeresError(f"cannot download torchvision weights {enum.__name__}.{short} ({str(exc)[:120]}): "
                           "this needs internet; download the state dict elsewhere and pass the file") from None


def recalibrate_bn(model, res: int, images, count: int = 512, batch_size: int = 64, seed: int = CALIB_SEED) -> None:
    """Re-estimate the running mean/var of the private BNs of `res` from `count` images at `res`.

    Train-mode BN with momentum=None gives the cumulative average over batches; statistics are reset first,
    nothing else changes (no gradient, weights and the other resolutions' BNs untouched). Images get the EVAL
    preprocessing at `res` (resize + centre crop): these statistics serve at test time, and training crops
    would zoom in and shift them.
    """
    import torch

    from edgeres.data import eval_batches
    from edgeres.models import at_resolution, switchable_layers
    from edgeres.train.setup import SubsetImages

    pick = np.random.default_rng(seed).permutation(len(images))[:count]
    subset = SubsetImages(images, pick, "calib")
    bns = [layer.private(res) for layer in switchable_layers(model)]
    saved = [(bn.momentum, bn.training) for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    info = images.info
    try:
        with torch.no_grad(), at_resolution(model, res):
            for x, _ in eval_batches(subset, res, info.mean, info.std, info.eval_crop_ratio, batch_size):
                model(torch.from_numpy(x))
    finally:
        for bn, (momentum, training) in zip(bns, saved):
            bn.momentum = momentum
            bn.train(training)


def _val_metrics(model, data: str, resolutions, info, limit: int | None) -> dict[int, dict[str, float]]:
    from edgeres.data import open_images
    from edgeres.evaluate import evaluate_scorers, torch_scorer
    val = open_images(data, "val")
    scorers = {r: torch_scorer(model.eval(), r) for r in resolutions}
    results = evaluate_scorers(scorers, val, info.mean, info.std, info.eval_crop_ratio, limit=limit)
    return {r: {"top1": round(a.top1, 3), "top5": round(a.top5, 3)} for r, a in results.items()}


def _finetune(out: Path, data: str, resolutions, spec: ArchSpec, epochs: int, options: dict) -> Path:
    """MRED training from the imported weights, written over `out` only when it finishes."""
    from edgeres.train import TrainConfig, train
    config = TrainConfig(out=str(out), data=data, arch=spec.name, res=resolutions, width_mult=spec.width_mult,
                         small_input=spec.small_input, epochs=epochs, init=str(out), **options)
    return train(config)
