"""A random-weight RS-Net checkpoint for speed benchmarks: speed does not depend on training, but the
resolutions' BNs must differ (or a wrong BN choice would go unnoticed by the checks)."""
from pathlib import Path

MEAN, STD = (0.2860,), (0.3530,)  # fashion-mnist-mini, the bundled 1-channel data that verifies the graphs


def randomize_bn(model) -> None:
    import torch
    gen = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.weight.data = 0.5 + torch.rand(n, generator=gen)
            module.bias.data = torch.randn(n, generator=gen) * 0.1
            module.running_mean = torch.randn(n, generator=gen) * 0.1
            module.running_var = 0.5 + torch.rand(n, generator=gen)


def rsnet(arch: str, res: tuple[int, ...], **spec):
    """(model in eval mode, ArchSpec): torchvision `arch`, 1 channel, 10 classes, random weights and BNs."""
    import torch

    from edgeres.models import ArchSpec, build_rsnet
    arch_spec = ArchSpec(arch, 10, in_channels=1, **spec)
    torch.manual_seed(0)
    model = build_rsnet(arch_spec, res)
    randomize_bn(model)
    return model.eval(), arch_spec


def make_checkpoint(directory: Path, res: tuple[int, ...], arch: str = "resnet18", **spec) -> tuple[Path, object]:
    """Save a random RS-Net checkpoint that names fashion-mnist-mini as its data; returns (directory, model)."""
    from edgeres.data import open_images
    from edgeres.manifests.checkpoint import CheckpointInfo
    from edgeres.models.checkpoint import save_checkpoint
    model, arch_spec = rsnet(arch, res, **spec)
    classes = open_images("fashion-mnist-mini", "val").info.classes
    info = CheckpointInfo(arch_spec, res, MEAN, STD, 1.0, "fashion-mnist-mini", classes)
    save_checkpoint(directory, model, info)
    return directory, model
