"""Seeded, class-stratified selections of a dataset's images (pure numpy over labels).

A folder dataset is ordered by class, so "the first N" or "the first half" holds some classes only: tuning a
cascade on one half and reporting on the other then compares different classes (issue 15).
"""
from typing import Any

import numpy as np

SPLIT_SEED = 0  # fixed: the same images every run, whatever --seed the random baseline uses


def stratified_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """Every index once: a seeded shuffle within each class, then classes interleaved by relative rank, so
    that any prefix holds each class in proportion to its size (within one image)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    members = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    ranks = np.concatenate([(np.arange(len(m)) + 0.5) / len(m) for m in members])
    return np.concatenate(members)[np.argsort(ranks, kind="stable")]


def stratified_halves(labels: np.ndarray, chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`chosen` indices split in two, alternating within each class (in `chosen`'s order): disjoint, and
    each class's count differs by at most one between the halves. Both returned sorted."""
    seen: dict[int, int] = {}
    offset: dict[int, int] = {}  # classes alternate which half gets their odd one out, so the totals balance too
    first = np.zeros(len(chosen), bool)
    for k, label in enumerate(np.asarray(labels)[chosen]):
        label = int(label)
        offset.setdefault(label, len(offset) % 2)
        first[k] = (seen.get(label, 0) + offset[label]) % 2 == 0
        seen[label] = seen.get(label, 0) + 1
    return np.sort(chosen[first]), np.sort(chosen[~first])


def split_json(name: str, images, indices: np.ndarray) -> dict[str, Any]:
    classes = len(images.info.classes)
    return {"split": name, "images": int(len(indices)),
            "class_histogram": np.bincount(images.labels[indices], minlength=classes).tolist()}
