"""Top-1/top-5 of built artifacts on the eval data, with the same preprocessing as every other stage."""
from edgeres.build.targets import GraphEntry
from edgeres.data import ImageSet
from edgeres.evaluate import Scorer, evaluate_scorers, subset_rule

DYNAMIC_BATCH = 64  # batch for graphs exported with a dynamic batch axis


def graph_batch(graph: GraphEntry) -> int:
    """The batch a graph accepts: its static first dimension (1 for 1x3xRxR), else DYNAMIC_BATCH."""
    first = graph.input_shape[0] if graph.input_shape else None
    return first if isinstance(first, int) and first > 0 else DYNAMIC_BATCH


def accuracy_json(graph: GraphEntry, scorer: Scorer, images: ImageSet, export: dict, limit: int | None,
                  measured_with: str) -> dict:
    """The `accuracy` block of build.json: top1/top5 in percent, image count, what ran it."""
    norm = export["normalization"]
    result = evaluate_scorers({graph.resolution: scorer}, images, norm["mean"], norm["std"],
                              export["eval_crop_ratio"], graph_batch(graph), limit)[graph.resolution]
    return {**result.to_json(), "measured_with": measured_with, "subset": subset_rule(images, limit)}
