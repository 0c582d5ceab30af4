"""The official RS-Nets checkpoints (github yikaiw/RS-Nets, PyTorch code in `non-quantization/`) as edgeres keys.

Their layout, read from `models/imagenet/parallel*.py` and `imagenet.py`:
* the model is wrapped in `torch.nn.DataParallel`: every key starts with `module.`;
* every shared layer is a `ModuleParallel` wrapper: `conv1.module.weight`, `fc.module.weight`;
* every BN is a `BatchNorm2dParallel` holding `bn_0 .. bn_{n-1}`: `bn1.bn_2.running_mean`, where `bn_i` was
  trained on the i-th entry of the script's `--sizes` (default 224 192 160 128 96);
* `alpha` (n raw ensemble scores, softmax-ed when used) is registered on the model: `module.alpha`;
* the file is a dict {epoch, arch, state_dict, best_acc0, best_acc, optimizer}.
ResNets are torchvision's ResNet layer for layer (same names once the wrappers are dropped). MobileNetV2 is the
tonylins/pytorch-mobilenet-v2 variant: the same network as torchvision's mobilenet_v2 (same table, ReLU6, 1280
head), with other module names (`conv.6` vs `conv.2`, a separate `conv` head, no classifier Dropout), renamed
here tensor by tensor.
"""
import re
from typing import Any, Sequence

from edgeres.errors import EdgeresError

SOURCE = "official RS-Nets (github yikaiw/RS-Nets, non-quantization PyTorch code)"
PREPROCESSING = "RGB in [0, 1] (ToTensor), no mean/std normalisation; eval: resize int(res/0.875), centre crop"
MEAN, STD, CROP_RATIO = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 0.875
RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
SUPPORTED = RESNETS + ("mobilenet_v2",)

_PRIVATE_BN = re.compile(r"\.bn_(\d+)\.")


def is_official_layout(state: dict[str, Any]) -> bool:
    """Private BNs named `bn_<i>` inside BatchNorm2dParallel: the official RS-Nets PyTorch layout."""
    return any(_PRIVATE_BN.search(key) for key in state)


def bn_indices(state: dict[str, Any]) -> list[int]:
    return sorted({int(m.group(1)) for key in state for m in [_PRIVATE_BN.search(key)] if m})


def switchable_state(state: dict[str, Any], arch: str, sizes: Sequence[int]) -> tuple[dict[str, Any], Any]:
    """(edgeres RS-Net state dict, alpha tensor or None): `bn_i` becomes the private BN of `sizes[i]`.

    `sizes` are the resolutions in the order the authors' `--sizes` listed them in training.
    """
    if arch not in SUPPORTED:
        raise EdgeresError(f"the weights are an official RS-Nets checkpoint, which edgeres maps for "
                           f"{', '.join(SUPPORTED)} only, not --arch {arch}: pass the architecture it was trained as")
    indices = bn_indices(state)
    if indices != list(range(len(sizes))):
        raise EdgeresError(f"the official checkpoint has {len(indices)} private BNs per layer (bn_{indices[0]}.."
                           f"bn_{indices[-1]}) but --res lists {len(sizes)} resolutions: pass its training --sizes "
                           "in their training order, e.g. --res 224,192,160,128,96")
    alpha, out = None, {}
    for key, value in state.items():
        name = key.removeprefix("module.")
        if name == "alpha":
            alpha = value
            continue
        name = name.replace(".module.", ".")
        name = _PRIVATE_BN.sub(lambda m: f".bn.{sizes[int(m.group(1))]}.", name)
        out[_rename_mobilenet(name) if arch == "mobilenet_v2" else name] = value
    if alpha is not None and tuple(alpha.shape) != (len(sizes),):
        raise EdgeresError(f"the official checkpoint's alpha has shape {tuple(alpha.shape)}, expected "
                           f"({len(sizes)},): the file is not an RS-Nets checkpoint for --res {list(sizes)}")
    return out, alpha


def official_meta(meta: dict[str, Any], arch: str) -> dict[str, Any]:
    """The scalar facts of the checkpoint dict (epoch, arch, best_acc0, best_acc); refuses another arch."""
    theirs = meta.get("arch")
    if isinstance(theirs, str) and theirs.removeprefix("parallel_").replace("mobilenetv2", "mobilenet_v2") != arch:
        raise EdgeresError(f"the official checkpoint was trained as {theirs!r} but --arch is {arch}: pass "
                           f"--arch {theirs.removeprefix('parallel_').replace('mobilenetv2', 'mobilenet_v2')}")
    return {k: meta[k] for k in ("epoch", "arch", "best_acc0", "best_acc") if k in meta}


# tonylins InvertedResidual.conv indices -> torchvision's: with expansion (pw, dw, pw-linear) and without (dw, pw)
_EXPANDED = {"0": "0.0", "1": "0.1", "3": "1.0", "4": "1.1", "6": "2", "7": "3"}
_UNEXPANDED = {"0": "0.0", "1": "0.1", "3": "1", "4": "2"}
_HEAD_BLOCK = "18"  # torchvision keeps the 1x1 head conv as features[18]; tonylins names it `conv`


def _rename_mobilenet(name: str) -> str:
    """One tonylins-MobileNetV2 key (wrappers already dropped) -> the torchvision mobilenet_v2 key."""
    if name.startswith("classifier."):
        return "classifier.1." + name.removeprefix("classifier.")
    if name.startswith("conv."):
        return f"features.{_HEAD_BLOCK}." + name.removeprefix("conv.")
    match = re.fullmatch(r"features\.(\d+)\.conv\.(\d+)\.(.+)", name)
    if match:
        block, layer, rest = match.groups()
        table = _UNEXPANDED if block == "1" else _EXPANDED  # features.1 is the t=1 block of the table
        if layer not in table:
            raise EdgeresError(f"official MobileNetV2 key {name!r} is not in the tonylins layout: not an RS-Nets "
                               "MobileNetV2 checkpoint")
        return f"features.{block}.conv.{table[layer]}.{rest}"
    return name  # features.0.{0,1}: the stem is Sequential(conv, bn, relu6) in both
