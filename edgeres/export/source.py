"""What every exported graph needs: the settings, the checkpoint being exported, and the reference logits."""
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edgeres import __version__
from edgeres.defaults import DEFAULT_OPSET
from edgeres.export.checks import FLOAT_RULE, STEP_RULE, Rule


@dataclass(frozen=True)
class ExportSettings:
    opset: int = DEFAULT_OPSET  # see edgeres.defaults
    dynamic_batch: bool = False
    allow_nearest: bool = False
    verify_images: int = 64  # real images per resolution compared between PyTorch and ONNX Runtime


@dataclass
class Source:
    """The checkpoint being exported and what every graph needs from it."""

    model: Any  # the RS-Net (eval mode)
    info: Any  # CheckpointInfo
    sha256: str  # of the weights file
    path: Path
    images: Any  # ImageSet used for verification
    sides: dict[int, int]  # resolution -> final feature-map side (px)
    ort_logits: dict[int, np.ndarray] = field(default_factory=dict)  # folded graphs' verified outputs
    inputs: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)  # (res, count) -> verification images
    pairs: list[tuple[str, str]] | None = None  # (conv, BN) names: the same at every resolution, found once

    @property
    def rule(self) -> Rule:
        """LQ activation quantizers (steps) can flip on rounding: they get the looser, stated STEP_RULE."""
        from edgeres.arch import parse_quant
        quant = self.info.arch.quant
        return STEP_RULE if quant is not None and parse_quant(quant)[1] is not None else FLOAT_RULE

    def graph_name(self, tag: str) -> str:
        return f"{self.info.arch.slug}_{tag}.onnx"  # slug: timm:x / module:factory names hold a colon


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """PyTorch on one intra-op thread inside, the caller's count restored after. For the batch-1 work of export
    (dummy forwards, tracing, folding): its ops are too small to gain from threads, and on a busy 2-core box
    every parallel region waits for a descheduled thread (5-resolution ResNet18 export: 17-19 s on one thread,
    33-49 s on two). The verification forward on a batch of real images keeps the caller's threads."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def bn_pairs(src: Source) -> list[tuple[str, str]]:
    """The RS-Net's (conv, BN) pairs, found once by one dummy forward at the smallest resolution (cheapest)
    of a frozen copy, as `specialize` would find them at every resolution."""
    if src.pairs is None:
        import copy

        from edgeres.models.specialize import conv_bn_pairs, freeze_for_export
        from edgeres.models.switchable_bn import set_resolution
        probe = copy.deepcopy(src.model).eval()
        low = min(src.sides)
        set_resolution(probe, low, allow_nearest=True)
        freeze_for_export(probe)
        src.pairs = conv_bn_pairs(probe, low)
    return src.pairs


def graph_metadata(src: Source, **extra: Any) -> dict[str, Any]:
    """ONNX metadata_props: what a runtime needs to feed the graph, and where it came from."""
    import json
    info = src.info
    props = {"resolution": None, "mean": json.dumps(list(info.mean)), "std": json.dumps(list(info.std)),
             "eval_crop_ratio": info.eval_crop_ratio, "num_classes": info.arch.num_classes,
             "in_channels": info.arch.in_channels, "classes": json.dumps(list(info.classes)),
             "arch": json.dumps(info.arch.to_json(), sort_keys=True), "checkpoint_sha256": src.sha256,
             "edgeres_version": __version__, **extra}
    return {f"edgeres.{k}": v for k, v in props.items() if v is not None}


def verification_inputs(src: Source, res: int, count: int) -> np.ndarray:
    """The first `count` images of the data, preprocessed as for eval at `res`: N,C,res,res float32.

    Kept on `src`: the folded graph and the switchable graph are verified on the same images.
    """
    from edgeres.data import eval_batches
    if (res, count) not in src.inputs:
        info = src.info
        batches = eval_batches(src.images, res, info.mean, info.std, info.eval_crop_ratio, 64, count)
        src.inputs[(res, count)] = np.concatenate([x for x, _ in batches])
    return src.inputs[(res, count)]


def torch_logits(src: Source, xs: np.ndarray, res: int, allow_nearest: bool) -> np.ndarray:
    """The RS-Net itself at `res` (not the folded copy): the reference every graph must match."""
    from edgeres.runtimes.torch_eager import TorchRunner
    runner = TorchRunner(src.model, res, src.info.arch.in_channels, allow_nearest)
    return np.concatenate([runner.infer(xs[i:i + 64]) for i in range(0, len(xs), 64)])


def ort_logits(path: Path, xs: np.ndarray, extra_feeds: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Logits of a graph in ONNX Runtime (fed in its static batch when it has one)."""
    from edgeres.runtimes.ort import OrtRunner
    # spinning off: idle pool threads that busy-wait between the runs only steal a busy box's cores
    return OrtRunner(path, feeds=extra_feeds, spinning=False).infer(xs)
