"""A tiny, deterministic CNN export directory for CI latency gates: `python -m edgeres.runtimes.tiny OUT [--depth N]`.

Built with onnx.helper (no torch), so a CI job can regenerate exactly the graphs its committed baseline was
measured on. Graph: Conv 3->16 3x3 + ReLU, `depth` x (Conv 16->16 3x3 + ReLU), GlobalAveragePool, Gemm 16->10.
MACs per image = R^2 (3*16*9 + depth*16*16*9) + 16*10; a larger `depth` is a robustly slower model.
`extra` = k adds work of known cost that leaves the logits exactly unchanged (a gate's "made slower" build):
k 1x1 convs 16->16 with identity weights after the last ReLU, k * R^2 * 256 more MACs (k=5: +25.4% at depth
2; measured +5% latency each on a 2-core Xeon with AVX-512).
"""
import argparse
import os
from pathlib import Path

import numpy as np

from edgeres._io import sha256_file, write_bytes
from edgeres.manifests._base import write_manifest

WIDTH, CLASSES = 16, 10


def tiny_macs(res: int, depth: int, extra: int = 0) -> int:
    """Multiply-accumulates per image (bias adds not counted, as in torch.utils.flop_counter)."""
    return res * res * (3 * WIDTH * 9 + depth * WIDTH * WIDTH * 9 + extra * WIDTH * WIDTH) + WIDTH * CLASSES


def tiny_graph(res: int, depth: int = 2, seed: int = 0, extra: int = 0) -> bytes:
    """Serialized ONNX (opset 17) of the tiny CNN at a static 1x3xRxR input (`extra`: see the module doc)."""
    from onnx import helper, numpy_helper
    rng = np.random.default_rng(seed)
    inits, nodes, x = [], [], "input"
    for i, cin in enumerate([3] + [WIDTH] * depth):
        w = (rng.standard_normal((WIDTH, cin, 3, 3)) * (2.0 / (cin * 9)) ** 0.5).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(np.zeros(WIDTH, np.float32), f"b{i}")]
        nodes += [helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]
        x = f"r{i}"
    fc = (rng.standard_normal((CLASSES, WIDTH)) * 0.1).astype(np.float32)
    inits += [numpy_helper.from_array(fc, "fc"), numpy_helper.from_array(np.zeros(CLASSES, np.float32), "fcb")]
    x = _extra_work(nodes, inits, x, extra)
    nodes += [helper.make_node("GlobalAveragePool", [x], ["gap"]), helper.make_node("Flatten", ["gap"], ["flat"]),
              helper.make_node("Gemm", ["flat", "fc", "fcb"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, f"tiny{depth}", [_io("input", [1, 3, res, res])], [_io("logits", [1, CLASSES])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgeres-tiny")
    model.ir_version = 8  # readable by ONNX Runtime >= 1.10
    return model.SerializeToString()


def _extra_work(nodes: list, inits: list, x: str, extra: int) -> str:
    """`extra` identity 1x1 convs on `x` (x * 1 + 0 * others is exact in float); returns the last output."""
    from onnx import helper, numpy_helper
    if extra:
        inits.append(numpy_helper.from_array(np.eye(WIDTH, dtype=np.float32).reshape(WIDTH, WIDTH, 1, 1), "eye"))
    for i in range(extra):
        nodes.append(helper.make_node("Conv", [x, "eye"], [f"same{i}"]))
        x = f"same{i}"
    return x


def _io(name: str, shape: list[int]):
    from onnx import TensorProto, helper
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def tiny_export(out: str | os.PathLike, resolutions=(64, 48, 32), depth: int = 2, extra: int = 0) -> Path:
    """Write graphs + an export.json (format 1, no checkpoint) for the tiny CNN; returns `out`."""
    out = Path(out)
    graphs = []
    for res in sorted(resolutions, reverse=True):
        path = write_bytes(out / f"tiny_r{res}.onnx", tiny_graph(res, depth, extra=extra))
        graphs.append({"resolution": res, "file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size,
                       "input": {"name": "input", "shape": [1, 3, res, res]},
                       "output": {"name": "logits", "shape": [1, CLASSES]}, "macs": tiny_macs(res, depth, extra),
                       "params": None, "bn": "exact", "max_abs_diff": 0.0, "top1_agreement": 1.0})
    write_manifest(out / "export.json", "export", {
        "checkpoint": {"path": None, "sha256": None, "arch": f"tiny-cnn-depth{depth}", "resolutions": list(resolutions)},
        "data": None, "classes": [], "normalization": {"mean": [0.5] * 3, "std": [0.5] * 3}, "eval_crop_ratio": 1.0,
        "opset": 17, "graphs": graphs, "switchable": None})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--depth", type=int, default=2, help="3x3 16-channel convs after the stem (more = slower)")
    parser.add_argument("--res", default="64,48,32", help="resolutions in pixels")
    parser.add_argument("--extra", type=int, default=0, help="identity 1x1 convs: work of known cost (0: none)")
    args = parser.parse_args()
    print(tiny_export(args.out, [int(r) for r in args.res.split(",")], args.depth, args.extra))


if __name__ == "__main__":
    main()
