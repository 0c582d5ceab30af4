"""Export stage: checkpoint -> one verified ONNX graph per resolution (+ optional switchable graph) + export.json.

Per resolution: specialise the RS-Net (private, interpolated or nearest BN), fold every BN into its conv, export
a static 1xCxRxR graph with the TorchScript exporter, then verify it before it counts: onnx.checker, no
BatchNormalization node, and ONNX Runtime vs the PyTorch RS-Net on real images of the data (max abs diff under
`onnx_checks` tolerance, 100% top-1 agreement). The whole output directory is written atomically: a failed
export leaves nothing behind, and a previous export in the same place stays intact until the new one is done.
"""
import logging
import os
from pathlib import Path
from typing import Any, Sequence

from edgeres import _optional
from edgeres._io import check_out_dir, read_json, relative_to, staged_dir
from edgeres.defaults import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET
from edgeres.errors import EdgeresError, EdgeresUsageError
from edgeres.export.checks import ABS_TOL, REL_TOL, Rule
from edgeres.export.folded import export_resolution
from edgeres.export.source import ExportSettings, Source
from edgeres.manifests._base import read_manifest
from edgeres.manifests.export import write_export
from edgeres.resolutions import parse_resolutions

log = logging.getLogger(__name__)

MACS_CONVENTION = "multiply-accumulates of conv and matmul layers (RS-Nets' 'FLOPs (Multiply-Adds)')"
MARKERS = ("export.json",)


def export(checkpoint: str | os.PathLike, out: str | os.PathLike, resolutions: Sequence[int] | str | None = None, *,
           opset: int = DEFAULT_OPSET, dynamic_batch: bool = False, switchable: bool = False, allow_nearest: bool = False,
           verify_images: int = 64, data: str | None = None) -> dict[str, Any]:
    """Export `checkpoint` to `out` (a new or previous export directory); returns the export.json manifest.

    resolutions: pixels (default: the trained ones); an untrained one inside the trained range gets
    interpolated BNs, outside it needs `allow_nearest`. `data` (default: the checkpoint's own) supplies the
    `verify_images` real images per resolution.
    """
    _optional.torch("exporting a checkpoint")
    settings = _settings(opset, dynamic_batch, allow_nearest, verify_images)
    out = check_out_dir(out, MARKERS, "export")
    src, res_list = _open_source(checkpoint, resolutions, data, allow_nearest)
    with staged_dir(out, MARKERS, "export", keep=_not_ours(out)) as tmp:
        graphs = [export_resolution(src, res, tmp, settings) for res in res_list]
        extra = None
        if switchable:
            from edgeres.export.switchable import export_switchable
            extra = export_switchable(src, tmp, settings, graphs)
        write_export(tmp / "export.json", _manifest_body(src, settings, graphs, extra, out))
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
    from edgeres.data import open_images
    from edgeres.evaluate import check_classes
    from edgeres.models import check_resolutions_fit, choose_bn
    from edgeres.models.checkpoint import load_checkpoint

    model, info, digest = load_checkpoint(checkpoint)
    res_list = parse_resolutions(resolutions) if resolutions is not None else info.resolutions
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


def _not_ours(out: Path):
    """Which entries of a previous export directory to keep: everything but its graphs and export.json
    (build.json, engines, the user's notes stay; graphs of resolutions no longer exported go)."""
    try:
        old = read_json(out / "export.json") if (out / "export.json").is_file() else {}
        ours = {g["file"] for g in old.get("graphs", [])} | {(old.get("switchable") or {}).get("file")}
    except (EdgeresError, AttributeError, KeyError, TypeError):
        ours = set()
    return lambda name: name not in ours | {"export.json"}


def _manifest_body(src: Source, settings: ExportSettings, graphs: list, switchable: dict | None, out: Path) -> dict:
    info = src.info
    # relative to export.json, so that a folder holding both checkpoint and export can move as a whole
    return {"checkpoint": {"path": relative_to(src.path, out), "sha256": src.sha256, "arch": info.arch.to_json(),
                           "resolutions": list(info.resolutions), "metrics": info.metrics},
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
