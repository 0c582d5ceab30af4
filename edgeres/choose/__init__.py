"""Choosing the resolution at run time: by a latency/MACs budget (select) or per image (cascade)."""
from edgeres.choose.cascade import CascadeRunner
from edgeres.choose.compare import evaluate_cascade
from edgeres.choose.select import select

__all__ = ["CascadeRunner", "evaluate_cascade", "select"]
