"""LQ-Net low-bit graphs, the pattern half: find the quantized convs and step functions in an exported LQ graph
and rewrite them into INT8 containers (weights: codes + DequantizeLinear; activations: the step, then Q/DQ).

See `edgeres.build.lowbit` for the build target that uses it. Imports only numpy/onnx (no torch).
"""
from dataclasses import dataclass

import numpy as np

QMAX = 127  # symmetric signed INT8, as TensorRT wants (codes of non-negative levels use 0..127)
CLUSTER_RTOL = 1e-4  # weights within 1e-4·max|w_c| are one level: BN folding adds only ~1e-7 float rounding
STEP_OPS = ("Add", "Mul", "Cast", "Greater", "Identity")


@dataclass
class QuantConv:
    """A conv whose every output channel holds ≤ 2^K symmetric levels (an LQ-quantized conv)."""
    node: object  # onnx NodeProto
    weight: np.ndarray  # [O, I/g, kh, kw] float32 as exported
    levels: list  # per channel: sorted distinct levels (float64)
    index: np.ndarray  # [O, I/g·kh·kw] level index of every weight


@dataclass
class StepFn:
    """An LQ activation step function: Greater(x, t_i) ... → y, feeding `consumer` (a Conv)."""
    x: str
    y: str
    thresholds: np.ndarray  # [2^J − 1] ascending
    levels: np.ndarray  # [2^J] ascending


