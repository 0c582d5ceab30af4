"""The switchable graph as one If branch per resolution, each with its BNs folded into the convs at load time.

The torch export of `switchable.SwitchableGraph` computes y = conv(x) * scale[i] + shift[i] with the tables
gathered by the run-time index i. ONNX Runtime cannot fuse that affine into the convolution (its operands are
not constants), so every conv pays a separate Mul, Add and Relu plus NCHWc reorders around them (ORT profiler,
ResNet18 at 224 px: Conv time equal to the folded graph's, +4.3 ms in Mul/Add/Relu/Reorder*/Gather, +15%).

Here resolution k gets a branch in which the Gathers are replaced by row k of the tables and each
conv -> Mul -> Add becomes Conv(x, W * a_k, shift_k + bias * a_k). The conv weights W stay initializers of the
main graph, stored once and read by every branch from the outer scope; the Mul on W has only constant inputs,
so the runtime's constant folding computes it when the session loads and each branch runs the folded graph's
kernels (the price: S folded weight copies in memory, not on disk). The main graph picks the branch with a
chain of If nodes on Gather(0..S-1, res_index), which keeps the old graph's bounds check on res_index.
"""
from collections import defaultdict

import numpy as np

from edgeres.errors import EdgeresError

INDEX_INPUT = "res_index"
_INDEX_OPS = {"Reshape", "Squeeze", "Unsqueeze", "Cast", "Identity"}  # how exporters shape the index


