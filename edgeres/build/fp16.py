"""`fp16` target: weights and compute in float16, inputs/outputs kept float32, checked to run in ORT.

FP32 I/O keeps the preprocessing and the logits comparable with the other artifacts; the Casts at the edges
are cheap. This graph is the input of a strongly typed TensorRT build (`trt-fp16`).
"""
import numpy as np

from edgeres._io import atomic_path
from edgeres._optional import require
from edgeres.build.ort import artifact_path
from edgeres.build.targets import BuildContext, BuildOutput, GraphEntry, get_target
from edgeres.errors import EdgeresError
from edgeres.runtimes.ort import ort_session

FP16_MAX = 65504.0  # largest finite float16


def build_fp16(ctx: BuildContext, graph: GraphEntry) -> BuildOutput:
    import onnx
    float16 = require("onnxconverter_common.float16", "the fp16 target")
    model = onnx.load(str(graph.file))
    overflow = count_fp16_overflow(model)
    # max_finite_val: onnxconverter-common clamps at 1e4 by default; float16 itself reaches 65504.
    half = float16.convert_float_to_float16(model, keep_io_types=True, max_finite_val=FP16_MAX)
    path = artifact_path(ctx, graph)
    with atomic_path(path) as tmp:
        onnx.save(half, str(tmp))
        check_runs(tmp, graph)
    return BuildOutput(path, get_target(ctx.target).precision, extra={"io": "float32", "weights_over_fp16_max": overflow})


def count_fp16_overflow(model) -> int:
    """Float32 initializer values beyond the float16 range (they would be clamped)."""
    from onnx import numpy_helper
    return int(sum((np.abs(numpy_helper.to_array(t)) > FP16_MAX).sum()
                   for t in model.graph.initializer if t.data_type == 1))


def check_runs(path, graph: GraphEntry) -> None:
    """One zero batch through ORT: the graph loads, runs and gives finite float32 logits."""
    session = ort_session(path)
    shape = [d if isinstance(d, int) else 1 for d in graph.input_shape]
    out = session.run(None, {graph.input_name: np.zeros(shape, np.float32)})[0]
    if out.dtype != np.float32 or not np.isfinite(out).all():
        raise EdgeresError(f"the fp16 graph for {graph.resolution} px gives {out.dtype} / non-finite outputs: "
                           f"the model's activations overflow float16, use int8 or fp32")
