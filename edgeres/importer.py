"""`edgeres import`: turn a BN CNN a user already has into an RS-Net, with per-resolution BN recalibration.

Steps: build the plain architecture (torchvision, timm or the user's factory: see edgeres.arch.ARCH_HELP), load
its weights (a local state dict, or a torchvision `weights=` name where there is internet), give every BN one
private copy per resolution (`make_switchable`: the model is still exactly the original), then re-estimate
each private BN's running statistics at its own resolution. `recalibrate=False` is the naive baseline of the
"Resolution-Wise CNNs" thesis (copy and run). Official RS-Nets checkpoints already hold one trained BN per
resolution: they are mapped as they are (edgeres.models.official), never recalibrated.
"""
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeres import _optional
from edgeres.arch import ArchSpec, arch_kind
from edgeres.errors import EdgeresError
from edgeres.manifests.checkpoint import CheckpointInfo
from edgeres.models.checkpoint import (
    check_checkpoint_out,
    load_into,
    load_weights_file,
    save_checkpoint,
)
from edgeres.resolutions import parse_resolutions

log = logging.getLogger("edgeres.import")
CALIB_SEED = 0  # which training images calibrate: fixed, so an import is reproducible
NO_DATA_CROP_RATIO = 0.875  # without --data: the ImageNet eval convention (RS-Nets Sec. 4.1)


def import_model(arch: str, weights: str | os.PathLike, resolutions: Sequence[int] | str, out: str | os.PathLike,
                 *, data: str | None = None, num_classes: int | None = None, in_channels: int | None = None,
                 small_input: bool = False, width_mult: float = 1.0, recalibrate: bool = True,
                 calib_images: int = 512, batch_size: int = 64, finetune_epochs: int = 0,
                 finetune_options: dict | None = None, measure: bool = True, val_limit: int | None = None,
                 arch_kwargs: dict[str, Any] | None = None, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None) -> Path:
    """Write an RS-Net checkpoint to `out` made from `arch` + `weights`; return `out`.

    arch: see edgeres.arch.ARCH_HELP; arch_kwargs are its builder's keyword arguments. weights: a
    .safetensors/.pt/.pth state dict file (an official RS-Nets checkpoint is recognised by its keys), or a
    torchvision weights name (e.g. IMAGENET1K_V1). data (ImageFolder root or built-in name) is needed only
    to recalibrate, measure or fine-tune; without it classes and channels come from the weights and
    `mean`/`std` (per channel, on [0, 1] pixels) say how images are normalised. recalibrate: re-estimate BN
    statistics per resolution from `calib_images` training images (eval preprocessing). finetune_epochs > 0
    then trains with MRED (`finetune_options` are extra TrainConfig fields). measure: record val top-1/top-5
    in checkpoint.json (when there is data).
    """
    _optional.torch("importing a model")
    from edgeres.models import official

    state, wrapper = _source_state(arch, weights)
    if official.is_official_layout(state):
        return _import_official(arch, weights, state, wrapper, resolutions, out, data, mean, std, measure,
                                val_limit)
    resolutions = parse_resolutions(resolutions)
    check_checkpoint_out(out)
    if data is None and (recalibrate or finetune_epochs):
        raise EdgeresError("recalibrating (or fine-tuning) needs images: pass --data DIR (an ImageFolder root "
                           "with train/ and val/), or --no-recalibrate to keep the BN statistics as they are")
    images = _open_train(data)
    requested = dict(num_classes=num_classes or (len(images.info.classes) if images else None),
                     in_channels=in_channels or (images.info.channels if images else None),
                     width_mult=width_mult, small_input=small_input, kwargs=arch_kwargs or {})
    spec, model = _switchable(arch, weights, state, resolutions, images, data, requested)
    prep = _preprocessing(spec, images, mean, std)
    if recalibrate:
        for res in resolutions:
            recalibrate_bn(model, res, images, calib_images, batch_size, preprocessing=prep)
    checkpoint = _checkpoint_info(spec, resolutions, prep, images, data,
                                  {"imported_from": str(weights), "recalibrated": recalibrate,
                                   "calib_images": calib_images if recalibrate else 0,
                                   "calib_preprocessing": "eval"})
    if measure and images is not None:
        checkpoint = checkpoint.with_metrics(_val_metrics(model, data, resolutions, prep, val_limit))
    out = save_checkpoint(out, model, checkpoint)
    if finetune_epochs > 0:
        out = _finetune(out, data, resolutions, spec, finetune_epochs,
                        {"extra": {"imported": checkpoint.training}, **(finetune_options or {})})
    return out


