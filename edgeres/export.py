"""Export stage: checkpoint -> one verified ONNX graph per resolution (+ optional switchable graph) + export.json.

Per resolution: specialise the RS-Net (private, interpolated or nearest BN), fold every BN into its conv, export
a static 1xCxRxR graph with the TorchScript exporter, then verify it before it counts: onnx.checker, no
BatchNormalization node, and ONNX Runtime vs the PyTorch RS-Net on real images of the data (max abs diff under
`onnx_checks` tolerance, 100% top-1 agreement). The whole output directory is written atomically: a failed
export leaves nothing behind, and a previous export in the same place stays intact until the new one is done.
"""
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import __version__, _optional
from ._io import atomic_path, read_json, sha256_file, write_bytes
from .errors import EdgeresError, EdgeresUsageError
from .manifest import read_manifest, write_manifest
from .onnx_checks import (ABS_TOL, FLOAT_RULE, REL_TOL, STEP_RULE, Rule, agreement, check_graph, io_spec,
                          onnx_from_module, require_agreement, with_metadata)
from .resolutions import parse_resolutions

log = logging.getLogger(__name__)

MIN_OPSET, MAX_OPSET = 13, 20  # 13: per-axis Q/DQ for the build stage; 20: the TorchScript exporter's maximum
MACS_CONVENTION = "multiply-accumulates of conv and matmul layers (RS-Nets' 'FLOPs (Multiply-Adds)')"


@dataclass(frozen=True)
class ExportSettings:
    opset: int = 17  # TensorRT 8.5+ (JetPack 5) parses opset 17 (FACTS: onnx-tensorrt operator history)
    dynamic_batch: bool = False
    allow_nearest: bool = False
    verify_images: int = 64  # real images per resolution compared between PyTorch and ONNX Runtime


@dataclass
class Source:
    """The checkpoint being exported and what every graph needs from it."""

    model: Any  # the RS-Net (eval mode)
    info: Any  # CheckpointInfo
    sha256: str  # of the weights file
    path: Path
    images: Any  # ImageSet used for verification
    sides: dict[int, int]  # resolution -> final feature-map side (px)
    ort_logits: dict[int, np.ndarray] = field(default_factory=dict)  # folded graphs' verified outputs
    inputs: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)  # (res, count) -> verification images

    @property
    def rule(self) -> Rule:
        """LQ activation quantizers (steps) can flip on rounding: they get the looser, stated STEP_RULE."""
        from .arch import parse_quant
        quant = self.info.arch.quant
        return STEP_RULE if quant is not None and parse_quant(quant)[1] is not None else FLOAT_RULE

    def graph_name(self, tag: str) -> str:
        return f"{self.info.arch.name}_{tag}.onnx"


def export(checkpoint: str | os.PathLike, out: str | os.PathLike, resolutions: Sequence[int] | str | None = None,
           opset: int = 17, dynamic_batch: bool = False, switchable: bool = False, allow_nearest: bool = False,
           verify_images: int = 64, data: str | None = None) -> dict[str, Any]:
    """Export `checkpoint` to `out` (a new or previous export directory); returns the export.json manifest.

    resolutions: pixels (default: the trained ones); an untrained one inside the trained range gets
    interpolated BNs, outside it needs `allow_nearest`. `data` (default: the checkpoint's own) supplies the
    `verify_images` real images per resolution.
    """
    _optional.torch("exporting a checkpoint")
    settings = _settings(opset, dynamic_batch, allow_nearest, verify_images)
    out = _prepare_out(Path(out))
    src, res_list = _open_source(checkpoint, resolutions, data, allow_nearest)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        graphs = [export_resolution(src, res, tmp, settings) for res in res_list]
        extra = None
        if switchable:
            from .export_switchable import export_switchable
            extra = export_switchable(src, tmp, settings, graphs)
        write_manifest(tmp / "export.json", "export", _manifest_body(src, settings, graphs, extra))
        _carry_over(out, tmp)
    return read_manifest(out, "export")


def _settings(opset: int, dynamic_batch: bool, allow_nearest: bool, verify_images: int) -> ExportSettings:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise EdgeresUsageError(f"--opset {opset} is not supported: choose {MIN_OPSET}..{MAX_OPSET} (17 suits "
                                "TensorRT 8.5+, 13 TensorRT 8.2)")
    if verify_images < 1:
        raise EdgeresUsageError("--verify-images must be at least 1: every graph is checked on real images")
    return ExportSettings(opset, dynamic_batch, allow_nearest, verify_images)


