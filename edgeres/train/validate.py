"""Accuracy during and after training: per-resolution top-1/top-5 and the α-weighted ensemble, shard per rank.

Preprocessing is `data.eval_batches` (the same as `edgeres eval`), so the numbers in checkpoint.json are the
numbers `edgeres eval` prints. Under DDP each rank scores every world-th image and the hit counts are summed.
"""
from typing import Iterator, Sequence

import numpy as np
import torch

from edgeres.data import ImageSet, eval_batches
from edgeres.evaluate import topk_hits
from edgeres.models import at_resolution, switchable_layers
from edgeres.train.distributed import Dist, all_sum
from edgeres.train.losses import ensemble_weights

CACHE_BYTES = 256 << 20  # cache preprocessed batches below this size (a 2k-image 28 px set is ~20 MB)


class EvalSet:
    """This rank's share of `images`, preprocessed at every resolution: batches of ({res: NCHW}, labels)."""

    def __init__(self, images: ImageSet, resolutions: Sequence[int], ctx: Dist, batch_size: int = 128,
                 shard: bool = True):
        from edgeres.train.setup import SubsetImages
        rank, world = (ctx.rank, ctx.world) if shard else (0, 1)  # shard=False: every rank sees every image
        self.images = SubsetImages(images, range(rank, len(images), world), f"rank{rank}")
        self.resolutions, self.batch_size = tuple(resolutions), batch_size
        info = images.info
        size = len(self.images) * info.channels * sum(r * r for r in resolutions) * 4
        self._cache = list(self._generate()) if size <= CACHE_BYTES else None

    def _generate(self) -> Iterator[tuple[dict[int, torch.Tensor], np.ndarray]]:
        info = self.images.info
        streams = [eval_batches(self.images, r, info.mean, info.std, info.eval_crop_ratio, self.batch_size)
                   for r in self.resolutions]
        for parts in zip(*streams):
            yield {r: torch.from_numpy(x) for r, (x, _) in zip(self.resolutions, parts)}, parts[0][1]

    def __iter__(self):
        return iter(self._cache) if self._cache is not None else self._generate()


def measure(net: torch.nn.Module, evalset: EvalSet, ctx: Dist, alpha: torch.Tensor | None = None) -> dict[str, dict]:
    """{"28": {"top1": %, "top5": %}, ..., "ensemble": {...} if alpha is given}, summed over all ranks."""
    keys = [str(r) for r in evalset.resolutions] + (["ensemble"] if alpha is not None else [])
    hits = {k: [0.0, 0.0] for k in keys}
    count = 0
    was_training = net.training
    net.eval()
    weights = None if alpha is None else ensemble_weights(alpha.detach().float().cpu())
    with torch.no_grad():
        for xs, y in evalset:
            logits = {r: _logits(net, r, x, ctx.device) for r, x in xs.items()}
            if weights is not None:
                logits["ensemble"] = sum(w * logits[r] for w, r in zip(weights.numpy(), evalset.resolutions))
            for key, z in logits.items():
                hits[str(key)][0] += topk_hits(z, y, 1)
                hits[str(key)][1] += topk_hits(z, y, 5)
            count += len(y)
    net.train(was_training)
    totals = all_sum([v for k in keys for v in hits[k]] + [count], ctx)
    n = max(totals[-1], 1.0)
    return {k: {"top1": round(100 * totals[2 * i] / n, 3), "top5": round(100 * totals[2 * i + 1] / n, 3)}
            for i, k in enumerate(keys)}


def _logits(net: torch.nn.Module, res: int, x: torch.Tensor, device: str) -> np.ndarray:
    with at_resolution(net, res):
        return net(x.to(device)).float().cpu().numpy()


def calibration_set(train: ImageSet, resolutions: Sequence[int], count: int, ctx: Dist) -> EvalSet | None:
    """`count` training images (fixed pick, the same on every rank) for `reestimate_bn`; None when count is 0."""
    if count <= 0:
        return None
    from edgeres.train.setup import SPLIT_SEED, SubsetImages
    pick = np.random.default_rng(SPLIT_SEED).permutation(len(train))[:count]
    return EvalSet(SubsetImages(train, pick, "bn-calib"), resolutions, ctx, shard=False)


def reestimate_bn(net: torch.nn.Module, calib: EvalSet, device: str) -> None:
    """Precise BN: each private BN's running mean/var become the plain average over `calib` at its resolution.

    During training they are momentum-0.1 averages over the last ~10 steps, which lag the weights at a high
    lr: an RS-Net of benchmarks/rsnet_recipe.py (mean, lr 0.1) after epoch 2 read 10-17% holdout top-1 with
    them and 48-55% with statistics re-estimated on 512 training images, same weights. Weights, BN scales/shifts and the gradient are untouched; eval preprocessing, as at test time.
    """
    bns = [(layer.private(r), r) for layer in switchable_layers(net) for r in calib.resolutions]
    saved = [bn.momentum for bn, _ in bns]
    was_training = net.training
    net.eval()
    for bn, _ in bns:
        bn.reset_running_stats()
        bn.momentum, bn.training = None, True  # momentum None: cumulative average over the batches
    try:
        with torch.no_grad():
            for xs, _ in calib:
                for r, x in xs.items():
                    with at_resolution(net, r):
                        net(x.to(device))
    finally:
        for (bn, _), momentum in zip(bns, saved):
            bn.momentum = momentum
        net.train(was_training)
