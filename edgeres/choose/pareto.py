"""Pareto front of (cost, value) points: lower cost and higher value are better. Pure, torch-free.

Used by `edgeres report` (accuracy vs latency across resolutions x precisions) and `edgeres select`.
"""
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """(cost, value) a dominates b: no worse in both, strictly better in at least one."""
    return a[0] <= b[0] and a[1] >= b[1] and (a[0] < b[0] or a[1] > b[1])


def pareto_front(items: Iterable[T], cost: Callable[[T], float], value: Callable[[T], float]) -> list[T]:
    """The items no other item dominates, sorted by increasing cost (so value increases along the list too).

    Exact ties (same cost and value) all stay on the front. Items whose cost or value is None are skipped.
    O(n log n): sort by cost ascending (value descending on equal cost), keep each item that beats the best
    value seen so far, or ties the best at the same cost.
    """
    points = [(cost(i), value(i), i) for i in items]
    points = [p for p in points if p[0] is not None and p[1] is not None]
    points.sort(key=lambda p: (p[0], -p[1]))
    front, best, best_cost = [], float("-inf"), None
    for c, v, item in points:
        if v > best or (v == best and c == best_cost):
            front.append(item)
            best, best_cost = v, c
    return front