def int8_grid(levels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best INT8 fit of each row of `levels` [C, L]: (scale [C], codes [C, L] in −127..127, max abs error [C]).

    For every top code q in 1..127 the scale is max|l|/q (then also its least-squares refit); the codes are
    round(l/scale). The q with the smallest max error wins (the smallest q among ties): a rational p/q fit
    of the level ratios, exact when they are ratios of small integers (uniform levels: 1:3).
    """
    levels = np.asarray(levels, dtype=np.float64)[:, None, :]  # [C, 1, L]
    top = np.abs(levels).max(axis=2, keepdims=True)
    top = np.where(top > 0, top, 1.0)  # all-zero rows: any scale is exact
    direct = top / np.arange(1, QMAX + 1, dtype=np.float64)[None, :, None]  # [C, 127, 1]
    codes = np.clip(np.round(levels / direct), -QMAX, QMAX)
    refit = (codes * levels).sum(-1, keepdims=True) / np.maximum((codes ** 2).sum(-1, keepdims=True), 1)
    best = None
    for scale in (direct, np.where(refit > 0, refit, direct)):
        codes = np.clip(np.round(levels / scale), -QMAX, QMAX)
        best = _keep_better(best, (scale[..., 0], codes, np.abs(codes * scale - levels).max(-1)))
    scale, codes, err = best
    pick = np.where(err <= 1e-9 * top[:, :, 0], 0, err).argmin(axis=1)  # first (exact) minimum: smallest q
    rows = np.arange(levels.shape[0])
    return scale[rows, pick], codes[rows, pick].astype(np.int8), err[rows, pick]


def _keep_better(best, candidate):
    """Element-wise (per channel and q) the candidate with the smaller max error."""
    if best is None:
        return candidate
    better = candidate[2] < best[2]
    return (np.where(better, candidate[0], best[0]), np.where(better[..., None], candidate[1], best[1]),
            np.minimum(candidate[2], best[2]))


def channel_levels(row: np.ndarray, max_levels: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(sorted levels, level index of each weight) if `row` fits ≤ max_levels levels symmetric about 0.

    LQ weight levels vᵀe, e ∈ {±1}^K, come in ± pairs, but a channel need not use them all: the observed
    values together with their negations must form at most 2^K levels (within CLUSTER_RTOL).
    """
    row = row.astype(np.float64)
    tol = CLUSTER_RTOL * max(float(np.abs(row).max()), 1e-30)
    centres = _cluster(np.concatenate([row, -row]), tol)
    if len(centres) > max_levels:
        return None
    return centres, np.abs(row[:, None] - centres[None, :]).argmin(axis=1)


def _cluster(values: np.ndarray, tol: float) -> np.ndarray:
    """Means of runs of sorted `values` whose consecutive gaps are ≤ tol."""
    values = np.sort(values)
    starts = np.concatenate([[0], np.nonzero(np.diff(values) > tol)[0] + 1])
    return np.add.reduceat(values, starts) / np.diff(np.append(starts, len(values)))


class Graph:
    """Read-only index of an ONNX graph: constants (initializers, Constant nodes, through Identity) and producers."""

    def __init__(self, model):
        from onnx import numpy_helper
        self.model = model
        self.inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        self.producer = {out: node for node in model.graph.node for out in node.output}
        self.consumers: dict[str, list] = {}
        for node in model.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def constant(self, name: str) -> np.ndarray | None:
        """The value of `name` if it is a constant (initializer or Constant, possibly behind Identity)."""
        from onnx import numpy_helper
        if name in self.inits:
            return self.inits[name]
        node = self.producer.get(name)
        if node is not None and node.op_type == "Identity":
            return self.constant(node.input[0])
        if node is not None and node.op_type == "Constant" and node.attribute[0].name == "value":
            return numpy_helper.to_array(node.attribute[0].t)
        return None


def find_quant_convs(graph: Graph, w_bits: int) -> tuple[list[QuantConv], list[str]]:
    """Convs whose every output channel holds ≤ 2^K symmetric levels, and the names of the other convs."""
    found, others = [], []
    for node in graph.model.graph.node:
        weight = graph.constant(node.input[1]) if node.op_type == "Conv" else None
        if weight is None:
            others += [node.name] if node.op_type == "Conv" else []
            continue
        rows = [channel_levels(row, 2 ** w_bits) for row in weight.reshape(weight.shape[0], -1)]
        if any(r is None for r in rows):
            others.append(node.name)
        else:
            found.append(QuantConv(node, weight, [r[0] for r in rows], np.stack([r[1] for r in rows])))
    return found, others


def find_steps(graph: Graph) -> list[StepFn]:
    """LQ step functions feeding convs: y built only from Greater(x, const)/Cast/Mul/Add over constants."""
    steps = []
    for node in graph.model.graph.node:
        if node.op_type == "Conv":
            step = _step_into(graph, node.input[0])
            steps += [step] if step is not None else []
    return steps


def _step_into(graph: Graph, y: str) -> StepFn | None:
    """The step function whose output is `y`, or None if `y` is not one."""
    sources, thresholds, stack, nodes, consts = set(), [], [y], {}, set()
    while stack:
        name = stack.pop()
        node = graph.producer.get(name)
        if graph.constant(name) is not None:
            consts.add(name)
            continue
        if node is None or node.op_type not in STEP_OPS or len(nodes) > 4 * 256:
            return None
        nodes[node.name or name] = node
        if node.op_type == "Greater":
            t = graph.constant(node.input[1])
            if t is None or t.size != 1:
                return None
            sources.add(node.input[0])
            thresholds.append(float(t))
            consts.add(node.input[1])
        else:
            stack += [i for i in node.input if i not in nodes]
    if len(sources) != 1 or not thresholds:
        return None
    t, x = np.sort(np.array(thresholds)), sources.pop()
    return StepFn(x, y, t, _evaluate_step(graph, list(nodes.values()), consts, x, y, t))


def _evaluate_step(graph: Graph, nodes: list, consts: set, x: str, y: str, t: np.ndarray) -> np.ndarray:
    """The step's output levels, computed by the graph's own nodes (ONNX reference evaluator) at one value
    inside every threshold interval: below t_0, between consecutive t_i, above t_last."""
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator
    inits = [numpy_helper.from_array(np.asarray(graph.constant(c)), c) for c in sorted(consts)]
    order = {id(n): i for i, n in enumerate(graph.model.graph.node)}
    sub = helper.make_graph(sorted(nodes, key=lambda n: order[id(n)]), "step",
                            [helper.make_tensor_value_info(x, 1, [None])],
                            [helper.make_tensor_value_info(y, 1, [None])], inits)
    probes = np.concatenate([[t[0] - 1.0], (t[1:] + t[:-1]) / 2, [t[-1] + 1.0]]).astype(np.float32)
    model = helper.make_model(sub, opset_imports=list(graph.model.opset_import))
    return np.asarray(ReferenceEvaluator(model).run(None, {x: probes})[0], dtype=np.float64)


def rewrite(model, convs: list[QuantConv], steps: list[StepFn]) -> tuple[object, dict]:
    """Copy of `model` with INT8-code weights + DequantizeLinear on `convs` and a Q/DQ pair after each step.

    Returns (new model, facts): max absolute and relative (to the channel's / layer's top level) level errors.
    """
    from onnx import helper, numpy_helper
    new = type(model)()
    new.CopyFrom(model)
    inits, head, after = [], [], {}
    position = {id(n): i for i, n in enumerate(model.graph.node)}
    w_err = w_rel = a_err = a_rel = 0.0
    w_rels, a_rels = [], []
    for i, qc in enumerate(convs):
        levels = np.stack([pad_levels(lv, max(len(v) for v in qc.levels)) for lv in qc.levels])
        scale, codes, err = int8_grid(levels)
        top = np.abs(levels).max(axis=1)
        w_rels.append(err / np.where(top > 0, top, 1))
        w_err, w_rel = max(w_err, err.max()), max(w_rel, w_rels[-1].max())
        q = np.take_along_axis(codes, qc.index, axis=1).reshape(qc.weight.shape)
        names = [f"lq_w{i}_codes", f"lq_w{i}_scale", f"lq_w{i}_zero", f"lq_w{i}_dq"]
        inits += [numpy_helper.from_array(q.astype(np.int8), names[0]),
                  numpy_helper.from_array(scale.astype(np.float32), names[1]),
                  numpy_helper.from_array(np.zeros(len(scale), np.int8), names[2])]
        head.append(helper.make_node("DequantizeLinear", names[:3], [names[3]], axis=0, name=names[3]))
        new.graph.node[position[id(qc.node)]].input[1] = names[3]
    for i, st in enumerate(steps):
        scale, codes, err = int8_grid(st.levels[None, :])
        top = max(float(np.abs(st.levels).max()), 1e-30)
        a_rels.append(float(err[0]) / top)
        a_err, a_rel = max(a_err, float(err[0])), max(a_rel, a_rels[-1])
        names = [f"lq_a{i}_scale", f"lq_a{i}_zero", f"lq_a{i}_q", f"lq_a{i}_dq"]
        inits += [numpy_helper.from_array(np.array(scale[0], np.float32), names[0]),
                  numpy_helper.from_array(np.array(0, np.int8), names[1])]
        after[st.y] = [helper.make_node("QuantizeLinear", [st.y, *names[:2]], [names[2]], name=names[2]),
                       helper.make_node("DequantizeLinear", [names[2], *names[:2]], [names[3]], name=names[3])]
        for node in new.graph.node:
            if node.op_type == "Conv" and node.input[0] == st.y:
                node.input[0] = names[3]
    _splice(new, inits, head, after)
    return new, {"max_weight_level_error": float(w_err), "max_weight_level_error_rel": float(w_rel),
                 "mean_weight_level_error_rel": float(np.concatenate(w_rels).mean()) if w_rels else 0.0,
                 "max_act_level_error": float(a_err), "max_act_level_error_rel": float(a_rel),
                 "mean_act_level_error_rel": float(np.mean(a_rels)) if a_rels else 0.0}


def pad_levels(levels: np.ndarray, n: int) -> np.ndarray:
    """Channels using fewer levels are padded with their last level (codes stay indexable, errors unchanged)."""
    return np.concatenate([levels, np.full(n - len(levels), levels[-1])])


def _splice(model, inits: list, head: list, after: dict) -> None:
    """Add initializers, put `head` nodes first and `after[y]` right behind y's producer; drop dead nodes."""
    nodes = list(head)
    for node in model.graph.node:
        nodes.append(node)
        for out in node.output:
            nodes += after.get(out, [])
    used = {o.name for o in model.graph.output}
    for node in reversed(nodes):  # reverse topological sweep: keep a node only if something uses it
        if set(node.output) & used:
            used |= set(node.input)
    model.graph.ClearField("node")
    model.graph.node.extend(n for n in nodes if set(n.output) & used)
    kept = [t for t in list(model.graph.initializer) + inits if t.name in used]
    model.graph.ClearField("initializer")
    model.graph.initializer.extend(kept)