def _open_source(checkpoint, resolutions, data, allow_nearest: bool) -> tuple[Source, tuple[int, ...]]:
    """Load and check everything before any file is written: checkpoint, resolutions, data."""
    from .checkpoint import load_checkpoint
    from .data import open_images
    from .evaluate import check_classes
    from .models import check_resolutions_fit, choose_bn

    model, info, digest = load_checkpoint(checkpoint)
    res_list = parse_resolutions(resolutions) if resolutions else info.resolutions
    for res in res_list:
        choose_bn(res, info.resolutions, allow_nearest)
    if not (data or info.data):
        raise EdgeresError(f"{checkpoint} does not name its data: pass --data to verify the graphs on real images")
    images = open_images(data or info.data, "val")
    check_classes(images, info.arch.num_classes, checkpoint)
    if images.info.channels != info.arch.in_channels:
        raise EdgeresError(f"{images.info.name} has {images.info.channels}-channel images but {checkpoint} takes "
                           f"{info.arch.in_channels}: pass the --data the model was trained on")
    sides = check_resolutions_fit(model, sorted(set(res_list) | set(info.resolutions)), info.arch.in_channels)
    return Source(model, info, digest, Path(checkpoint).resolve(), images, sides), res_list


def _prepare_out(out: Path) -> Path:
    """Refuse to replace anything that is not a previous export (e.g. `--out ~`)."""
    if out.exists() and not out.is_dir():
        raise EdgeresError(f"--out {out} is a file: pass a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / "export.json").is_file():
        raise EdgeresError(f"--out {out} is not empty and holds no export.json: choose a new or empty directory")
    return out


def _carry_over(out: Path, tmp: Path) -> None:
    """Keep files other stages wrote into a previous export directory (hard links: no copy, no loss on failure)."""
    if not out.is_dir():
        return
    try:
        old = read_json(out / "export.json")
        ours = {g["file"] for g in old.get("graphs", [])} | {(old.get("switchable") or {}).get("file")}
    except (EdgeresError, AttributeError, KeyError, TypeError):
        ours = set()
    for entry in out.iterdir():
        if entry.name in ours | {"export.json"} or (tmp / entry.name).exists():
            continue
        if entry.is_dir():
            shutil.copytree(entry, tmp / entry.name, copy_function=_link_or_copy, symlinks=True)
        else:
            _link_or_copy(entry, tmp / entry.name)
        log.info("kept %s from the previous export directory", entry.name)


def _link_or_copy(src, dst) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def export_resolution(src: Source, res: int, tmp: Path, settings: ExportSettings) -> dict[str, Any]:
    """Specialise, fold, export and verify one resolution; returns its export.json graph entry."""
    from .flops import model_cost
    from .models import choose_bn
    from .models.specialize import bn_mode, fp16_range, specialize

    choice = choose_bn(res, src.info.resolutions, settings.allow_nearest)
    _warn_feature_map(src, choice)
    special = specialize(src.model, res, settings.allow_nearest)
    shape = (1, src.info.arch.in_channels, res, res)
    proto = _graph(special, shape, settings, _metadata(src, resolution=res, bn=bn_mode(choice)))
    name = src.graph_name(f"r{res}")
    check_graph(proto, name)
    write_bytes(tmp / name, proto.SerializeToString())
    result = verify_graph(src, tmp / name, res, settings)
    spec = io_spec(proto)
    return {"resolution": res, "file": name, "sha256": sha256_file(tmp / name), "bytes": (tmp / name).stat().st_size,
            "opset": settings.opset, "input": spec["inputs"][0], "output": spec["outputs"][0],
            **model_cost(special, shape).to_json(), "bn": bn_mode(choice),
            "bn_source": {"high": choice.high, "low": choice.low, "w_high": choice.w_high},
            "feature_map": src.sides[res], **result.to_json(), "fp16": fp16_range(special)}


def _graph(module, shape: tuple, settings: ExportSettings, props: dict[str, Any]):
    import torch

    axes = {"input": {0: "batch"}, "logits": {0: "batch"}} if settings.dynamic_batch else None
    raw = onnx_from_module(module, (torch.zeros(shape),), ["input"], ["logits"], settings.opset, axes)
    return with_metadata(raw, props)


def _metadata(src: Source, **extra: Any) -> dict[str, Any]:
    """ONNX metadata_props: what a runtime needs to feed the graph, and where it came from."""
    import json
    info = src.info
    props = {"resolution": None, "mean": json.dumps(list(info.mean)), "std": json.dumps(list(info.std)),
             "eval_crop_ratio": info.eval_crop_ratio, "num_classes": info.arch.num_classes,
             "in_channels": info.arch.in_channels, "classes": json.dumps(list(info.classes)),
             "arch": json.dumps(info.arch.to_json(), sort_keys=True), "checkpoint_sha256": src.sha256,
             "edgeres_version": __version__, **extra}
    return {f"edgeres.{k}": v for k, v in props.items() if v is not None}


def _warn_feature_map(src: Source, choice) -> None:
    """FACTS: interpolating between resolutions whose final feature maps differ in size works poorly."""
    if not choice.exact and src.sides[choice.high] != src.sides[choice.low]:
        log.warning("resolution %d interpolates BNs of %d and %d whose final feature maps differ (%d vs %d px): "
                    "expect lower accuracy; re-estimate BN statistics at %d instead", choice.res, choice.high,
                    choice.low, src.sides[choice.high], src.sides[choice.low], choice.res)


def verification_inputs(src: Source, res: int, count: int) -> np.ndarray:
    """The first `count` images of the data, preprocessed as for eval at `res`: N,C,res,res float32.

    Kept on `src`: the folded graph and the switchable graph are verified on the same images.
    """
    from .data import eval_batches
    if (res, count) not in src.inputs:
        info = src.info
        batches = eval_batches(src.images, res, info.mean, info.std, info.eval_crop_ratio, 64, count)
        src.inputs[(res, count)] = np.concatenate([x for x, _ in batches])
    return src.inputs[(res, count)]


def torch_logits(src: Source, xs: np.ndarray, res: int, allow_nearest: bool) -> np.ndarray:
    """The RS-Net itself at `res` (not the folded copy): the reference every graph must match."""
    from .evaluate import torch_scorer
    score = torch_scorer(src.model, res, allow_nearest)
    return np.concatenate([score(xs[i:i + 64]) for i in range(0, len(xs), 64)])


def ort_logits(path: Path, xs: np.ndarray, extra_feeds: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Run a graph in ONNX Runtime image by image when its batch is fixed to 1, else in one call."""
    from .runtime import ort_session
    session = ort_session(path)
    first = session.get_inputs()[0]
    chunks = [xs[i:i + 1] for i in range(len(xs))] if first.shape[0] == 1 else [xs]
    return np.concatenate([session.run(None, {first.name: c, **(extra_feeds or {})})[0] for c in chunks])


def verify_graph(src: Source, path: Path, res: int, settings: ExportSettings):
    """ORT vs the PyTorch RS-Net at `res` on real images; raises unless within tolerance and top-1 agrees."""
    xs = verification_inputs(src, res, settings.verify_images)
    got = ort_logits(path, xs)
    result = agreement(torch_logits(src, xs, res, settings.allow_nearest), got)
    require_agreement(result, f"{path.name} at {res} px", src.rule)
    src.ort_logits[res] = got
    return result


def _manifest_body(src: Source, settings: ExportSettings, graphs: list, switchable: dict | None) -> dict:
    info = src.info
    return {"checkpoint": {"path": str(src.path), "sha256": src.sha256, "arch": info.arch.to_json(),
                           "resolutions": list(info.resolutions)},
            "data": info.data, "verify_data": src.images.info.name, "classes": list(info.classes),
            "normalization": {"mean": list(info.mean), "std": list(info.std)},
            "eval_crop_ratio": info.eval_crop_ratio, "quant": info.arch.quant, "opset": settings.opset,
            "dynamic_batch": settings.dynamic_batch, "macs_convention": MACS_CONVENTION,
            "verification": _rule_json(src.rule),
            "graphs": graphs, "switchable": switchable}


def _rule_json(rule: Rule) -> dict[str, Any]:
    return {"rule": rule.name, "tolerance": f"|ort - torch| <= {ABS_TOL:g} + {REL_TOL:g} * max|torch logits|",
            "min_images_within_tolerance": rule.min_within, "min_top1_agreement": rule.min_top1,
            "reference": "the PyTorch RS-Net at each resolution (switchable graph: the folded graphs)"}
