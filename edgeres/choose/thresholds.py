"""Pure maths of the confidence cascade over logits: confidences, stop stages, MACs accounting, the threshold search.

Stages are ordered low -> high resolution. No model runs here: every function takes arrays and is tested
against hand-computed values and a brute-force search.
"""
import itertools
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from edgeres.errors import EdgeresError


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of N,C logits (shifted by the row max so large logits do not overflow)."""
    z = np.asarray(logits, np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def max_softmax(logits: np.ndarray) -> np.ndarray:
    """N,C logits -> N confidences in (0, 1]: the top class's probability, 1 / sum(exp(z - max z)) (the
    softmax's maximum without forming it: the cascade computes this once per stage per image)."""
    z = np.asarray(logits, np.float64)
    return 1.0 / np.exp(z - z.max(axis=-1, keepdims=True)).sum(axis=-1)


def softmax_margin(logits: np.ndarray) -> np.ndarray:
    """N,C logits -> N confidences in [0, 1): top-1 minus top-2 probability."""
    top2 = np.sort(softmax(logits), axis=-1)[..., -2:]
    return top2[..., 1] - top2[..., 0]


CONFIDENCES: dict[str, Callable[[np.ndarray], np.ndarray]] = {"max-softmax": max_softmax, "margin": softmax_margin}


def confidence_fn(name: str) -> Callable[[np.ndarray], np.ndarray]:
    if name not in CONFIDENCES:
        raise EdgeresError(f"unknown confidence {name!r}: choose one of {', '.join(CONFIDENCES)}")
    return CONFIDENCES[name]


