"""RS-Nets from unchanged torchvision architectures: private BNs injected as `norm_layer`."""
import functools
from typing import Any, Callable, Sequence

from torch import nn

from edgeres._optional import require
from edgeres.arch import ARCHITECTURES, ArchSpec
from edgeres.errors import EdgeresError
from edgeres.models.switchable_bn import SwitchableBatchNorm2d
from edgeres.resolutions import parse_resolutions


def _resnet_small_input(model: nn.Module, in_channels: int, small_input: bool) -> None:
    if small_input:  # 3x3 stride-1 stem and no max-pool: 12-64 px inputs keep a spatial map (CIFAR-style)
        model.conv1 = nn.Conv2d(in_channels, model.conv1.out_channels, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
    elif in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, model.conv1.out_channels, 7, 2, 3, bias=False)


def _mobilenet_small_input(model: nn.Module, in_channels: int, small_input: bool) -> None:
    stem = model.features[0][0]
    stride = (1, 1) if small_input else stem.stride
    model.features[0][0] = nn.Conv2d(in_channels, stem.out_channels, 3, stride, 1, bias=False)


# name -> stem adapter; the torchvision builder has the same name (see arch.ARCHITECTURES)
STEM_ADAPTERS: dict[str, Callable[[nn.Module, int, bool], None]] = {
    "resnet18": _resnet_small_input, "resnet34": _resnet_small_input, "resnet50": _resnet_small_input,
    "mobilenet_v2": _mobilenet_small_input,
}


def build_plain(spec: ArchSpec, norm_layer: Callable[..., nn.Module] | None = None) -> nn.Module:
    """The torchvision model itself (plain BatchNorm2d unless `norm_layer` is given), with the stem adapted."""
    models = require("torchvision.models", "building a torchvision model")
    kwargs: dict[str, Any] = {"weights": None, "num_classes": spec.num_classes}
    if norm_layer is not None:
        kwargs["norm_layer"] = norm_layer
    if ARCHITECTURES[spec.name]:
        kwargs["width_mult"] = spec.width_mult
    model = models.get_model(spec.name, **kwargs)
    STEM_ADAPTERS[spec.name](model, spec.in_channels, spec.small_input)
    return model


def build_rsnet(spec: ArchSpec, resolutions: Sequence[int]) -> nn.Module:
    """A torchvision `spec.name` whose every BN is a SwitchableBatchNorm2d over `resolutions`."""
    resolutions = parse_resolutions(resolutions)
    model = build_plain(spec, functools.partial(SwitchableBatchNorm2d, resolutions=resolutions))
    if spec.quant is not None:
        from edgeres.arch import parse_quant
        from edgeres.models.lq import (
            apply_lq,  # LQ-Nets quantizers shared by all resolutions (private BNs stay private)
        )
        apply_lq(model, *parse_quant(spec.quant))
    return model


def check_resolutions_fit(model: nn.Module, resolutions: Sequence[int], in_channels: int) -> dict[int, int]:
    """Run one dummy image per resolution (eval mode); return the last feature map's side per resolution.

    A resolution the network cannot take (a map shrinking to nothing) is a one-line error before training.
    The dummy runs go through a copy on PyTorch's meta device: shapes and their errors without the arithmetic
    (5 ResNet18 forwards at 224..96 px took 5.6 s of a 37 s export on a busy 2-core box).
    """
    import copy

    import torch

    from edgeres.models.switchable_bn import at_resolution

    probe = copy.deepcopy(model).to("meta").eval()
    sides: dict[int, int] = {}
    last_map: list[int] = []
    for m in probe.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(lambda _m, _i, out: last_map.append(out.shape[-1]))
    for res in parse_resolutions(resolutions):
        last_map.clear()
        try:
            with torch.no_grad(), at_resolution(probe, res, allow_nearest=True):
                probe(torch.zeros(1, in_channels, res, res, device="meta"))
        except RuntimeError as exc:
            raise EdgeresError(f"resolution {res} cannot pass through this network "
                               f"({str(exc).splitlines()[0]}): use a larger resolution") from None
        sides[res] = last_map[-1]
    return sides