def _switchable(arch: str, weights, state: dict, resolutions: Sequence[int], images, data: str | None,
                requested: dict):
    """(ArchSpec, the switchable model holding `state`), checked against the data when there is some."""
    spec, plain = spec_from_weights(arch, state, f"weights {weights}", **requested)
    if images is not None:
        _check_data_fits(spec, images.info, data)
    return spec, switchable_from_weights(spec, state, resolutions, f"weights {weights}", plain)


def spec_from_weights(arch: str, state: dict, what: str, *, num_classes: int | None = None,
                      in_channels: int | None = None, **options: Any):
    """(ArchSpec, the plain model if building it was needed to read the shapes, else None).

    num_classes / in_channels default to what the weights hold (classifier rows, stem input channels).
    """
    from edgeres.models import build_plain
    if arch_kind(arch) == "factory":  # the user's code decides the shapes: build it once and read them off
        model = build_plain(ArchSpec(arch, 2, kwargs=options.get("kwargs", {})))
        found = io_from_weights(model, state, what)
        return ArchSpec(arch, num_classes or found[0], in_channels or found[1], **options), model
    found = io_from_weights(_meta_model(ArchSpec(arch, 1000, **options)), state, what)
    return ArchSpec(arch, num_classes or found[0], in_channels or found[1], **options), None


def switchable_from_weights(spec: ArchSpec, state: dict, resolutions: Sequence[int], what: str, model=None):
    """The plain model (`model`, else built from `spec`) loaded with `state`, every BN made switchable (still
    exactly the original), eval mode."""
    from edgeres.models import build_plain, check_resolutions_fit, make_switchable
    model = build_plain(spec) if model is None else model
    load_into(model, _strip_data_parallel(state, model), what)
    make_switchable(model, resolutions, spec.name).eval()
    check_resolutions_fit(model, resolutions, spec.in_channels)
    return model


def _meta_model(spec: ArchSpec):
    """The architecture built on the meta device (no memory, no init time): only its names and shapes count."""
    import torch

    from edgeres.models import build_plain
    with torch.device("meta"):
        return build_plain(spec)


def io_from_weights(model, state: dict, what: str) -> tuple[int, int]:
    """(classes, input channels) in `state`: rows of the last weight matrix and the stem conv's inputs,
    found under the names `model` gives those layers."""
    from edgeres.models.rsnet import first_conv
    state = _strip_data_parallel(state, model)
    stem, conv = first_conv(model)
    last = [name for name, p in model.named_parameters() if p.ndim >= 2][-1]
    for key in (f"{stem}.weight", last):
        if key not in state:
            raise EdgeresError(f"{what} does not fit the architecture (no tensor {key}): check --arch")
    return int(state[last].shape[0]), int(state[f"{stem}.weight"].shape[1]) * conv.groups


def _strip_data_parallel(state: dict, model) -> dict:
    """A state dict saved from torch.nn.DataParallel has every key prefixed `module.`: drop it when the model
    has no such names."""
    if state and all(k.startswith("module.") for k in state) and not any(
            k.startswith("module.") for k in model.state_dict()):
        return {k.removeprefix("module."): v for k, v in state.items()}
    return state


def _open_train(data: str | None):
    if data is None:
        return None
    from edgeres.data import open_images
    return open_images(data, "train")


