"""One resolution of an RS-Net as a plain CNN: its BN chosen (private, interpolated or nearest) and folded.

`specialize(model, res)` returns a deep copy in which every SwitchableBatchNorm2d is folded into the Conv2d
that feeds it (`torch.nn.utils.fusion.fuse_conv_bn_eval`: w' = w*g/sqrt(v+eps), b' = (b-m)*g/sqrt(v+eps)+beta)
and replaced by Identity. Folding explicitly (rather than leaving it to the ONNX exporter or TensorRT) makes
the exported weights deterministic and lets us check their FP16 range before anyone builds an engine.

Conv/BN pairs are found by data flow, without torch.fx: one dummy forward with hooks records which Conv2d
produced the very tensor each BN receives. This covers torchvision ResNet (conv1/bn1, downsample.0/.1) and
MobileNetV2 (Conv2dNormActivation [0]/[1]) as well as any model whose BN directly consumes a conv output.
"""
import copy
import logging

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from edgeres.errors import EdgeresError
from edgeres.models.switchable_bn import (
    BNChoice,
    SwitchableBatchNorm2d,
    interpolate_bn_tensors,
    set_resolution,
)

log = logging.getLogger(__name__)

FP16_MAX = 65504.0
FP16_MIN_NORMAL = 2.0 ** -14  # smaller non-zero magnitudes are FP16 subnormals (precision loss)
SUBNORMAL_WARN_FRACTION = 0.01  # TensorRT warns on any; we warn when they are a noticeable share


def specialize(model: nn.Module, res: int, allow_nearest: bool = False,
               pairs: list[tuple[str, str]] | None = None) -> nn.Module:
    """A deep copy of the RS-Net `model` for resolution `res` (pixels) with every BN folded; eval mode.

    Before folding, `freeze_for_export()` is called on every module that has it (LQ-Net convs then hold
    their quantized weights as plain weights, so per-channel folding keeps their levels up to scale).
    `pairs`: the model's `conv_bn_pairs` when already known (they do not depend on the resolution), which
    saves their dummy forward.
    """
    special = copy.deepcopy(model).eval()
    choice = set_resolution(special, res, allow_nearest)
    freeze_for_export(special)
    for conv_name, bn_name in conv_bn_pairs(special, res) if pairs is None else pairs:
        bn = plain_bn(special.get_submodule(bn_name), choice)
        replace_module(special, conv_name, fuse_conv_bn_eval(special.get_submodule(conv_name), bn))
        replace_module(special, bn_name, nn.Identity())
    warn_fp16_range(fp16_range(special), f"resolution {res}")
    return special


def freeze_for_export(model: nn.Module) -> None:
    """Call `freeze_for_export()` on every submodule that defines it (the LQ-Net export contract)."""
    for module in list(model.modules()):
        freeze = getattr(module, "freeze_for_export", None)
        if callable(freeze):
            freeze()


def bn_mode(choice: BNChoice) -> str:
    """'exact' (a private BN), 'interpolated' (between two trained ones) or 'nearest' (outside the range)."""
    if not choice.exact:
        return "interpolated"
    return "exact" if choice.high == choice.res else "nearest"


def plain_bn(layer: SwitchableBatchNorm2d, choice: BNChoice) -> nn.BatchNorm2d:
    """The eval-mode BatchNorm2d that `layer` applies for `choice` (interpolated tensors when in between)."""
    high = layer.private(choice.high)
    if choice.exact:
        return high.eval()
    bn = nn.BatchNorm2d(layer.num_features, eps=high.eps).to(high.running_mean.device).eval()
    with torch.no_grad():
        for name, value in interpolate_bn_tensors(high, layer.private(choice.low), choice.w_high).items():
            getattr(bn, name).copy_(value)
    return bn


def conv_bn_pairs(model: nn.Module, res: int) -> list[tuple[str, str]]:
    """(conv name, BN name) for every SwitchableBatchNorm2d, found by one dummy forward at `res` px.

    A BN whose input is not the output of a Conv2d (or that runs twice, or shares its conv) cannot be
    folded: one-line error naming it.
    """
    convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    bns = {n: m for n, m in model.named_modules() if isinstance(m, SwitchableBatchNorm2d)}
    if not convs:
        raise EdgeresError("the model has no Conv2d: nothing to fold its BatchNorms into")
    produced: dict[int, tuple[str, torch.Tensor]] = {}  # id(output) -> (conv name, output kept alive)
    fed: dict[str, list[str | None]] = {n: [] for n in bns}
    hooks = [m.register_forward_hook(_record_output(n, produced)) for n, m in convs.items()]
    hooks += [m.register_forward_pre_hook(_record_input(n, produced, fed)) for n, m in bns.items()]
    try:
        with torch.no_grad():
            model(torch.zeros(1, next(iter(convs.values())).in_channels, res, res,
                              device=next(model.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
    return _check_pairs(fed)


def _record_output(name: str, produced: dict):
    def hook(_module, _inputs, output):
        produced[id(output)] = (name, output)
    return hook


def _record_input(name: str, produced: dict, fed: dict):
    def hook(_module, inputs):
        fed[name].append(produced.get(id(inputs[0]), (None,))[0])
    return hook


def _check_pairs(fed: dict[str, list[str | None]]) -> list[tuple[str, str]]:
    pairs, used = [], set()
    for bn_name, sources in fed.items():
        if len(sources) != 1 or sources[0] is None or sources[0] in used:
            why = ("never runs" if not sources else "runs more than once" if len(sources) > 1
                   else "does not take a Conv2d output" if sources[0] is None else f"shares {sources[0]}")
            raise EdgeresError(f"BatchNorm {bn_name} {why}, so it cannot be folded into a convolution: "
                               "export needs every BN directly after its own Conv2d")
        used.add(sources[0])
        pairs.append((sources[0], bn_name))
    return pairs


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put `new` where the submodule called `name` (dotted path) was."""
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def fp16_range(model: nn.Module) -> dict[str, int]:
    """Counts over all floating parameters: total, |w| > 65504 (overflow), 0 < |w| < 2^-14 (subnormal).

    In numpy, single-threaded: ~7 torch ops per parameter each opened an intra-op parallel region, and on a
    busy 2-core box every region waits for a descheduled thread (measured 3 s per ResNet18, now ~0.05 s)."""
    import numpy as np
    total = overflow = subnormal = 0
    for p in model.parameters():
        if p.is_floating_point():
            a = np.abs(p.detach().cpu().float().numpy())
            total += a.size
            overflow += int(np.count_nonzero(a > FP16_MAX))
            subnormal += int(np.count_nonzero(a < FP16_MIN_NORMAL)) - int(np.count_nonzero(a == 0))
    return {"weights": total, "overflow": overflow, "subnormal": subnormal}


def warn_fp16_range(counts: dict[str, int], where: str) -> None:
    """Log what TensorRT would warn about when building FP16 (NVIDIA/TensorRT#3101)."""
    if counts["overflow"]:
        log.warning("%s: %d folded weights exceed the FP16 range (|w| > 65504): an FP16 build will overflow",
                    where, counts["overflow"])
    if counts["subnormal"] > SUBNORMAL_WARN_FRACTION * max(counts["weights"], 1):
        log.warning("%s: %d of %d folded weights are FP16 subnormals (|w| < 2^-14): FP16 loses precision there",
                    where, counts["subnormal"], counts["weights"])


__all__ = ["specialize", "freeze_for_export", "replace_module", "bn_mode", "plain_bn", "conv_bn_pairs", "fp16_range"]
