"""Confidence cascade over the per-resolution artifacts of one RS-Net (torch-free, any backend).

The RS-Nets thesis picks a resolution at random per image and asks for "a more refined method for selecting
the scale". Here every image starts at the lowest resolution and moves to the next higher one only when the
prediction's confidence is below that stage's threshold; the last stage always answers. Stages are ordered
**low -> high** resolution (the reverse of the manifests' high -> low), so stage 0 is the cheapest.

Maths (confidence, stop stage, MACs accounting, threshold search) are pure numpy functions over logits in
`edgeres.choose.thresholds`; the runner (`CascadeRunner`) and the measured comparison (`evaluate_cascade`) sit
on top of them.
Backend-agnostic: each stage runs through `edgeres.runtimes.open_runner`, so a build's TensorRT target
(`--target trt-fp16`) runs on the device it was built on, and ONNX Runtime targets anywhere.
"""
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edgeres._io import check_out_dir, relative_to, staged_dir
from edgeres.choose.thresholds import (  # noqa: F401 - the maths stays reachable as edgeres.choose.cascade.*
    CONFIDENCES, Tuning, cascade_macs, confidence_fn, max_softmax, pick, random_stages, softmax, softmax_margin,
    stop_stages, top1_pct, tune_thresholds)
from edgeres.choose.splits import SPLIT_SEED, split_json, stratified_halves, stratified_order
from edgeres.errors import EdgeresError, EdgeresUsageError
from edgeres.manifests.choose import write_cascade
from edgeres.runtimes.timing import timed_call

CASCADE_FILE = "cascade.json"
MARKERS = (CASCADE_FILE,)
TUNE_SPLITS = ("val-half", "train")


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
    macs: int  # every stage run, 0..stage


