"""Top-1/top-5 per resolution, for a checkpoint (PyTorch) or any scorer of NCHW float32 batches.

The preprocessing is `data.eval_batches` for every backend, so PyTorch and ONNX Runtime numbers compare.
"""
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from edgeres.data import (
    SUBSET_RULE,
    ImageSet,
    eval_batches,
    open_images,
    stratified_indices,
)
from edgeres.errors import EdgeresError
from edgeres.resolutions import parse_resolutions
from edgeres.runtimes import open_runner

Scorer = Callable[[np.ndarray], np.ndarray]  # N,C,H,W float32 -> N,classes logits


@dataclass(frozen=True)
class Accuracy:
    top1: float  # percent
    top5: float  # percent
    count: int

    def top1_interval(self, z: float = 1.96) -> tuple[float, float]:
        """Wilson score interval of top-1 (percent), 95% by default: how far `count` images pin it down."""
        if self.count == 0:
            return 0.0, 100.0
        p, n = self.top1 / 100.0, self.count
        centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        scale = 100.0 / (1 + z * z / n)
        return max(0.0, (centre - half) * scale), min(100.0, (centre + half) * scale)

    def to_json(self) -> dict[str, float]:
        low, high = self.top1_interval()
        return {"top1": round(self.top1, 3), "top5": round(self.top5, 3), "count": self.count,
                "top1_ci95": [round(low, 2), round(high, 2)]}


def topk_hits(logits: np.ndarray, labels: np.ndarray, k: int) -> int:
    """How many rows have their label among the k largest logits."""
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return int((top == labels[:, None]).any(axis=1).sum())


def accuracy_of(batches: Iterable[tuple[np.ndarray, np.ndarray]], score: Scorer) -> Accuracy:
    hits1 = hits5 = count = 0
    for x, y in batches:
        logits = np.asarray(score(x), dtype=np.float32)
        hits1 += topk_hits(logits, y, 1)
        hits5 += topk_hits(logits, y, 5)
        count += len(y)
    if count == 0:
        raise EdgeresError("no images to evaluate: the split is empty or --limit is 0")
    return Accuracy(100.0 * hits1 / count, 100.0 * hits5 / count, count)


def evaluate_scorers(scorers: dict[int, Scorer], images: ImageSet, mean, std, crop_ratio: float,
                     batch_size: int = 64, limit: int | None = None) -> dict[int, Accuracy]:
    """Accuracy of one scorer per resolution on the same images (`limit`: a class-stratified subset)."""
    indices = subset(images, limit)
    return {res: accuracy_of(eval_batches(images, res, mean, std, crop_ratio, batch_size, indices=indices), score)
            for res, score in scorers.items()}


def subset(images: ImageSet, limit: int | None):
    """The indices of `limit` images (SUBSET_RULE), None for all of them."""
    return None if limit is None or limit >= len(images) else stratified_indices(images.labels, limit)


def subset_rule(images: ImageSet, limit: int | None) -> str:
    """What a manifest records about which images were used."""
    return "all" if subset(images, limit) is None else f"{limit} of {len(images)}, {SUBSET_RULE}"


def results_json(results: dict, source, split: str, limit: int | None) -> dict:
    """What `edgeres eval --json` writes: kind "eval", so that a later run may replace it (and nothing else)."""
    return {"kind": "eval", "format_version": 1, "source": str(source), "split": split,
            "subset": "all" if limit is None else f"at most {limit} images, {SUBSET_RULE}",
            "results": {str(r): a.to_json() for r, a in results.items()}}


def torch_scorer(model, res: int, allow_nearest: bool = False, device: str = "cpu") -> Scorer:
    """A scorer that switches `model` to `res` for each batch (so several can share one model)."""
    from edgeres.runtimes.torch_eager import TorchRunner
    return TorchRunner(model, res, allow_nearest=allow_nearest, device=device).infer


def evaluate(checkpoint: str | os.PathLike, *, data: str | None = None, resolutions: Sequence[int] | str | None = None,
             split: str = "val", batch_size: int = 64, limit: int | None = None,
             allow_nearest: bool = False) -> dict[int, Accuracy]:
    """Top-1/top-5 of a checkpoint at each resolution (default: its trained ones) on `data` (default: its own)."""
    from edgeres import _optional
    _optional.torch("evaluating a checkpoint")
    from edgeres.models import choose_bn
    from edgeres.models.checkpoint import load_checkpoint

    model, info, _ = load_checkpoint(checkpoint)
    images = open_images(data or info.data, split)
    check_classes(images, info.arch.num_classes, checkpoint)
    check_channels(images, info.arch.in_channels, checkpoint)
    res_list = parse_resolutions(resolutions) if resolutions is not None else info.resolutions
    for r in res_list:  # fail on an out-of-range resolution before any work
        choose_bn(r, info.resolutions, allow_nearest)
    scorers = {r: torch_scorer(model, r, allow_nearest) for r in res_list}
    return evaluate_scorers(scorers, images, info.mean, info.std, info.eval_crop_ratio, batch_size, limit)


