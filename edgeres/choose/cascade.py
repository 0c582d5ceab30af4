"""Confidence cascade over the per-resolution artifacts of one RS-Net (torch-free, any backend).

The RS-Nets thesis picks a resolution at random per image and asks for "a more refined method for selecting
the scale". Here every image starts at the lowest resolution and moves to the next higher one only when the
prediction's confidence is below that stage's threshold; the last stage always answers. Stages are ordered
**low -> high** resolution (the reverse of the manifests' high -> low), so stage 0 is the cheapest.

Maths (confidence, stop stage, MACs accounting, threshold search) are pure numpy functions over logits in
`edgeres.choose.thresholds`; the runner (`CascadeRunner`) and the measured comparison (`evaluate_cascade`) sit
on top of them; the measured comparison is `edgeres.choose.compare.evaluate_cascade`.
Backend-agnostic: each stage runs through `edgeres.runtimes.open_runner`, so a build's TensorRT target
(`--target trt-fp16`) runs on the device it was built on, and ONNX Runtime targets anywhere.
"""
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edgeres.choose.thresholds import (  # noqa: F401 - the maths stays reachable as edgeres.choose.cascade.*
    CONFIDENCES,
    Tuning,
    cascade_macs,
    confidence_fn,
    max_softmax,
    paired_se_points,
    pick,
    random_stages,
    softmax,
    softmax_margin,
    stages_run,
    stop_stages,
    top1_pct,
    tune_thresholds,
)
from edgeres.data import eval_image, normalize
from edgeres.errors import EdgeresError

# ---------------------------------------------------------------- stages from a manifest

@dataclass
class Stage:
    """One per-resolution artifact; `scorer` maps 1,C,res,res float32 -> 1,classes logits (made on first use)."""

    artifact: Any  # edgeres.manifests.artifacts.Artifact
    threads: int | None = None
    # ORT pool threads busy-waiting after a run: off by default, since five stages' idle pools would steal the
    # cores of the stage running next (runtimes.open_runner); benchmarks/cascade_speed.py measures both
    spinning: bool = False
    _runner: Any = field(default=None, repr=False)

    @property
    def resolution(self) -> int:
        return self.artifact.resolution

    @property
    def path(self) -> Path:
        return Path(self.artifact.file)

    @property
    def macs(self) -> int:
        """Multiply-accumulates per image, from the manifest."""
        return int(self.artifact.macs)

    def use_threads(self, threads: int | None, opened: "Stage | None" = None) -> None:
        """Run with `threads` intra-op threads from the next call on: a new session when it changes, or the one
        `opened` (a stage of the same artifact already run with those threads) holds."""
        if threads != self.threads:
            same = opened is not None and opened.artifact is self.artifact and opened.threads == threads
            self.threads, self._runner = threads, opened._runner if same else None

    def scorer(self) -> Callable[[np.ndarray], np.ndarray]:
        if self._runner is None:
            from edgeres.runtimes import open_runner
            self._runner = open_runner(self.artifact, self.threads, spinning=self.spinning)
        return self._runner.infer