def branched_from_tables(model, count: int):
    """The Gather-table switchable ModelProto rewritten as If branches (one per table row); a new ModelProto."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    gathers, prelude = table_gathers(graph, inits, count)
    body = [n for n in graph.node if n.output[0] not in prelude and n.output[0] not in gathers]
    rows = {out: numpy_helper.to_array(inits[node.input[0]]) for out, node in gathers.items()}
    branches = [branch(body, rows, inits, k, graph.output) for k in range(count)]
    tables = {node.input[0] for node in gathers.values()}
    main = helper.make_graph(_selector(branches, graph.output), graph.name, list(graph.input), list(graph.output),
                             [t for t in graph.initializer if t.name not in tables])
    out = helper.make_model(main, opset_imports=list(model.opset_import), ir_version=model.ir_version,
                            producer_name=model.producer_name, producer_version=model.producer_version)
    out.metadata_props.extend(model.metadata_props)
    return out


def table_gathers(graph, inits: dict, count: int) -> tuple[dict, set]:
    """{output: Gather node} reading rows of a [count, ...] table by res_index, and the outputs of the nodes
    that only reshape the index on its way there. Any other use of res_index cannot be split: one-line error.
    (Nodes are keyed by their first output: protobuf element wrappers have no stable identity.)"""
    consumers = _consumers(graph.node)
    gathers, prelude, frontier = {}, set(), [INDEX_INPUT]
    while frontier:
        for node in consumers[frontier.pop()]:
            table = inits.get(node.input[0])
            if node.op_type == "Gather" and table is not None and list(table.dims[:1]) == [count]:
                gathers[node.output[0]] = node
            elif node.op_type in _INDEX_OPS:
                if node.output[0] not in prelude:
                    prelude.add(node.output[0])
                    frontier.extend(node.output)
            else:
                raise EdgeresError(f"switchable graph: {node.op_type} node {node.name or node.output[0]!r} uses res_index other than "
                                   "to pick BN table rows, so it cannot be split into one branch per resolution")
    return gathers, prelude


def branch(body: list, rows: dict, inits: dict, k: int, outputs):
    """Branch k: the body with table rows k as constants and every conv -> Mul -> Add folded into the conv.
    Its outputs are renamed `<name>@k` (a subgraph must not redefine a name of an enclosing graph)."""
    from onnx import ValueInfoProto, helper, numpy_helper

    consumers = _consumers(body)
    nodes, consts, folded_away = [], {}, set()
    for node in body:
        if node.output[0] in folded_away:
            continue
        fold = conv_affine(node, consumers, rows, inits)
        if fold is None:
            nodes.append(node)
            continue
        mul, add, scale, shift = fold
        folded_away.update((mul.output[0], add.output[0]))
        nodes.extend(folded_conv(node, add.output[0], rows[scale][k], rows[shift][k], inits, k, consts))
    used = {name for node in nodes for name in node.input}
    names = {out: f"{out}@{k}" for out in rows if out in used} | {o.name: f"{o.name}@{k}" for o in outputs}
    consts.update({names[out]: numpy_helper.from_array(rows[out][k:k + 1], names[out]) for out in rows if out in used})
    nodes = [_renamed(n, names) for n in live(nodes, [o.name for o in outputs])]
    return helper.make_graph(nodes, f"resolution_{k}", [], [ValueInfoProto(name=names[o.name], type=o.type)
                                                            for o in outputs], list(consts.values()))


def conv_affine(node, consumers: dict, rows: dict, inits: dict):
    """(Mul, Add, scale row output, shift row output) when `node` is a Conv with constant weights (and bias)
    whose only consumer is Mul(conv, scale row) whose only consumer is Add(mul, shift row); else None."""
    if node.op_type != "Conv" or any(name not in inits for name in node.input[1:]):
        return None
    mul = _only_consumer(node.output[0], consumers, "Mul")
    add = mul and _only_consumer(mul.output[0], consumers, "Add")
    if add is None:
        return None
    scale, shift = _other_input(mul, node.output[0]), _other_input(add, mul.output[0])
    return (mul, add, scale, shift) if scale in rows and shift in rows else None


def folded_conv(conv, output: str, scale: np.ndarray, shift: np.ndarray, inits: dict, k: int, consts: dict):
    """[Mul(W, a_k), Conv(x, W * a_k, b_k)] writing `output`; their constants go into `consts`."""
    from onnx import helper, numpy_helper

    a, b = scale.reshape(-1).astype(np.float32), shift.reshape(-1).astype(np.float32)
    if len(conv.input) > 2:  # (x + c) * a + b = x * a + (c * a + b)
        b = numpy_helper.to_array(inits[conv.input[2]]).astype(np.float32) * a + b
    weight = conv.input[1]
    a_name, w_name, b_name = f"{weight}@{k}/scale", f"{weight}@{k}", f"{conv.output[0]}@{k}/bias"
    consts[a_name] = numpy_helper.from_array(a.reshape(-1, *[1] * (len(inits[weight].dims) - 1)), a_name)
    consts[b_name] = numpy_helper.from_array(b, b_name)
    fold = helper.make_node("Mul", [weight, a_name], [w_name], name=f"{conv.name}@{k}/fold")
    folded = helper.make_node("Conv", [conv.input[0], w_name, b_name], [output], name=f"{conv.name}@{k}")
    folded.attribute.extend(conv.attribute)
    return [fold, folded]


def live(nodes: list, outputs: list[str]) -> list:
    """The nodes that contribute to `outputs`, in their original order (drops the index's shape constants)."""
    producer = {o: n for n in nodes for o in n.output}
    needed, stack = set(), list(outputs)
    while stack:
        node = producer.get(stack.pop())
        if node is not None and node.output[0] not in needed:
            needed.add(node.output[0])
            stack.extend(node.input)
    return [n for n in nodes if n.output[0] in needed]


def _selector(branches: list, outputs) -> list:
    """Main-graph nodes: position = Gather(0..S-1, res_index), then If(position == 0, branch 0, If(== 1, ...))."""
    from onnx import ValueInfoProto, helper, numpy_helper

    positions = numpy_helper.from_array(np.arange(len(branches), dtype=np.int64), "res_positions")
    prelude = [helper.make_node("Constant", [], ["res_positions"], value=positions),
               helper.make_node("Gather", ["res_positions", INDEX_INPUT], ["res_position"], axis=0)]
    chosen = branches[-1]  # S == 1: both ways of the single If lead to it
    for k in range(len(branches) - 2, 0, -1):
        names = [f"{o.name}@{k}+" for o in outputs]
        chosen = helper.make_graph(_choice(k, branches[k], chosen, names), f"resolution_{k}_or_later", [],
                                   [ValueInfoProto(name=n, type=o.type) for n, o in zip(names, outputs)])
    return prelude + _choice(0, branches[0], chosen, [o.name for o in outputs])


def _choice(k: int, then, otherwise, outputs: list[str]) -> list:
    """[k constant, position == k, If(then, otherwise)] writing `outputs`."""
    from onnx import TensorProto, helper

    value, test = f"res_is_{k}/value", f"res_is_{k}"
    return [helper.make_node("Constant", [], [value], value=helper.make_tensor(value, TensorProto.INT64, [1], [k])),
            helper.make_node("Equal", ["res_position", value], [test]),
            helper.make_node("If", [test], outputs, name=f"resolution_{k}_or_later", then_branch=then,
                             else_branch=otherwise)]


def _consumers(nodes) -> dict:
    consumers = defaultdict(list)
    for node in nodes:
        for name in node.input:
            consumers[name].append(node)
    return consumers


def _only_consumer(name: str, consumers: dict, op_type: str):
    users = consumers.get(name, [])
    return users[0] if len(users) == 1 and users[0].op_type == op_type else None


def _other_input(node, name: str) -> str | None:
    others = [i for i in node.input if i != name]
    return others[0] if len(node.input) == 2 and len(others) == 1 else None


def _renamed(node, names: dict):
    """`node` with inputs and outputs renamed by `names` (a copy when anything changes)."""
    if not any(n in names for n in [*node.input, *node.output]):
        return node
    from onnx import NodeProto
    copy = NodeProto()
    copy.CopyFrom(node)
    copy.input[:] = [names.get(n, n) for n in node.input]
    copy.output[:] = [names.get(n, n) for n in node.output]
    return copy