def check_classes(images: ImageSet, num_classes: int, source) -> None:
    if len(images.info.classes) != num_classes:
        raise EdgeresError(f"{images.info.name} has {len(images.info.classes)} classes but {source} predicts "
                           f"{num_classes}: use the data the model was trained on")


def check_channels(images: ImageSet, channels: int | None, source, flag: str = "--data") -> None:
    """Images with the channel count the model takes (None: unknown, nothing to check)."""
    if channels is not None and images.info.channels != channels:
        raise EdgeresError(f"{flag} {images.info.name} has {images.info.channels}-channel images but {source} "
                           f"take {channels}-channel images: pass the {flag} the model was trained on")


# ONNX artifacts (export/build outputs): ONNX Runtime only, no torch, so the device side can run it too.
def is_onnx_source(path: str | os.PathLike) -> bool:
    """A .onnx file, a build.json/export.json, or a directory holding one of them (and no checkpoint)."""
    path = Path(path)
    if path.is_file():
        return path.suffix == ".onnx" or path.name in ("build.json", "export.json")
    return not (path / "checkpoint.json").exists() and any((path / n).exists() for n in ("build.json", "export.json"))


def evaluate_onnx(path: str | os.PathLike, *, data: str | None = None,
                  resolutions: Sequence[int] | str | None = None, split: str = "val", batch_size: int = 64,
                  limit: int | None = None, targets: Sequence[str] | None = None) -> dict[str, Accuracy]:
    """Top-1/top-5 of every artifact a build/export manifest lists (or of one .onnx), each on its own runner.

    Keys are "<target>@<resolution>" ("onnx-fp32@<resolution>" for exported graphs). TensorRT engines run only
    on a device with TensorRT: named in `targets` off such a device they are a one-line error, otherwise they
    are skipped with a warning. Preprocessing and data come from the manifest.
    """
    manifest, entries = onnx_entries(path)
    entries = _wanted(entries, resolutions, targets)
    images = open_images(data or manifest.data, split)
    check_classes(images, len(manifest.classes), manifest.path)
    pre = manifest.preprocessing
    check_channels(images, pre.channels, f"the graphs of {manifest.path}")
    results = {}
    for artifact in entries:
        runner = open_runner(artifact, spinning=True, exact_int8=True)  # the graph's accuracy on any CPU
        batches = eval_batches(images, artifact.resolution, pre.mean, pre.std, pre.crop_ratio,
                               runner.static_batch or batch_size, indices=subset(images, limit))
        results[f"{artifact.target}@{artifact.resolution}"] = accuracy_of(batches, runner.infer)
        runner.close()
    return results


def _wanted(entries: list, resolutions, targets) -> list:
    """The requested artifacts; TensorRT rows off a device: an error if asked for by name, else skipped."""
    import logging

    from edgeres.runtimes.trt import cuda_available
    if resolutions:
        wanted = set(parse_resolutions(resolutions))
        entries = [e for e in entries if e.resolution in wanted]
    if targets:
        unknown = sorted(set(targets) - {e.target for e in entries})
        if unknown:
            raise EdgeresError(f"no target {', '.join(unknown)} in the manifest; available: "
                               f"{', '.join(sorted({e.target for e in entries}))}")
        entries = [e for e in entries if e.target in targets]
    missing = cuda_available() if any(e.backend == "trt" for e in entries) else None
    if missing and targets and any(e.backend == "trt" for e in entries):
        raise EdgeresError(f"evaluating TensorRT engines needs TensorRT and a CUDA device, but {missing}: run "
                           "`edgeres eval` on the device the engines were built on")
    if missing:
        logging.getLogger("edgeres.eval").warning("skipping the TensorRT engines (%s): they run only on their "
                                                  "device", missing)
        entries = [e for e in entries if e.backend != "trt"]
    if not entries:
        raise EdgeresError("no artifact to evaluate (at the requested resolutions/targets)")
    return entries


def onnx_entries(path: str | os.PathLike) -> tuple[dict, list]:
    """(manifest, artifacts) for a build/export source or one .onnx file listed by one."""
    from edgeres.manifests.artifacts import read_artifacts
    path = Path(path)
    if path.suffix == ".onnx":
        return single_onnx_entry(path)
    manifest, artifacts = read_artifacts(path)
    return manifest, [a for a in artifacts if a.backend in ("ort", "trt")]


def single_onnx_entry(path) -> tuple[dict, list]:
    """A lone .onnx is evaluated with the preprocessing of the build/export manifest that lists it."""
    for folder in (path.parent, path.parent.parent):
        for kind in ("build", "export"):
            if not (folder / f"{kind}.json").exists():
                continue
            manifest, entries = onnx_entries(folder / f"{kind}.json")
            found = [e for e in entries if Path(e.file) == path.resolve()]
            if found:
                return manifest, found
    raise EdgeresError(f"{path} is not listed in a build.json/export.json beside it (or one folder up): "
                       f"evaluate its build or export directory instead")
