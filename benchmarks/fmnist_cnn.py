"""The converged benchmark's CNN (`--arch fmnist_cnn:build`): five 3x3 conv+BN+ReLU layers, two max-pools.

Why not MobileNetV2: on one CPU thread MobileNetV2 x0.5 (small-input) trains at ~70 images/s over 5
resolutions against ~190 for this CNN (same process, side by side: /tmp probe, see rsnet_converged's notes),
and it needs far more epochs to reach 90% on Fashion-MNIST, so a converged comparison of seven methods would
not fit the 90-minute, 2-core budget. Plain BNs: edgeres makes every one of them private per resolution,
as for any imported CNN.
"""
from torch import nn


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def build(num_classes: int = 10, in_channels: int = 1, width: int = 32) -> nn.Module:
    """28 px -> 14 -> 7 (12 px -> 6 -> 3), then global average pooling and one linear layer."""
    w = width
    return nn.Sequential(*_block(in_channels, w), *_block(w, w), nn.MaxPool2d(2),
                         *_block(w, 2 * w), *_block(2 * w, 2 * w), nn.MaxPool2d(2),
                         *_block(2 * w, 4 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, num_classes))
