"""Run a static batch-1 graph many images at a time: a copy of it whose batch dimension is symbolic.

Exported graphs (and so the built artifacts) have a static batch of 1, which is what an edge device runs and
what TensorRT builds best. Calibration and build's evaluation feed hundreds of images; one image per run
costs them per-run overhead and small-batch kernels (ResNet18 INT8 at 224 px: 5.9 ms per image one at a
time vs 4.7 in batches of 32 on our 2-core Xeon, outputs bit-identical). The copy differs from the graph
only in that dimension; `batched_scorer` checks on a probe that it computes what the graph computes, and a
graph that cannot take a batch (a shape constant baked into it) is run as it is.
"""
import logging
from pathlib import Path
from typing import Callable

import numpy as np

from edgeres.defaults import feed_batch
from edgeres.errors import reraise_interrupt

log = logging.getLogger(__name__)

BATCH = 32  # images per run of a dynamic-batch copy (calibration and build's evaluation)
PROBE_IMAGES = 2


def dynamic_batch_copy(model_path: Path, dest: Path | None = None) -> Path | None:
    """`model_path` with the batch dimension of its input and outputs made symbolic (and no stale shapes),
    written to `dest` (default: beside it, `<stem>-batched.onnx`); None when the graph does not start with a
    static batch of 1."""
    import onnx

    model = onnx.load(str(model_path))
    values = [*model.graph.input, *model.graph.output]
    dims = [v.type.tensor_type.shape.dim for v in values]
    if not all(d and d[0].dim_value == 1 for d in dims):
        return None
    for d in dims:
        d[0].dim_param = "N"  # a oneof: clears dim_value
    # stale batch-1 shapes go; ORT infers shapes when it loads the copy (and its calibrator runs ONNX's
    # shape inference on it again), so inferring them here too would only cost a serialisation
    del model.graph.value_info[:]
    out = dest if dest is not None else model_path.with_name(f"{model_path.stem}-batched.onnx")
    onnx.save(model, str(out))
    return out


def batched_scorer(model_path: Path, input_shape, tmp: Path,
                   open_scorer: Callable[[Path], Callable[[np.ndarray], np.ndarray]]) -> tuple[Callable, int, str]:
    """(scorer, images per call, how it runs) for `model_path`: its dynamic-batch copy in `tmp` when the graph
    has a static batch of 1 and the copy gives the graph's logits on a probe, else the graph itself.

    open_scorer(path) -> a function N,C,H,W float32 -> N,classes logits (e.g. an OrtRunner's infer)."""
    graph = open_scorer(model_path)
    if not input_shape or input_shape[0] != 1:
        return graph, feed_batch(input_shape), "the graph itself"
    try:
        copy_path = dynamic_batch_copy(model_path, tmp / f"{model_path.stem}-batched.onnx")
        copy = open_scorer(copy_path) if copy_path is not None else None
        if copy is not None and _same_logits(graph, copy, input_shape):
            return copy, BATCH, f"a dynamic-batch copy, {BATCH} images per run (checked against the graph)"
    except Exception as exc:  # noqa: BLE001 - onnx/ORT raise their own types when a baked-in shape rejects N > 1
        reraise_interrupt(exc)  # not a failed copy: the user stopped the run while ORT was importing
        log.info("running %s one image at a time: its batched copy failed (%s)", model_path.name,
                 str(exc).splitlines()[0][:120])
    return graph, 1, "the graph itself, one image per run"


def _same_logits(graph, copy, input_shape) -> bool:
    """The copy's logits of a batch of PROBE_IMAGES equal the graph's, image by image (float tolerance for
    kernels that block a batch differently)."""
    probe = np.random.default_rng(0).standard_normal((PROBE_IMAGES, *input_shape[1:])).astype(np.float32)
    one_by_one = np.concatenate([np.asarray(graph(probe[i:i + 1])) for i in range(PROBE_IMAGES)])
    together = np.asarray(copy(probe))
    return together.shape == one_by_one.shape and np.allclose(together, one_by_one, rtol=1e-4, atol=1e-5)
