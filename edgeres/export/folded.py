"""One BN-folded, verified static graph per resolution."""
import logging
from pathlib import Path
from typing import Any

from edgeres._io import write_bytes
from edgeres.export.checks import (
    agreement,
    check_graph,
    io_spec,
    onnx_from_module,
    require_agreement,
    with_metadata,
)
from edgeres.export.source import (
    ExportSettings,
    Source,
    bn_pairs,
    graph_metadata,
    one_torch_thread,
    ort_logits,
    torch_logits,
    verification_inputs,
)

log = logging.getLogger("edgeres.export")


def export_resolution(src: Source, res: int, tmp: Path, settings: ExportSettings) -> dict[str, Any]:
    """Specialise, fold, export and verify one resolution; returns its export.json graph entry."""
    from edgeres.export.flops import model_cost
    from edgeres.models import choose_bn
    from edgeres.models.specialize import bn_mode, fp16_range, specialize

    choice = choose_bn(res, src.info.resolutions, settings.allow_nearest)
    _warn_feature_map(src, choice)
    shape = (1, src.info.arch.in_channels, res, res)
    with one_torch_thread():
        special = specialize(src.model, res, settings.allow_nearest, pairs=bn_pairs(src))
        proto = _graph(special, shape, settings, graph_metadata(src, resolution=res, bn=bn_mode(choice)))
    name = src.graph_name(f"r{res}")
    digest, size = write_checked(proto, tmp / name)
    result = verify_graph(src, tmp / name, res, settings)
    spec, fp16 = io_spec(proto), fp16_range(special)
    cost = model_cost(special.to("meta"), shape)  # shapes only: the MACs without a second real forward
    return {"resolution": res, "file": name, "sha256": digest, "bytes": size,
            "opset": settings.opset, "input": spec["inputs"][0], "output": spec["outputs"][0],
            **cost.to_json(), "bn": bn_mode(choice),
            "bn_source": {"high": choice.high, "low": choice.low, "w_high": choice.w_high},
            "feature_map": src.sides[res], **result.to_json(), "fp16": fp16}


def write_checked(proto, path: Path) -> tuple[str, int]:
    """Serialise once, check those bytes (onnx.checker, no BN left) and write them; returns (sha256, bytes)."""
    import hashlib
    data = proto.SerializeToString()
    check_graph(proto, path.name, data)
    write_bytes(path, data)
    return hashlib.sha256(data).hexdigest(), len(data)


def _graph(module, shape: tuple, settings: ExportSettings, props: dict[str, Any]):
    import torch

    axes = {"input": {0: "batch"}, "logits": {0: "batch"}} if settings.dynamic_batch else None
    raw = onnx_from_module(module, (torch.zeros(shape),), ["input"], ["logits"], settings.opset, axes)
    return with_metadata(raw, props)


def _warn_feature_map(src: Source, choice) -> None:
    """FACTS: interpolating between resolutions whose final feature maps differ in size works poorly."""
    if not choice.exact and src.sides[choice.high] != src.sides[choice.low]:
        log.warning("resolution %d interpolates BNs of %d and %d whose final feature maps differ (%d vs %d px): "
                    "expect lower accuracy; re-estimate BN statistics at %d instead", choice.res, choice.high,
                    choice.low, src.sides[choice.high], src.sides[choice.low], choice.res)


def verify_graph(src: Source, path: Path, res: int, settings: ExportSettings):
    """ORT vs the PyTorch RS-Net at `res` on real images; raises unless within tolerance and top-1 agrees."""
    xs = verification_inputs(src, res, settings.verify_images)
    got = ort_logits(path, xs)
    result = agreement(torch_logits(src, xs, res, settings.allow_nearest), got)
    require_agreement(result, f"{path.name} at {res} px", src.rule)
    src.ort_logits[res] = got
    return result