@dataclass(frozen=True)
class Source:
    """What a cascade needs from export.json/build.json: stages (low -> high) and the preprocessing."""

    path: Path  # the manifest
    target: str | None  # build target, None for an export
    stages: tuple[Stage, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_ratio: float
    data: str


def load_source(path: str | os.PathLike, target: str | None = None, threads: int | None = None,
                spinning: bool = False) -> Source:
    """A build directory/build.json (artifacts of one `target`) or an export directory/export.json."""
    from edgeres.manifests.artifacts import read_artifacts
    manifest, artifacts = read_artifacts(path)
    where = str(manifest.path)
    if manifest.kind == "build":
        target, artifacts = _one_target(artifacts, target, where)
    elif target is not None:
        raise EdgeresError(f"{where} is an export: --target applies to a build directory (build.json)")
    if any(a.macs is None for a in artifacts):
        raise EdgeresError(f"{where}: a graph has no MACs recorded: the manifest is damaged, regenerate it")
    stages = sorted((Stage(a, threads, spinning) for a in artifacts), key=lambda st: st.resolution)
    if len(stages) < 2:
        raise EdgeresError(f"{where} has {len(stages)} graph(s): a cascade needs at least two resolutions")
    pre = manifest.preprocessing
    return Source(manifest.path, target if manifest.kind == "build" else None, tuple(stages), pre.mean, pre.std,
                  pre.crop_ratio, manifest.data)


def _one_target(artifacts: list, target: str | None, where: str) -> tuple[str, list]:
    """Artifacts of one target; default ort-fp32, or the only ONNX Runtime target there is.

    A TensorRT target is checked for its device here, before any work, with one line saying what is missing.
    """
    ort = sorted({a.target for a in artifacts if a.backend == "ort"})
    every = sorted({a.target for a in artifacts})
    if target is None:
        target = "ort-fp32" if "ort-fp32" in ort else (ort[0] if len(ort) == 1 else None)
        if target is None:
            raise EdgeresError(f"{where} has several targets ({', '.join(every) or 'none'}): choose one with --target")
    if target not in every:
        raise EdgeresError(f"{where} has no target {target!r}: choose one of {', '.join(every)}")
    chosen = [a for a in artifacts if a.target == target]
    if any(a.backend == "trt" for a in chosen):
        from edgeres.runtimes.trt import require_device
        require_device(f"a cascade over {target}")
    return target, chosen


@dataclass(frozen=True)
class CascadeResult:
    prediction: int  # class index
    stage: int  # index of the stage that answered (0 = lowest resolution)
    resolution: int  # px
    confidence: float
    macs: int  # every stage run, 0..stage (a stage that never answers is skipped)


class CascadeRunner:
    """Run the lowest resolution first; escalate while confidence < that stage's threshold. A stage whose
    threshold is +inf (None in cascade.json) never answers and is skipped.

    `runner(image_hwc_uint8)` preprocesses per stage as `edgeres eval` does; `runner.run(inputs)` takes
    already-preprocessed `1,C,res,res` arrays keyed by resolution (so timing can exclude preprocessing).
    """

    def __init__(self, source: Source, thresholds: Sequence[float], confidence: str = "max-softmax"):
        if len(thresholds) != len(source.stages) - 1:
            raise EdgeresError(f"{len(source.stages)} stages need {len(source.stages) - 1} thresholds, "
                               f"got {len(thresholds)}")
        self.source, self.stages = source, source.stages
        # None (as stored in JSON) = this stage never answers: strict JSON has no Infinity
        self.thresholds = tuple(math.inf if t is None else float(t) for t in thresholds)
        self.confidence_name, self._confidence = confidence, confidence_fn(confidence)

    @classmethod
    def from_manifest(cls, path: str | os.PathLike, thresholds: Sequence[float], confidence: str = "max-softmax",
                      target: str | None = None, threads: int | None = None) -> "CascadeRunner":
        return cls(load_source(path, target, threads), thresholds, confidence)

    @classmethod
    def from_cascade_json(cls, path: str | os.PathLike, threads: int | None = None) -> "CascadeRunner":
        """Rebuild the tuned runner that `edgeres cascade` wrote to cascade.json, each stage with the threads it
        was measured with (`threads` sets them all instead)."""
        from edgeres.manifests.choose import read_cascade
        saved = read_cascade(path)
        runner = cls.from_manifest(saved.source, saved.thresholds, saved.confidence, saved.target, threads)
        if threads is None and len(saved.stage_threads) == len(runner.stages):
            for stage, stage_threads in zip(runner.stages, saved.stage_threads):
                stage.use_threads(stage_threads)
        return runner

    def preprocess(self, image: np.ndarray, stage: int) -> np.ndarray:
        src = self.source
        return normalize(eval_image(image, self.stages[stage].resolution, src.crop_ratio)[None], src.mean, src.std)

    def logits(self, stage: int, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.stages[stage].scorer()(x))

    def run(self, inputs: dict[int, np.ndarray] | Callable[[int], np.ndarray]) -> CascadeResult:
        """inputs: resolution -> 1,C,res,res float32 (or a function stage index -> that array)."""
        get = inputs if callable(inputs) else (lambda s: inputs[self.stages[s].resolution])
        macs, last = 0, len(self.stages) - 1
        for s, stage in enumerate(self.stages):
            if s < last and math.isinf(self.thresholds[s]):
                continue  # never answers: running it would change nothing (thresholds.stages_run)
            logits = self.logits(s, get(s))
            macs += stage.macs
            conf = float(self._confidence(logits)[0])
            if s == last or conf >= self.thresholds[s]:
                return CascadeResult(int(logits[0].argmax()), s, stage.resolution, conf, macs)
        raise AssertionError("unreachable: the last stage always answers")

    def __call__(self, image: np.ndarray) -> CascadeResult:
        return self.run(lambda s: self.preprocess(image, s))

    def run_stage(self, stage: int, x: np.ndarray) -> CascadeResult:
        """One resolution alone (the baselines): its prediction, its MACs only."""
        logits = self.logits(stage, x)
        return CascadeResult(int(logits[0].argmax()), stage, self.stages[stage].resolution,
                             float(self._confidence(logits)[0]), self.stages[stage].macs)