def stop_stages(confidence: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """S,N confidences and S-1 thresholds -> N stage indices where each image stops.

    An image stops at the first stage s < S-1 with confidence[s] >= thresholds[s], otherwise at S-1.
    """
    conf = np.asarray(confidence)
    exits = conf[:-1] >= np.asarray(thresholds, np.float64)[:, None]
    exits = np.vstack([exits, np.ones((1, conf.shape[1]), bool)])  # the last stage always answers
    return exits.argmax(axis=0)


def pick(per_stage: np.ndarray, stages: np.ndarray) -> np.ndarray:
    """S,N values (e.g. predictions) and N stage indices -> the N values at those stages."""
    return np.asarray(per_stage)[stages, np.arange(len(stages))]


def stages_run(thresholds: Sequence[float], stages: int) -> np.ndarray:
    """Which of the S stages run at all: a stage that never answers (threshold +inf) would change no
    prediction, so the runner skips it; the last stage always runs."""
    runs = np.isfinite(np.asarray(thresholds, np.float64))
    return np.append(runs, True) if len(runs) == stages - 1 else np.ones(stages, bool)


def cascade_macs(stops: np.ndarray, macs: Sequence[float], thresholds: Sequence[float] | None = None) -> np.ndarray:
    """N stop stages -> N MACs (or any per-stage cost): an image pays every stage it ran, 0..stop inclusive;
    with `thresholds`, the stages that never answer are skipped and cost nothing (stages_run)."""
    cost = np.asarray(macs)
    if thresholds is not None:
        cost = cost * stages_run(thresholds, len(cost))
    return np.cumsum(cost)[np.asarray(stops)]


def top1_pct(predictions: np.ndarray, labels: np.ndarray) -> float:  # percent
    return 100.0 * float(np.mean(np.asarray(predictions) == np.asarray(labels)))


def random_stages(n: int, stages: int, seed: int) -> np.ndarray:
    """The thesis baseline: a uniformly random stage per image, reproducible from `seed`."""
    return np.random.default_rng(seed).integers(0, stages, size=n)


@dataclass(frozen=True)
class Tuning:
    thresholds: tuple[float, ...]  # S-1, exit at stage s when confidence >= thresholds[s]
    top1: float  # percent, cascade on the tuning images
    reference_top1: float  # percent, highest resolution alone on the tuning images
    mean_cost: float  # per image, in the unit of the costs it was tuned on (MACs, or measured ms)


def switching_cost(stops: np.ndarray, thresholds: Sequence[float], switch_costs: Sequence[float]) -> float:
    """Mean extra cost per image of calls that follow another stage's call (its graph, not this one's, in the
    caches), for images run one after another: every stage an image runs after its first follows another
    stage, and an image's first stage follows another one when the image before it escalated.

    switch_costs: S, what one call of each stage costs more after another stage's call than after its own."""
    active = stages_run(thresholds, len(switch_costs))
    extra = np.asarray(switch_costs, np.float64) * active
    first = int(active.argmax())
    stops = np.asarray(stops)
    after_first = np.cumsum(extra)[stops] - extra[first]  # every stage run but the first
    escalated = np.cumsum(active)[stops] >= 2
    return float(after_first.mean() + escalated.mean() * extra[first])


def tune_thresholds(confidence: np.ndarray, predictions: np.ndarray, labels: np.ndarray, costs: Sequence[float],
                    max_drop: float, margin_se: float = 0.0, grid: int = 100, combinations: int = 20_000,
                    switch_costs: Sequence[float] | None = None, cost_tolerance: float = 0.0) -> Tuning:
    """Thresholds that minimise the mean cost per image while top-1 stays >= (highest-resolution top-1 -
    max_drop points); a stage left at +inf is skipped (stages_run), so the search also picks which stages run.

    margin_se: the drop must hold `margin_se` standard errors inside max_drop (paired: the per-image difference
    of hits between the cascade and the highest resolution). The search picks, among thousands of candidates,
    one that just meets the bound on these images, so its drop on other images tends to be larger (winner's
    curse), and those images carry their own noise; a margin pays for both (benchmarks/cascade_margin.py).

    confidence, predictions: S,N per stage (low -> high resolution); labels: N; costs: S per image (MACs, or
    each stage's measured ms: on small graphs the per-call overhead, not MACs, decides the wall time).
    switch_costs: S, added per call that follows another stage's call (switching_cost); measured ms, or None.
    cost_tolerance: candidates costing at most this fraction more than the cheapest count as equally cheap, and
    the most accurate of them (on these images) is taken: measured ms move several percent between runs, so
    a cheaper-by-less choice is a coin flip that may cost accuracy for nothing. None costing more than the
    highest resolution alone is taken.
    Candidates per stage: +inf (never exit) and up to `grid` confidence quantiles. Accuracy is not monotone
    in a threshold, so a one-step greedy stalls (it was up to 5x off the optimum on random cases); instead:
    exhaustive search over every combination when there are at most `combinations` (S <= 3 at grid 100),
    else over an evenly thinned grid, then coordinate descent on the full grid from the best point found.
    """
    conf, hits = np.asarray(confidence, np.float64), np.asarray(predictions) == np.asarray(labels)
    reference = 100.0 * hits[-1].mean()

    seen: dict[tuple, tuple[float, float]] = {}

    def key(thresholds) -> tuple[float, float]:  # (mean cost, -top1); inf when the drop is too large
        if thresholds not in seen:
            seen[thresholds] = evaluate(thresholds)
        return seen[thresholds]

    def evaluate(thresholds) -> tuple[float, float]:
        stops = stop_stages(conf, thresholds)
        answered = pick(hits, stops)
        top1 = 100.0 * answered.mean()
        bound = top1 - margin_se * paired_se_points(answered, hits[-1]) if margin_se else top1
        if bound < reference - max_drop - 1e-9:
            return np.inf, -top1
        cost = float(cascade_macs(stops, costs, thresholds).mean())
        return cost + (switching_cost(stops, thresholds, switch_costs) if switch_costs is not None else 0.0), -top1

    cands = [_candidates(c, grid) for c in conf[:-1]]
    per_stage = max(2, int(combinations ** (1.0 / max(1, len(cands)))))
    coarse = [c[np.unique(np.linspace(0, len(c) - 1, min(per_stage, len(c))).round().astype(int))] for c in cands]
    best = min(itertools.product(*coarse), key=key)  # all-inf (= highest alone) is among them and feasible
    best = _coordinate_descent(tuple(best), cands, key)
    if cost_tolerance > 0:  # never above the highest resolution alone: a cascade is there to be cheaper
        within = min(key(best)[0] * (1 + cost_tolerance), key((np.inf,) * len(cands))[0])
        best = min((t for t, k in seen.items() if k[0] <= within), key=lambda t: (seen[t][1], seen[t][0]))
    cost, neg_top1 = key(best)
    return Tuning(tuple(float(t) for t in best), -neg_top1, reference, cost)


def paired_se_points(hits: np.ndarray, reference_hits: np.ndarray) -> float:
    """Standard error (points of top-1) of the mean per-image difference of two hit vectors on the same images;
    0 where they never differ (the all-highest cascade)."""
    diff = np.asarray(hits, np.float64) - np.asarray(reference_hits, np.float64)
    return 100.0 * float(diff.std(ddof=1)) / np.sqrt(len(diff)) if len(diff) > 1 else 0.0


def _candidates(conf: np.ndarray, grid: int) -> np.ndarray:
    """Descending threshold candidates for one stage: +inf (never exit) then confidence quantiles."""
    qs = np.unique(np.quantile(conf, np.linspace(0.0, 1.0, grid))) if len(conf) > grid else np.unique(conf)
    return np.concatenate([[np.inf], qs[::-1]])


def _coordinate_descent(best: tuple, cands: list, key) -> tuple:
    """Try every candidate of one stage at a time, others fixed; repeat until nothing improves."""
    best_key, improved = key(best), True
    while improved:
        improved = False
        for s, values in enumerate(cands):
            for v in values:
                trial = best[:s] + (v,) + best[s + 1:]
                trial_key = key(trial)
                if trial_key < best_key:
                    best, best_key, improved = trial, trial_key, True
    return best
