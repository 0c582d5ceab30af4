"""The RS-Net training input: one RandomResizedCrop + flip per image, resized to every resolution (Sec. 3.1).

Host side only (torch). Each sample is ([C,R,R] float tensor per resolution, high -> low), label.
"""
import math
import random
from typing import Sequence

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from edgeres.data import ImageSet
from edgeres.resolutions import parse_resolutions

CROP_SCALE = (0.08, 1.0)  # RS-Nets / ImageNet standard
CROP_RATIO = (3 / 4, 4 / 3)


def crop_box(height: int, width: int, scale: Sequence[float], ratio: Sequence[float],
             rng: random.Random) -> tuple[int, int, int, int]:
    """RandomResizedCrop's box (top, left, h, w), drawn from `rng` so workers and resumes are reproducible."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    side = min(height, width)  # fallback: the central square, as torchvision does for extreme ratios
    return (height - side) // 2, (width - side) // 2, side, side


class MultiResolutionTrainSet(torch.utils.data.Dataset):
    """One crop per image, the same crop resized (bilinear, antialiased) to all resolutions."""

    def __init__(self, images: ImageSet, resolutions: Sequence[int], mean, std,
                 scale: Sequence[float] = CROP_SCALE, ratio: Sequence[float] = CROP_RATIO, seed: int = 0):
        self.images, self.resolutions = images, parse_resolutions(resolutions)
        self.mean, self.std = torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)
        self.scale, self.ratio, self.seed, self.epoch = tuple(scale), tuple(ratio), seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch  # the crop of image i in epoch e depends on (seed, e, i) only

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        rng = random.Random(hash((self.seed, self.epoch, index)))
        image = torch.from_numpy(np.array(self.images.image(index))).permute(2, 0, 1)  # a copy: PIL arrays are read-only
        top, left, h, w = crop_box(image.shape[1], image.shape[2], self.scale, self.ratio, rng)
        if rng.random() < 0.5:
            image = TF.hflip(image)
            left = image.shape[2] - left - w
        views = [TF.resized_crop(image, top, left, h, w, [r, r], InterpolationMode.BILINEAR, antialias=True)
                 for r in self.resolutions]
        return [(v.float() / 255.0 - self.mean) / self.std for v in views], int(self.images.labels[index])
