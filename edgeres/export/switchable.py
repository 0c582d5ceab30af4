"""One switchable ONNX graph: conv weights stored once, the resolution's BNs folded into them when it loads.

Each SwitchableBatchNorm2d is first exported as y = x * a[i] + b[i]: a = gamma / sqrt(var + eps),
b = beta - mean * a (the BN folded to an affine) for each of the S trained resolutions (high -> low), stored as
[S, C, 1, 1] tables read through Gather by the graph's second input `res_index` (int64, shape [1]). That graph
cost 1.15-1.35x the folded graphs (an unfused Mul/Add/Relu and NCHWc reorders per conv), so `branches`
rewrites it as one If branch per resolution whose convs compute with W * a_k: the runtime folds that at
session load, and every branch runs the folded graph's kernels. Spatial size stays dynamic, so the one file
serves every trained resolution.
"""
import copy
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeres.export.branches import branched_from_tables
from edgeres.export.checks import (
    agreement,
    io_spec,
    onnx_from_module,
    require_agreement,
    with_metadata,
)
from edgeres.export.folded import write_checked
from edgeres.export.source import (
    ExportSettings,
    Source,
    graph_metadata,
    one_torch_thread,
    ort_logits,
    torch_logits,
    verification_inputs,
)
from edgeres.models.specialize import freeze_for_export, replace_module
from edgeres.models.switchable_bn import SwitchableBatchNorm2d

TIMING_THREADS, TIMING_WARMUP, TIMING_BURSTS, TIMING_BURST_S = 2, 5, 7, 0.1
TIMING_NOTE = (f"indicative: ONNX Runtime CPU, {TIMING_THREADS} threads, batch 1, after {TIMING_WARMUP} warm-up runs "
               f"{TIMING_BURSTS} bursts of {TIMING_BURST_S} s alternating a switchable and a folded run; *_ms are "
               "medians of all runs, ratio the median over bursts of each burst's median switchable/folded run "
               "ratio, on a possibly shared machine; use `edgeres bench` for real numbers")


class _Index:
    """The run-time resolution index, shared by every AffineTable of one graph (set per forward)."""

    value: torch.Tensor | None = None


def bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BN as y = x * a + b per channel: a = gamma / sqrt(var + eps), b = beta - mean * a. Shapes [C]."""
    gamma = bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
    a = gamma / torch.sqrt(bn.running_var + bn.eps)
    return a.detach(), (beta - bn.running_mean * a).detach()


class AffineTable(nn.Module):
    """Folded BNs of all trained resolutions: buffers `scale`, `shift` of shape [S, C, 1, 1], row chosen at run
    time. Stored pre-shaped so the graph is Gather -> Mul/Add with no Reshape per layer."""

    def __init__(self, layer: SwitchableBatchNorm2d, index: _Index):
        super().__init__()
        rows = [bn_affine(layer.private(r)) for r in layer.resolutions]
        self.register_buffer("scale", torch.stack([a for a, _ in rows])[:, :, None, None])
        self.register_buffer("shift", torch.stack([b for _, b in rows])[:, :, None, None])
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        i = self.index.value  # int64 [1]: exported as Gather on the tables -> [1, C, 1, 1]
        return x * self.scale.index_select(0, i) + self.shift.index_select(0, i)


class SwitchableGraph(nn.Module):
    """forward(x: N,C,H,W float32, res_index: int64 [1]) -> logits; index into the trained resolutions."""

    def __init__(self, rsnet: nn.Module):
        super().__init__()
        self.body = copy.deepcopy(rsnet).eval()
        freeze_for_export(self.body)  # same LQ-Net contract as the folded graphs
        self.index = _Index()
        for name, module in list(self.body.named_modules()):
            if isinstance(module, SwitchableBatchNorm2d):
                replace_module(self.body, name, AffineTable(module, self.index))

    def forward(self, x: torch.Tensor, res_index: torch.Tensor) -> torch.Tensor:
        self.index.value = res_index.reshape(1)
        try:
            return self.body(x)
        finally:
            self.index.value = None


def export_switchable(src: Source, tmp: Path, settings: ExportSettings, graphs: list[dict]) -> dict[str, Any]:
    """Export, check and verify the switchable graph; returns export.json's `switchable` entry."""
    trained = list(src.info.resolutions)
    name = src.graph_name("switchable")
    with one_torch_thread():
        proto = _switchable_proto(src, settings, trained)
    digest, size = write_checked(proto, tmp / name)
    checks = {r: verify_switchable(src, tmp / name, trained.index(r), r, settings) for r in trained}
    folded = {g["resolution"]: g for g in graphs if g["resolution"] in trained and g["bn"] == "exact"}
    spec = io_spec(proto)
    return {"file": name, "sha256": digest, "bytes": size,
            "opset": settings.opset, "inputs": spec["inputs"], "output": spec["outputs"][0],
            "resolutions": trained, "res_index": "position in `resolutions` (high -> low), int64 [1]",
            "max_abs_diff": max(c["max_abs_diff"] for c in checks.values()),
            "checks": {str(r): c for r, c in checks.items()}, **_size_vs_folded(tmp / name, folded, len(trained)),
            "latency_ms": {str(r): _latency(tmp / name, tmp / g["file"], trained.index(r), g["input"]["shape"])
                           for r, g in folded.items()}, "latency_note": TIMING_NOTE}