def _preprocessing(spec: ArchSpec, images, mean, std, default=None) -> dict[str, Any]:
    """mean/std/crop ratio: --mean/--std, else the data's, else `default`; one value per input channel."""
    if mean is None and std is None and images is not None:
        mean, std = images.info.mean, images.info.std
    if (mean is None or std is None) and default is not None:
        mean, std = mean or default["mean"], std or default["std"]
    if mean is None or std is None:
        raise EdgeresError("without --data, say how the images were normalised: --mean and --std per channel on "
                           "[0, 1] pixels, e.g. --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 (ImageNet)")
    mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    if len(mean) != spec.in_channels or len(std) != spec.in_channels or min(std) <= 0:
        raise EdgeresError(f"--mean/--std need {spec.in_channels} values (one per input channel, std > 0), got "
                           f"{list(mean)} / {list(std)}")
    crop = images.info.eval_crop_ratio if images is not None else (default or {}).get("crop", NO_DATA_CROP_RATIO)
    return {"mean": mean, "std": std, "crop": crop}


def _checkpoint_info(spec: ArchSpec, resolutions, prep: dict, images, data: str | None, training: dict,
                     ensemble_weights=None) -> CheckpointInfo:
    from edgeres.train.setup import data_label
    return CheckpointInfo(arch=spec, resolutions=resolutions, mean=prep["mean"], std=prep["std"],
                          eval_crop_ratio=prep["crop"], data=data_label(data) if data else "",
                          classes=images.info.classes if images is not None else (),
                          ensemble_weights=ensemble_weights, training=training)


def _import_official(arch, weights, state, wrapper, resolutions, out, data, mean, std, measure, val_limit) -> Path:
    """An official RS-Nets checkpoint: `bn_i` is the private BN of the i-th --res as typed (their --sizes)."""
    from edgeres.models import build_rsnet, check_resolutions_fit, official
    sizes = typed_order(resolutions)
    mapped, alpha = official.switchable_state(state, arch, sizes)
    facts = official.official_meta(wrapper, arch)
    images = _open_train(data)
    spec = ArchSpec(arch, num_classes=int(mapped["fc.weight" if arch != "mobilenet_v2" else "classifier.1.weight"]
                                          .shape[0]), in_channels=3)
    model = build_rsnet(spec, sizes)
    load_into(model, mapped, f"official RS-Nets checkpoint {weights}")
    check_resolutions_fit(model.eval(), sizes, spec.in_channels)
    if images is not None:
        _check_data_fits(spec, images.info, data)
    default = {"mean": official.MEAN, "std": official.STD, "crop": official.CROP_RATIO}
    prep = _preprocessing(spec, None, mean, std, default)
    mapping = {f"bn_{i}": r for i, r in enumerate(sizes)}
    training = {"imported_from": str(weights), "layout": official.SOURCE, "bn_mapping": mapping,
                "recalibrated": False, "preprocessing": official.PREPROCESSING if (mean, std) == (None, None)
                else "--mean/--std", "official": {**facts, "sizes": list(sizes),
                                                  "alpha": None if alpha is None else alpha.tolist()}}
    weights_high_low = None if alpha is None else _softmax_high_low(alpha, sizes)
    info = _checkpoint_info(spec, parse_resolutions(sizes), prep, images, data, training, weights_high_low)
    if measure and images is not None:
        info = info.with_metrics(_val_metrics(model, data, info.resolutions, prep, val_limit))
    log.info("official RS-Nets checkpoint: %s", ", ".join(f"{k} -> {v} px" for k, v in mapping.items()))
    return save_checkpoint(out, model, info)


def typed_order(resolutions: Sequence[int] | str) -> tuple[int, ...]:
    """The resolutions in the order typed (validated, no duplicates): '224,192,160' -> (224, 192, 160)."""
    items = resolutions.replace(" ", ",").split(",") if isinstance(resolutions, str) else list(resolutions)
    order = tuple(parse_resolutions(v)[0] for v in items if str(v).strip())
    if len(set(order)) != len(order) or not order:
        raise EdgeresError(f"--res {resolutions!r} lists a resolution twice (or none): list the training sizes once")
    return order


