"""Tune a cascade's thresholds on one split and measure it against the highest resolution on another.

`evaluate_cascade` is what `edgeres cascade` runs: thresholds tuned for --max-drop points on the tuning
split, then highest-only, a random resolution per image and the cascade timed in turns of `block` images on
the report split (edgeres.choose.cascade has the runner, edgeres.choose.thresholds the maths). Its steps are
public for benchmarks: tune_and_report_images, stage_pass, switch_costs, time_methods.
"""
import math
import numbers
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeres._io import check_out_dir, relative_to, staged_dir
from edgeres.choose.cascade import CascadeRunner, Source, Stage, load_source
from edgeres.choose.splits import (
    SPLIT_SEED,
    split_json,
    stratified_halves,
    stratified_order,
)
from edgeres.choose.thresholds import (
    Tuning,
    cascade_macs,
    random_stages,
    stop_stages,
    top1_pct,
    tune_thresholds,
)
from edgeres.defaults import CASCADE_BLOCK as BLOCK
from edgeres.defaults import CASCADE_COST_TOLERANCE as COST_TOLERANCE
from edgeres.defaults import CASCADE_MARGIN_SE as MARGIN_SE
from edgeres.errors import EdgeresError, EdgeresUsageError
from edgeres.manifests.choose import write_cascade
from edgeres.runtimes.timing import timed_call

CASCADE_FILE = "cascade.json"
MARKERS = (CASCADE_FILE,)
TUNE_SPLITS = ("val-half", "train")
# What the threshold search minimises per image: "latency" = each stage's median ms with its preprocessing,
# measured on the tuning images on this machine (small graphs: per-call overhead, not MACs, sets the wall
# time); "macs" = the manifests' multiply-accumulates (machine-independent).
COSTS = ("latency", "macs")


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
    costs: dict = field(default_factory=dict)  # what the tuning minimised: cost name, per-stage costs, mean MACs
    block: int = BLOCK  # images each method ran back to back per turn in the timed comparison

    def row(self, method: str) -> MethodRow:
        return next(r for r in self.rows if r.method == method)

    def to_json(self, base: str | os.PathLike | None = None) -> dict[str, Any]:
        """cascade.json; with `base` (its directory) the paths in it are relative to it, so it can move."""
        src = self.source
        where = (lambda p: relative_to(p, base)) if base is not None else str
        return {"source": {"path": where(src.path), "target": src.target},
                "stages": [{"resolution": s.resolution, "file": where(s.path), "macs": s.macs, "threads": s.threads}
                           for s in src.stages],
                "confidence": self.confidence, "max_drop": self.max_drop, "thresholds": [None if math.isinf(t) else t for t in self.tuning.thresholds],
                "tuning": {"split": self.tune_split, "top1": self.tuning.top1,
                           "reference_top1": self.tuning.reference_top1, "mean_cost": self.tuning.mean_cost,
                           **self.costs},
                "report_split": self.report_split, "random_seed": self.seed, "splits": self.splits,
                "timing": {"block": self.block, "order": "methods take turns of `block` consecutive report images, "
                                                         "the first method rotating turn by turn"},
                "rows": [{**r.__dict__, "stage_share": list(r.stage_share)} for r in self.rows]}


