"""Build deployable precision variants from export.json (see `targets.py` for the target table)."""
from .targets import TARGETS, Artifact, BuildContext, CalibSettings, GraphEntry, Target, get_target, target_names

__all__ = ["TARGETS", "Artifact", "BuildContext", "CalibSettings", "GraphEntry", "Target", "get_target",
           "target_names"]