def _softmax_high_low(alpha, sizes: Sequence[int]) -> tuple[float, ...]:
    """softmax(alpha) as the authors apply it, reordered to edgeres' high -> low resolution order."""
    import torch
    weights = dict(zip(sizes, torch.softmax(alpha.double(), dim=0).tolist()))
    return tuple(round(weights[r], 6) for r in sorted(sizes, reverse=True))


def _check_data_fits(spec: ArchSpec, info, data: str) -> None:
    if spec.num_classes != len(info.classes) or spec.in_channels != info.channels:
        raise EdgeresError(f"the model predicts {spec.num_classes} classes from {spec.in_channels}-channel images "
                           f"but --data {data} has {len(info.classes)} classes of {info.channels}-channel images: "
                           "import weights trained on this kind of data")


def _source_state(arch: str, weights: str | os.PathLike) -> tuple[dict, dict]:
    """A local state dict file (+ its wrapper's scalar facts), else a torchvision weights name (needs internet)."""
    if Path(weights).is_file():
        return load_weights_file(weights)
    if any(sep in str(weights) for sep in ("/", os.sep)) or Path(str(weights)).suffix in (".pt", ".pth", ".tar",
                                                                                         ".safetensors"):
        raise EdgeresError(f"weights file not found: {weights}")
    if arch_kind(arch) != "torchvision":
        raise EdgeresError(f"--weights {weights} is not a file: {arch} takes weights from a state-dict file "
                           "(timm and factory models are built with pretrained=False)")
    return torchvision_state(arch, str(weights)), {}


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


def recalibrate_bn(model, res: int, images, count: int = 512, batch_size: int = 64, seed: int = CALIB_SEED,
                   preprocessing: dict[str, Any] | None = None) -> None:
    """Re-estimate the running mean/var of the private BNs of `res` from `count` images at `res`.

    Train-mode BN with momentum=None gives the cumulative average over batches; statistics are reset first,
    nothing else changes (no gradient, weights and the other resolutions' BNs untouched). Images get the EVAL
    preprocessing at `res` (resize + centre crop; `preprocessing` {mean, std, crop}, default the data's):
    these statistics serve at test time, and training crops would zoom in and shift them.
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
    prep = preprocessing or {"mean": info.mean, "std": info.std, "crop": info.eval_crop_ratio}
    try:
        with torch.no_grad(), at_resolution(model, res):
            for x, _ in eval_batches(subset, res, prep["mean"], prep["std"], prep["crop"], batch_size):
                model(torch.from_numpy(x))
    finally:
        for bn, (momentum, training) in zip(bns, saved):
            bn.momentum = momentum
            bn.train(training)


def _val_metrics(model, data: str, resolutions, prep: dict, limit: int | None) -> dict[int, dict[str, float]]:
    from edgeres.data import open_images
    from edgeres.evaluate import evaluate_scorers, torch_scorer
    val = open_images(data, "val")
    scorers = {r: torch_scorer(model.eval(), r) for r in resolutions}
    results = evaluate_scorers(scorers, val, prep["mean"], prep["std"], prep["crop"], limit=limit)
    return {r: {"top1": round(a.top1, 3), "top5": round(a.top5, 3)} for r, a in results.items()}


def _finetune(out: Path, data: str, resolutions, spec: ArchSpec, epochs: int, options: dict) -> Path:
    """MRED training from the imported weights, written over `out` only when it finishes."""
    from edgeres.train import TrainConfig, train
    config = TrainConfig(out=str(out), data=data, arch=spec.name, res=resolutions, width_mult=spec.width_mult,
                         small_input=spec.small_input, arch_kwargs=spec.kwargs, epochs=epochs, init=str(out),
                         **options)
    return train(config)
