"""Private BatchNorm per resolution (RS-Nets Sec. 3.2) and the interpolation rule for untrained ones (Sec. 4.3).

The active resolution is state of the whole model, switched with `set_resolution` / `at_resolution`, so any
torchvision/timm forward() works unchanged.
"""
import contextlib
import copy
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from edgeres.errors import EdgeresError
from edgeres.resolutions import parse_resolutions

_BN_TENSORS = ("weight", "bias", "running_mean", "running_var")


@dataclass(frozen=True)
class BNChoice:
    """Which private BNs serve resolution `res`: `high` with weight `w_high`, `low` with 1 - w_high."""

    res: int
    high: int
    low: int
    w_high: float

    @property
    def exact(self) -> bool:
        return self.high == self.low


def choose_bn(res: int, trained: Sequence[int], allow_nearest: bool = False) -> BNChoice:
    """Exact private BN, linear interpolation between the two neighbours, or (if asked) the nearest one."""
    trained = sorted(trained, reverse=True)
    if res in trained:
        return BNChoice(res, res, res, 1.0)
    if trained[-1] < res < trained[0]:
        high = min(r for r in trained if r > res)
        low = max(r for r in trained if r < res)
        return BNChoice(res, high, low, (res - low) / (high - low))
    if not allow_nearest:
        raise EdgeresError(
            f"resolution {res} is outside the trained range {trained[-1]}..{trained[0]}: choose one inside it, "
            "or allow the nearest trained BN explicitly (--nearest)")
    nearest = trained[0] if res > trained[0] else trained[-1]
    return BNChoice(res, nearest, nearest, 1.0)


class SwitchableBatchNorm2d(nn.Module):
    """One private `BatchNorm2d` per trained resolution, stored as `bn["<res>"]`.

    Signature-compatible with `nn.BatchNorm2d(num_features, eps, momentum, ...)` plus `resolutions`, so it
    can be injected as torchvision's `norm_layer` with `functools.partial`.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, *, resolutions: Sequence[int]):
        super().__init__()
        self.resolutions = parse_resolutions(resolutions)
        self.num_features = num_features
        self.bn = nn.ModuleDict({
            str(r): nn.BatchNorm2d(num_features, eps, momentum, affine, track_running_stats)
            for r in self.resolutions})
        self.choice = BNChoice(self.resolutions[0], self.resolutions[0], self.resolutions[0], 1.0)

    @classmethod
    def from_batchnorm(cls, bn: nn.BatchNorm2d, resolutions: Sequence[int]) -> "SwitchableBatchNorm2d":
        """Every private BN starts as an exact copy of `bn` (parameters and running statistics)."""
        new = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats,
                  resolutions=resolutions)
        for private in new.bn.values():
            private.load_state_dict(copy.deepcopy(bn.state_dict()))
        return new.to(device=bn.weight.device if bn.affine else None)

    def private(self, res: int) -> nn.BatchNorm2d:
        return self.bn[str(res)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.choice.exact:
            return self.private(self.choice.high)(x)
        if self.training:
            raise EdgeresError(f"resolution {self.choice.res} has no private BN to train: add it to the "
                               "trained resolutions instead of interpolating")
        high, low = self.private(self.choice.high), self.private(self.choice.low)
        mixed = interpolate_bn_tensors(high, low, self.choice.w_high)
        return F.batch_norm(x, mixed["running_mean"], mixed["running_var"], mixed["weight"], mixed["bias"],
                            False, 0.0, high.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, resolutions={list(self.resolutions)}, active={self.choice.res}"


def interpolate_bn_tensors(high: nn.BatchNorm2d, low: nn.BatchNorm2d, w_high: float) -> dict[str, torch.Tensor]:
    """w_high * high + (1 - w_high) * low for affine parameters and running statistics alike (Sec. 4.3)."""
    return {name: w_high * getattr(high, name) + (1.0 - w_high) * getattr(low, name) for name in _BN_TENSORS}


def switchable_layers(model: nn.Module) -> list[SwitchableBatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, SwitchableBatchNorm2d)]


def trained_resolutions(model: nn.Module) -> tuple[int, ...]:
    layers = switchable_layers(model)
    if not layers:
        raise EdgeresError("the model has no SwitchableBatchNorm2d: convert it with convert_to_switchable first")
    return layers[0].resolutions


def set_resolution(model: nn.Module, res: int, allow_nearest: bool = False) -> BNChoice:
    """Make every switchable BN of `model` serve resolution `res` (exact, interpolated or nearest)."""
    choice = choose_bn(int(res), trained_resolutions(model), allow_nearest)
    for layer in switchable_layers(model):
        layer.choice = choice
    return choice


@contextlib.contextmanager
def at_resolution(model: nn.Module, res: int, allow_nearest: bool = False) -> Iterator[BNChoice]:
    """`with at_resolution(model, 128): model(x128)` and the previous resolution comes back afterwards."""
    layers = switchable_layers(model)
    previous = [layer.choice for layer in layers]
    try:
        yield set_resolution(model, res, allow_nearest)
    finally:
        for layer, choice in zip(layers, previous):
            layer.choice = choice


def convert_to_switchable(model: nn.Module, resolutions: Sequence[int]) -> nn.Module:
    """Replace every BatchNorm2d in any module tree, in place, by a SwitchableBatchNorm2d copied from it.

    Until the private BNs are recalibrated or trained, the converted model equals the original at every
    resolution. SyncBatchNorm is left alone (convert it back to BatchNorm2d first).
    """
    resolutions = parse_resolutions(resolutions)
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            setattr(model, name, SwitchableBatchNorm2d.from_batchnorm(child, resolutions))
        elif not isinstance(child, SwitchableBatchNorm2d):
            convert_to_switchable(child, resolutions)
    return model
