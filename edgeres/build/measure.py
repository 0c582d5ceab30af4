"""Top-1/top-5 of built artifacts on the eval data, with the same preprocessing as every other stage."""
import tempfile
from pathlib import Path

from edgeres.build.targets import GraphEntry
from edgeres.data import ImageSet
from edgeres.defaults import feed_batch
from edgeres.evaluate import Scorer, evaluate_scorers, subset_rule
from edgeres.manifests.export import ExportManifest


def graph_batch(graph: GraphEntry) -> int:
    """The batch a graph accepts (edgeres.defaults.feed_batch)."""
    return feed_batch(graph.input_shape)


def accuracy_json(graph: GraphEntry, scorer: Scorer, images: ImageSet, export: ExportManifest, limit: int | None,
                  measured_with: str, batch: int | None = None, run_as: str | None = None) -> dict:
    """The `accuracy` block of build.json: top1/top5 in percent, image count, what ran it (and how)."""
    pre = export.preprocessing
    result = evaluate_scorers({graph.resolution: scorer}, images, pre.mean, pre.std, pre.crop_ratio,
                              batch or graph_batch(graph), limit)[graph.resolution]
    how = {"run_as": run_as} if run_as else {}
    return {**result.to_json(), "measured_with": measured_with, **how, "subset": subset_rule(images, limit)}


def ort_accuracy_json(graph: GraphEntry, artifact: Path, images: ImageSet, export: ExportManifest,
                      limit: int | None, exact_int8: bool = True) -> dict:
    """accuracy_json of an ONNX Runtime artifact, run in batches through its dynamic-batch copy when it has a
    static batch of 1 (build.batching: the same logits, 0.8x the time for ResNet18 INT8); `run_as` says
    which ran. exact_int8: ORT's exact INT8 kernels (runtimes.ort.ort_session)."""
    from edgeres.build.batching import batched_scorer
    from edgeres.runtimes.ort import OrtRunner

    def opened(path: Path):
        # spinning off: 0.57x the time on a shared 2-core box (paired, ResNet18 INT8 at 224 px); exact INT8:
        # the graph's accuracy, not that of a CPU whose fast kernels saturate (runtimes.ort.ort_session)
        return OrtRunner(path, spinning=False, exact_int8=exact_int8).infer
    with tempfile.TemporaryDirectory(prefix="edgeres-eval-") as tmp:
        scorer, batch, how = batched_scorer(artifact, graph.input_shape, Path(tmp), opened)
        return accuracy_json(graph, scorer, images, export, limit, "onnxruntime-cpu", batch, how)