def evaluate_cascade(source: str | os.PathLike, *, data: str | None = None, max_drop: float = 0.5,
                     confidence: str = "max-softmax", target: str | None = None, tune_on: str = "val-half",
                     seed: int = 0, limit: int | None = None, threads: int | None = None,
                     spinning: bool = False, cost: str = "latency", margin_se: float = MARGIN_SE,
                     fit_threads: bool = True, block: int = BLOCK, cost_tolerance: float | None = None,
                     out: str | os.PathLike | None = None) -> CascadeReport:
    """Tune thresholds for `max_drop` points, then compare highest-only, random and cascade.

    tune_on="val-half": tune on one stratified half of the val images, report on the other;
    tune_on="train": tune on N train images, report on N val images. `limit` caps the val images used.
    Every subset and half is a seeded (SPLIT_SEED), class-stratified selection (a folder dataset is ordered by
    class: first-N would tune on some classes and report on others); cascade.json records each split's class
    histogram. cost: what the thresholds minimise (COSTS); a stage left at +inf is skipped at run time.
    margin_se: the tuning drop must stay this many standard errors inside max_drop (MARGIN_SE), so that the
    drop holds on images the search did not see. cost_tolerance: candidates within this fraction of the
    cheapest count as equally cheap and the most accurate is taken (None: COST_TOLERANCE for latency, whose
    measured ms move between runs; 0 for MACs). fit_threads: a stage that runs faster on one intra-op thread
    than on `threads` (measured on tuning images: waking a pool costs small graphs more than it saves) runs on
    one, the baselines' stages too; cascade.json records each stage's threads. block: the timed methods take
    turns of this many consecutive report images (BLOCK; 1 alternates image by image).
    Writes `out/cascade.json` when `out` is given.
    """
    block, cost_tolerance = _checked_options(max_drop, margin_se, block, cost, cost_tolerance)
    if out is not None:
        check_out_dir(out, MARKERS, "cascade")
    src = load_source(source, target, threads, spinning)
    runner = CascadeRunner(src, [np.inf] * (len(src.stages) - 1), confidence)  # thresholds set after tuning
    (tune_set, tune_idx, tune_name), (report_set, report_idx, report_name) = tune_and_report_images(
        data or runner.source.data, tune_on, limit)
    splits = {"seed": SPLIT_SEED, "method": "seeded shuffle within each class, classes interleaved by rank",
              "tune": split_json(tune_name, tune_set, tune_idx), "report": split_json(report_name, report_set, report_idx)}
    if report_set.info.channels != len(src.mean):
        raise EdgeresError(f"{report_set.info.name} has {report_set.info.channels}-channel images, the graphs take "
                           f"{len(src.mean)}: pass the --data the model was trained on")
    if fit_threads and threads != 1:
        _fit_threads(runner, tune_set, tune_idx)
    passes = [stage_pass(runner, s, tune_set, tune_idx) for s in range(len(runner.stages))]
    logits, macs = np.stack([p[0] for p in passes]), [s.macs for s in runner.stages]
    costs, switch = macs, None
    if cost == "latency":
        costs = [p[1] for p in passes]
        switch = switch_costs(runner, tune_set, tune_idx)
    conf = np.stack([runner._confidence(l) for l in logits])
    tuning = tune_thresholds(conf, logits.argmax(-1), tune_set.labels[tune_idx], costs, max_drop, margin_se,
                             switch_costs=switch, cost_tolerance=cost_tolerance)
    runner.thresholds = tuning.thresholds
    tuned_macs = float(cascade_macs(stop_stages(conf, tuning.thresholds), macs, tuning.thresholds).mean())
    rows = time_methods(runner, report_set, report_idx, seed, block)
    report = CascadeReport(runner.source, confidence, max_drop, tuning, tune_name, report_name, seed, rows, splits,
                           {"cost": cost, "stage_costs": [float(c) for c in costs], "mean_macs": tuned_macs,
                            "margin_se": margin_se, "switch_costs": switch, "cost_tolerance": cost_tolerance}, block)
    if out is not None:
        with staged_dir(out, MARKERS, "cascade", keep=lambda name: name != CASCADE_FILE) as tmp:
            write_cascade(tmp / CASCADE_FILE, report.to_json(out))
    return report


def _checked_options(max_drop: float, margin_se: float, block: int, cost: str,
                     cost_tolerance: float | None) -> tuple[int, float]:
    """One usage line for an option that cannot work; returns the block and the cost tolerance to use."""
    if not (math.isfinite(max_drop) and max_drop >= 0):
        raise EdgeresUsageError(f"--max-drop must be a finite number >= 0 (points of top-1), got {max_drop}")
    if not (math.isfinite(margin_se) and margin_se >= 0):
        raise EdgeresUsageError(f"--margin-se must be a finite number >= 0 (standard errors), got {margin_se}")
    if isinstance(block, bool) or not (isinstance(block, numbers.Integral) and block >= 1):
        raise EdgeresUsageError(f"--block must be a whole number of images >= 1, got {block!r}")
    if cost_tolerance is None:
        cost_tolerance = COST_TOLERANCE if cost == "latency" else 0.0
    if not (math.isfinite(cost_tolerance) and cost_tolerance >= 0):
        raise EdgeresUsageError(f"--cost-tolerance must be a finite fraction >= 0, got {cost_tolerance}")
    if cost not in COSTS:
        raise EdgeresUsageError(f"unknown cost {cost!r}: choose one of {', '.join(COSTS)}")
    return int(block), float(cost_tolerance)


def tune_and_report_images(data: str, tune_on: str, limit: int | None):
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