class CascadeRunner:
    """Run the lowest resolution first; escalate while confidence < that stage's threshold.

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
        """Rebuild the tuned runner that `edgeres cascade` wrote to cascade.json."""
        from edgeres.manifests.choose import read_cascade
        saved = read_cascade(path)
        return cls.from_manifest(saved.source, saved.thresholds, saved.confidence, saved.target, threads)

    def preprocess(self, image: np.ndarray, stage: int) -> np.ndarray:
        from edgeres.data import eval_image, normalize
        src = self.source
        return normalize(eval_image(image, self.stages[stage].resolution, src.crop_ratio)[None], src.mean, src.std)

    def logits(self, stage: int, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.stages[stage].scorer()(x))

    def run(self, inputs: dict[int, np.ndarray] | Callable[[int], np.ndarray]) -> CascadeResult:
        """inputs: resolution -> 1,C,res,res float32 (or a function stage index -> that array)."""
        get = inputs if callable(inputs) else (lambda s: inputs[self.stages[s].resolution])
        macs = 0
        for s, stage in enumerate(self.stages):
            logits = self.logits(s, get(s))
            macs += stage.macs
            conf = float(self._confidence(logits)[0])
            if s == len(self.stages) - 1 or conf >= self.thresholds[s]:
                return CascadeResult(int(logits[0].argmax()), s, stage.resolution, conf, macs)
        raise AssertionError("unreachable: the last stage always answers")

    def __call__(self, image: np.ndarray) -> CascadeResult:
        return self.run(lambda s: self.preprocess(image, s))

    def run_stage(self, stage: int, x: np.ndarray) -> CascadeResult:
        """One resolution alone (the baselines): its prediction, its MACs only."""
        logits = self.logits(stage, x)
        return CascadeResult(int(logits[0].argmax()), stage, self.stages[stage].resolution,
                             float(self._confidence(logits)[0]), self.stages[stage].macs)


# ---------------------------------------------------------------- tune on one split, compare on another

@dataclass(frozen=True)
class MethodRow:
    """One line of the comparison, measured on the report images."""

    method: str  # "highest", "random", "cascade"
    top1: float  # percent
    mean_macs: float  # per image
    mean_latency_ms: float  # wall time per image: preprocessing of every stage run + inference (not decoding)
    p50_latency_ms: float
    images: int
    stage_share: tuple[float, ...]  # fraction of images answered at each stage, low -> high resolution
    p90_latency_ms: float = math.nan
    p99_latency_ms: float = math.nan


@dataclass(frozen=True)
class CascadeReport:
    source: Source
    confidence: str
    max_drop: float  # points of top-1 vs the highest resolution, the tuning constraint
    tuning: Tuning
    tune_split: str  # which images the thresholds were tuned on
    report_split: str  # which images the rows were measured on
    seed: int
    rows: tuple[MethodRow, ...]
    splits: dict = field(default_factory=dict)  # seed and, per split, its images and class histogram

    def row(self, method: str) -> MethodRow:
        return next(r for r in self.rows if r.method == method)

    def to_json(self, base: str | os.PathLike | None = None) -> dict[str, Any]:
        """cascade.json; with `base` (its directory) the paths in it are relative to it, so it can move."""
        src = self.source
        where = (lambda p: relative_to(p, base)) if base is not None else str
        return {"source": {"path": where(src.path), "target": src.target},
                "stages": [{"resolution": s.resolution, "file": where(s.path), "macs": s.macs} for s in src.stages],
                "confidence": self.confidence, "max_drop": self.max_drop, "thresholds": [None if math.isinf(t) else t for t in self.tuning.thresholds],
                "tuning": {"split": self.tune_split, "top1": self.tuning.top1,
                           "reference_top1": self.tuning.reference_top1, "mean_macs": self.tuning.mean_macs},
                "report_split": self.report_split, "random_seed": self.seed, "splits": self.splits,
                "rows": [{**r.__dict__, "stage_share": list(r.stage_share)} for r in self.rows]}


def evaluate_cascade(source: str | os.PathLike, *, data: str | None = None, max_drop: float = 0.5,
                     confidence: str = "max-softmax", target: str | None = None, tune_on: str = "val-half",
                     seed: int = 0, limit: int | None = None, threads: int | None = None,
                     spinning: bool = False, out: str | os.PathLike | None = None) -> CascadeReport:
    """Tune thresholds for `max_drop` points, then compare highest-only, random and cascade.

    tune_on="val-half": tune on one stratified half of the val images, report on the other;
    tune_on="train": tune on N train images, report on N val images. `limit` caps the val images used.
    Every subset and half is a seeded (SPLIT_SEED), class-stratified selection (a folder dataset is ordered by
    class: first-N would tune on some classes and report on others); cascade.json records each split's class
    histogram. Writes `out/cascade.json` when `out` is given.
    """
    if not (math.isfinite(max_drop) and max_drop >= 0):
        raise EdgeresUsageError(f"--max-drop must be a finite number >= 0 (points of top-1), got {max_drop}")
    if out is not None:
        check_out_dir(out, MARKERS, "cascade")
    src = load_source(source, target, threads, spinning)
    runner = CascadeRunner(src, [np.inf] * (len(src.stages) - 1), confidence)  # thresholds set after tuning
    (tune_set, tune_idx, tune_name), (report_set, report_idx, report_name) = _splits(
        data or runner.source.data, tune_on, limit)
    splits = {"seed": SPLIT_SEED, "method": "seeded shuffle within each class, classes interleaved by rank",
              "tune": split_json(tune_name, tune_set, tune_idx), "report": split_json(report_name, report_set, report_idx)}
    if report_set.info.channels != len(src.mean):
        raise EdgeresError(f"{report_set.info.name} has {report_set.info.channels}-channel images, the graphs take "
                           f"{len(src.mean)}: pass the --data the model was trained on")
    logits = np.stack([_stage_logits(runner, s, tune_set, tune_idx) for s in range(len(runner.stages))])
    tuning = tune_thresholds(np.stack([runner._confidence(l) for l in logits]), logits.argmax(-1),
                             tune_set.labels[tune_idx], [s.macs for s in runner.stages], max_drop)
    runner.thresholds = tuning.thresholds
    rows = _measure(runner, report_set, report_idx, seed)
    report = CascadeReport(runner.source, confidence, max_drop, tuning, tune_name, report_name, seed, rows, splits)
    if out is not None:
        with staged_dir(out, MARKERS, "cascade", keep=lambda name: name != CASCADE_FILE) as tmp:
            write_cascade(tmp / CASCADE_FILE, report.to_json(out))
    return report


def _splits(data: str, tune_on: str, limit: int | None):
    """((tune images, indices, description), (report images, indices, description)), disjoint by design."""
    from edgeres.data import open_images
    if tune_on not in TUNE_SPLITS:
        raise EdgeresError(f"unknown tuning split {tune_on!r}: choose one of {', '.join(TUNE_SPLITS)}")
    if not data:
        raise EdgeresError("the manifest names no dataset: pass --data NAME|DIR")
    val = open_images(data, "val")
    n = len(val) if limit is None else min(limit, len(val))
    if n < 2:
        raise EdgeresError(f"{data} val has {n} image(s) to use: the cascade needs at least 2 (raise --limit)")
    chosen = stratified_order(val.labels, SPLIT_SEED)[:n]
    if tune_on == "val-half":
        tune, report = stratified_halves(val.labels, chosen)
        return ((val, tune, f"val stratified half 1 of {n}"), (val, report, f"val stratified half 2 of {n}"))
    train = open_images(data, "train")
    m = min(n, len(train))
    return ((train, np.sort(stratified_order(train.labels, SPLIT_SEED)[:m]), f"train stratified {m}"),
            (val, np.sort(chosen), f"val stratified {n}"))


def _stage_logits(runner: CascadeRunner, stage: int, images, indices: np.ndarray) -> np.ndarray:
    """N,classes logits of one stage, one image at a time (exported graphs have a static batch of 1)."""
    return np.concatenate([runner.logits(stage, runner.preprocess(images.image(i), stage)) for i in indices])


def _measure(runner: CascadeRunner, images, indices: np.ndarray, seed: int) -> tuple[MethodRow, ...]:
    """Time the three methods image by image, rotating their order so drift on a busy CPU hits all alike.

    Each timed call starts from the decoded image and preprocesses (resize, crop, normalise) for every stage
    it runs, as an application would: an escalated image pays one preprocessing per stage it reached."""
    top, chosen = len(runner.stages) - 1, random_stages(len(indices), len(runner.stages), seed)
    methods = {"highest": lambda image, k: runner.run_stage(top, runner.preprocess(image, top)),
               "random": lambda image, k: runner.run_stage(int(chosen[k]), runner.preprocess(image, int(chosen[k]))),
               "cascade": lambda image, k: runner(image)}
    _warm_up(runner, images.image(int(indices[0])))
    results: dict[str, list] = {m: [] for m in methods}
    for k, i in enumerate(indices):
        image = images.image(int(i))  # decoding is the same for every method: not timed
        names = list(methods)
        for name in names[k % 3:] + names[:k % 3]:
            results[name].append(timed_call(lambda: methods[name](image, k)))
    labels = images.labels[indices]
    return tuple(_row(name, res, labels, len(runner.stages)) for name, res in results.items())


def _warm_up(runner: CascadeRunner, image: np.ndarray, runs: int = 5) -> None:
    """First ORT runs allocate and pick kernels; keep them out of the timed numbers."""
    for s in range(len(runner.stages)):
        [runner.logits(s, runner.preprocess(image, s)) for _ in range(runs)]


def _row(method: str, results: list, labels: np.ndarray, stages: int) -> MethodRow:
    preds = np.array([r.prediction for r, _ in results])
    ms = np.array([t for _, t in results])
    share = np.bincount([r.stage for r, _ in results], minlength=stages) / len(results)
    p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99]))
    return MethodRow(method, top1_pct(preds, labels), float(np.mean([r.macs for r, _ in results])),
                     float(ms.mean()), p50, len(results), tuple(float(v) for v in share), p90, p99)
