"""Top-1/top-5 of built artifacts on the eval data, with the same preprocessing as every other stage."""
from edgeres.build.targets import GraphEntry
from edgeres.data import ImageSet
from edgeres.defaults import feed_batch
from edgeres.evaluate import Scorer, evaluate_scorers, subset_rule
from edgeres.manifests.export import ExportManifest


def graph_batch(graph: GraphEntry) -> int:
    """The batch a graph accepts (edgeres.defaults.feed_batch)."""
    return feed_batch(graph.input_shape)


def accuracy_json(graph: GraphEntry, scorer: Scorer, images: ImageSet, export: ExportManifest, limit: int | None,
                  measured_with: str) -> dict:
    """The `accuracy` block of build.json: top1/top5 in percent, image count, what ran it."""
    pre = export.preprocessing
    result = evaluate_scorers({graph.resolution: scorer}, images, pre.mean, pre.std, pre.crop_ratio,
                              graph_batch(graph), limit)[graph.resolution]
    return {**result.to_json(), "measured_with": measured_with, "subset": subset_rule(images, limit)}