def _switchable_proto(src: Source, settings: ExportSettings, trained: list[int]):
    top = trained[0]
    x = torch.zeros(1, src.info.arch.in_channels, top, top)
    axes = {"input": {2: "height", 3: "width"}}
    if settings.dynamic_batch:
        axes = {"input": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch"}}
    raw = onnx_from_module(SwitchableGraph(src.model), (x, torch.zeros(1, dtype=torch.int64)),
                           ["input", "res_index"], ["logits"], settings.opset, axes)
    props = graph_metadata(src, resolutions=",".join(map(str, trained)), bn="switchable",
                           res_index="int64 [1]: index into edgeres.resolutions (high -> low)")
    return branched_from_tables(with_metadata(raw, props), len(trained))


def verify_switchable(src: Source, path: Path, index: int, res: int, settings: ExportSettings) -> dict[str, Any]:
    """Switchable graph at `index` vs the folded graph at `res` (its verified ORT output) or, if that
    resolution was not exported, vs the PyTorch RS-Net. Raises unless within tolerance and top-1 agrees."""
    xs = verification_inputs(src, res, settings.verify_images)
    ref = src.ort_logits.get(res)
    reference = "folded-onnx" if ref is not None else "pytorch"
    if ref is None:
        ref = torch_logits(src, xs, res, settings.allow_nearest)
    got = ort_logits(path, xs, {"res_index": np.array([index], np.int64)})
    result = agreement(ref, got)
    require_agreement(result, f"{path.name} at {res} px (res_index {index})", src.rule)
    return {**result.to_json(), "reference": reference}


def _size_vs_folded(path: Path, folded: dict[int, dict], count: int) -> dict[str, Any]:
    """Bytes of the switchable graph vs the S folded graphs (measured when all S were exported)."""
    sizes = [g["bytes"] for g in folded.values()]
    total = sum(sizes) if len(sizes) == count else (round(count * statistics.mean(sizes)) if sizes else None)
    return {"folded_bytes_total": total, "folded_bytes_estimated": len(sizes) != count,
            "size_ratio": None if not total else path.stat().st_size / total}


def _latency(switchable: Path, folded: Path, index: int, shape: list) -> dict[str, float]:
    """Both graphs at batch 1, run by run in turn (timing.paired_burst): medians (ms) and the paired ratio."""
    from edgeres.runtimes.base import random_input
    from edgeres.runtimes.ort import OrtRunner
    from edgeres.runtimes.timing import paired_burst, runner_cell, warm_up
    feeds = {"res_index": np.array([index], np.int64)}
    runners = {"switchable": OrtRunner(switchable, TIMING_THREADS, spinning=False, feeds=feeds),
               "folded": OrtRunner(folded, TIMING_THREADS, spinning=False)}
    x = random_input(tuple(1 if isinstance(d, str) else d for d in shape))  # the folded graph's 1,C,R,R
    cells = {key: runner_cell(key, r, x) for key, r in runners.items()}
    warm_up(list(cells.values()), TIMING_WARMUP)
    for _ in range(TIMING_BURSTS):
        paired_burst(cells["switchable"], cells["folded"], TIMING_BURST_S)
    medians = {f"{k}_ms": round(statistics.median(c.samples_ms), 4) for k, c in cells.items()}
    return {**medians, "ratio": round(statistics.median(cells["switchable"].reference_ratios), 4)}
