"""RS-Nets from unchanged architectures: torchvision, timm or the user's own factory, with private BNs.

resnet18/34/50 and mobilenet_v2 get the private BNs injected as torchvision's `norm_layer` (and edgeres' own
stem adapters); every other architecture is built plain and converted (`make_switchable`), which gives the
same state-dict layout (`<bn>.bn.<res>.<tensor>`).
"""
import contextlib
import functools
import importlib
import os
import sys
from typing import Any, Callable, Iterator, Sequence

from torch import nn

from edgeres._optional import require
from edgeres.arch import ARCHITECTURES, ArchSpec
from edgeres.errors import EdgeresError, reraise_interrupt
from edgeres.models.switchable_bn import (
    SwitchableBatchNorm2d,
    convert_to_switchable,
    switchable_layers,
)
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
    """The architecture itself with plain BatchNorm2d (for the four stem-adapted torchvision models:
    `norm_layer` if given), untrained. A factory is imported and called: check `arch_code_trusted` first."""
    builders = {"torchvision": _torchvision, "timm": _timm, "factory": _factory}
    return builders[spec.kind](spec, norm_layer)


def _torchvision(spec: ArchSpec, norm_layer: Callable[..., nn.Module] | None) -> nn.Module:
    models = require("torchvision.models", "building a torchvision model")
    if spec.name not in models.list_models(module=models):
        raise EdgeresError(f"--arch {spec.name} is not a torchvision classification model: see "
                           "torchvision.models.list_models(), or use timm:NAME or module.path:factory")
    kwargs: dict[str, Any] = {"weights": None, "num_classes": spec.num_classes, **spec.kwargs}
    if norm_layer is not None:
        kwargs["norm_layer"] = norm_layer
    if ARCHITECTURES.get(spec.name):
        kwargs["width_mult"] = spec.width_mult
    model = _call(f"torchvision.models.get_model({spec.name!r})", models.get_model, spec.name, **kwargs)
    if spec.name in STEM_ADAPTERS:
        STEM_ADAPTERS[spec.name](model, spec.in_channels, spec.small_input)
    else:
        replace_stem_channels(model, spec.in_channels)
    return model


def _timm(spec: ArchSpec, norm_layer: Callable[..., nn.Module] | None) -> nn.Module:
    timm = require("timm", f"--arch {spec.name}")
    name = spec.name.removeprefix("timm:")
    if not timm.is_model(name):
        raise EdgeresError(f"--arch {spec.name}: timm has no model {name!r}: see timm.list_models('{name[:4]}*')")
    return _call(f"timm.create_model({name!r})", timm.create_model, name, pretrained=False,
                 num_classes=spec.num_classes, in_chans=spec.in_channels, **spec.kwargs)


def _factory(spec: ArchSpec, norm_layer: Callable[..., nn.Module] | None) -> nn.Module:
    model = _call(spec.name, resolve_factory(spec.name), **spec.kwargs)
    if not isinstance(model, nn.Module):
        raise EdgeresError(f"--arch {spec.name} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def _call(what: str, builder: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return builder(*args, **kwargs)
    except TypeError as exc:  # typically an argument the builder does not take (--arch-kwargs)
        raise EdgeresError(f"{what} rejects its arguments {sorted(kwargs)} ({exc}): check --arch-kwargs") from None


def resolve_factory(name: str) -> Callable[..., Any]:
    """'pkg.module:attr.path' -> that callable; the module is imported (the current directory is searched
    too, as uvicorn does for app strings)."""
    module_name, _, attr = name.partition(":")
    try:
        with _cwd_on_path():
            obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        reraise_interrupt(exc)
        raise EdgeresError(f"--arch {name}: cannot import {module_name} ({exc}): run from its directory or put "
                           "it on PYTHONPATH") from None
    for part in attr.split("."):
        obj = getattr(obj, part, None)
    if not callable(obj):
        raise EdgeresError(f"--arch {name}: {module_name} has no callable {attr!r}")
    return obj


@contextlib.contextmanager
def _cwd_on_path() -> Iterator[None]:
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def replace_stem_channels(model: nn.Module, in_channels: int) -> None:
    """Give the first Conv2d (the stem of torchvision's classifiers) `in_channels` inputs, if it has others."""
    from edgeres.models.specialize import replace_module
    name, conv = first_conv(model)
    if conv.in_channels == in_channels:
        return
    if conv.groups != 1:
        raise EdgeresError(f"the first convolution {name} is grouped: cannot give it {in_channels} input channels")
    replace_module(model, name, nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                                          conv.padding, conv.dilation, 1, conv.bias is not None, conv.padding_mode))


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module
    raise EdgeresError("the model has no Conv2d: edgeres makes CNNs resolution-switchable")


def build_rsnet(spec: ArchSpec, resolutions: Sequence[int]) -> nn.Module:
    """`spec`'s architecture whose every BN is a SwitchableBatchNorm2d over `resolutions` (untrained)."""
    resolutions = parse_resolutions(resolutions)
    if spec.name in ARCHITECTURES:
        model = build_plain(spec, functools.partial(SwitchableBatchNorm2d, resolutions=resolutions))
    else:
        model = make_switchable(build_plain(spec), resolutions, spec.name)
    if spec.quant is not None:
        from edgeres.arch import parse_quant
        from edgeres.models.lq import (
            apply_lq,  # LQ-Nets quantizers shared by all resolutions (private BNs stay private)
        )
        apply_lq(model, *parse_quant(spec.quant))
    return model


def make_switchable(model: nn.Module, resolutions: Sequence[int], what: str = "the model") -> nn.Module:
    """Private BNs for every BN of a plain model (in place; still exactly the original at every resolution).

    timm's BatchNormAct2d (BN + drop + act in one module) is split first so its BN can be switched. A model
    with no BatchNorm2d, or with a BN the switch cannot reach (SyncBatchNorm, another BN subclass, a frozen
    BN), is refused in one line.
    """
    split_norm_act(model)
    convert_to_switchable(model, resolutions)
    private = {id(bn) for layer in switchable_layers(model) for bn in layer.bn.values()}
    for name, module in model.named_modules():
        if _is_batchnorm(module) and id(module) not in private:
            raise EdgeresError(f"{what}: {name} is a {type(module).__name__}, which the resolution switch cannot "
                               "reach (only plain nn.BatchNorm2d become private per resolution): build it with "
                               "nn.BatchNorm2d")
    if not private:
        raise EdgeresError(f"{what} has no BatchNorm2d: an RS-Net switches resolutions through private BNs "
                           "(RS-Nets Sec. 3.2), so there is nothing to make switchable")
    return model


def _is_batchnorm(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm) or type(module).__name__.startswith("FrozenBatchNorm")


def split_norm_act(model: nn.Module) -> None:
    """timm's BatchNormAct2d -> Sequential(BatchNorm2d, drop, act): the same function, with a plain BN."""
    from edgeres.models.specialize import replace_module
    found = [(n, m) for n, m in model.named_modules() if type(m).__name__ == "BatchNormAct2d"
             and type(m).__module__.startswith("timm.") and isinstance(m, nn.BatchNorm2d)]
    for name, fused in found:
        bn = nn.BatchNorm2d(fused.num_features, fused.eps, fused.momentum, fused.affine, fused.track_running_stats)
        bn.load_state_dict({k: v for k, v in fused.state_dict().items() if "." not in k})
        replace_module(model, name, nn.Sequential(bn, fused.drop, fused.act))


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