def stage_pass(runner: CascadeRunner, stage: int, images, indices: np.ndarray) -> tuple[np.ndarray, float]:
    """N,classes logits of one stage, one image at a time (exported graphs have a static batch of 1), and the
    median ms of one call with its preprocessing (decoding excluded): the stage's cost for cost="latency"."""
    logits, ms = [], []
    for i in indices:
        image = images.image(int(i))
        out, took = timed_call(lambda: runner.logits(stage, runner.preprocess(image, stage)))  # noqa: B023
        logits.append(out)
        ms.append(took)
    return np.concatenate(logits), float(np.median(ms))


FIT_IMAGES = 200  # tuning images timed per stage by switch_costs, and per thread count by _fit_threads


def switch_costs(runner: CascadeRunner, images, indices: np.ndarray) -> list[float]:
    """Per stage, the ms one call costs more right after another stage's call (the other graph then in the
    caches) than right after its own: the median over FIT_IMAGES tuning images of the paired difference
    between the two calls on the same image, made back to back, so that drift between measurements cannot
    pass for a cost. Without it the search prefers cascades that switch graphs more than their measured time
    justifies (12+16 px over 16 alone, measured slower: issue 15)."""
    extra: list[list[float]] = [[] for _ in runner.stages]
    for i in indices[:FIT_IMAGES]:
        image = images.image(int(i))
        for s in range(len(runner.stages)):  # s - 1 (or the last stage, for s = 0) ran just before
            def call():
                return runner.logits(s, runner.preprocess(image, s))  # noqa: B023
            after_other = timed_call(call)[1]
            extra[s].append(after_other - timed_call(call)[1])
    return [max(0.0, float(np.median(e))) for e in extra]


def _fit_threads(runner: CascadeRunner, images, indices: np.ndarray) -> None:
    """Each stage on the faster of its threads and one thread: median ms of one preprocessed call over
    FIT_IMAGES tuning images, the two settings alternating image by image."""
    sample = [images.image(int(i)) for i in indices[:FIT_IMAGES]]
    for s, stage in enumerate(runner.stages):
        if stage.artifact.backend != "ort":
            continue  # threads are ONNX Runtime's (a TensorRT engine runs on the device)
        given, alone = stage, Stage(stage.artifact, 1, stage.spinning)
        times: dict[int, list[float]] = {0: [], 1: []}
        for image in sample[:5]:  # first runs allocate and pick kernels
            given.scorer()(runner.preprocess(image, s)), alone.scorer()(runner.preprocess(image, s))
        for image in sample:
            for k, st in ((0, given), (1, alone)):
                times[k].append(timed_call(lambda: st.scorer()(runner.preprocess(image, s)))[1])  # noqa: B023
        if np.median(times[1]) < np.median(times[0]):
            stage.use_threads(1, opened=alone)  # keeps the session just measured


def time_methods(runner: CascadeRunner, images, indices: np.ndarray, seed: int, block: int) -> tuple[MethodRow, ...]:
    """Time the three methods on the same images: in turns of `block` consecutive images each, rotating which
    method goes first, so drift on a busy CPU hits all alike while each runs as a deployment runs it, image
    after image with its own graphs in the caches.

    Each timed call starts from the decoded image and preprocesses (resize, crop, normalise) for every stage
    it runs, as an application would: an escalated image pays one preprocessing per stage it reached."""
    top, chosen = len(runner.stages) - 1, random_stages(len(indices), len(runner.stages), seed)
    methods = {"highest": lambda image, k: runner.run_stage(top, runner.preprocess(image, top)),
               "random": lambda image, k: runner.run_stage(int(chosen[k]), runner.preprocess(image, int(chosen[k]))),
               "cascade": lambda image, k: runner(image)}
    _warm_up(runner, images.image(int(indices[0])))
    results: dict[str, list] = {m: [] for m in methods}
    for positions, order in turns(len(indices), block, list(methods)):
        chunk = [(k, images.image(int(indices[k]))) for k in positions]  # decoding is alike for all: not timed
        for name in order:
            results[name] += [timed_call(lambda: methods[name](image, k)) for k, image in chunk]  # noqa: B023
    labels = images.labels[indices]
    return tuple(_row(name, res, labels, len(runner.stages)) for name, res in results.items())


def turns(n: int, block: int, names: list[str]) -> list[tuple[range, list[str]]]:
    """The timing schedule: (image positions, method order) per turn of `block` consecutive images; the method
    that goes first rotates turn by turn."""
    return [(range(start, min(start + block, n)), names[t % len(names):] + names[:t % len(names)])
            for t, start in enumerate(range(0, n, block))]


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
