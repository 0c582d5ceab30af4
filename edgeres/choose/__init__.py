"""Choosing the resolution at run time: by a latency/MACs budget (select) or per image (cascade)."""
from edgeres.choose.cascade import CascadeRunner, evaluate_cascade
from edgeres.choose.select import select

__all__ = ["CascadeRunner", "evaluate_cascade", "select"]
