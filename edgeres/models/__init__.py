"""RS-Net core: private BNs per resolution, generic conversion of any BN CNN, torchvision/timm/factory builders."""
from edgeres.arch import ARCHITECTURES, ArchSpec
from edgeres.models.rsnet import (
           build_plain,
           build_rsnet,
           check_resolutions_fit,
           make_switchable,
)
from edgeres.models.switchable_bn import (
           BNChoice,
           SwitchableBatchNorm2d,
           at_resolution,
           choose_bn,
           convert_to_switchable,
           interpolate_bn_tensors,
           set_resolution,
           switchable_layers,
           trained_resolutions,
)

__all__ = ["ARCHITECTURES", "ArchSpec", "BNChoice", "SwitchableBatchNorm2d", "at_resolution", "build_plain",
           "build_rsnet", "check_resolutions_fit", "choose_bn", "make_switchable", "convert_to_switchable", "interpolate_bn_tensors",
           "set_resolution", "switchable_layers", "trained_resolutions"]
