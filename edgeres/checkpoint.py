"""Checkpoint = a directory: `model.safetensors` + a versioned `checkpoint.json` that rebuilds the model.

Loading is for untrusted input: the weights' sha256 must match the JSON, safetensors never unpickles, and a
`.pt/.pth` state dict goes through `torch.load(weights_only=True)`.
"""
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import _optional
from ._io import atomic_path, contained, sha256_file
from .errors import EdgeresError
from .manifest import read_manifest, require, write_manifest
from .arch import ArchSpec
from .resolutions import parse_resolutions

WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class CheckpointInfo:
    """Everything besides the weights that a later stage needs (see checkpoint.json)."""

    arch: ArchSpec
    resolutions: tuple[int, ...]  # trained resolutions, high -> low
    mean: tuple[float, ...]
    std: tuple[float, ...]
    eval_crop_ratio: float = 0.875  # eval: resize to res / ratio, centre-crop res (RS-Nets, Sec. 4.1)
    data: str = ""
    classes: tuple[str, ...] = ()
    ensemble_weights: tuple[float, ...] | None = None  # learned MRED alpha, high -> low
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # "224" -> {"top1": .., "top5": ..}
    training: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"arch": self.arch.to_json(), "resolutions": list(self.resolutions),
                "num_classes": self.arch.num_classes, "in_channels": self.arch.in_channels,
                "normalization": {"mean": list(self.mean), "std": list(self.std)},
                "eval_crop_ratio": self.eval_crop_ratio, "data": self.data, "classes": list(self.classes),
                "ensemble_weights": None if self.ensemble_weights is None else list(self.ensemble_weights),
                "metrics": self.metrics, "training": self.training}

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str) -> "CheckpointInfo":
        norm = require(data, "normalization", dict, where)
        weights = data.get("ensemble_weights")
        info = cls(arch=ArchSpec.from_json(require(data, "arch", dict, where)),
                   resolutions=parse_resolutions(require(data, "resolutions", list, where)),
                   mean=tuple(require(norm, "mean", list, where)), std=tuple(require(norm, "std", list, where)),
                   eval_crop_ratio=float(require(data, "eval_crop_ratio", (int, float), where)),
                   data=str(data.get("data", "")), classes=tuple(data.get("classes") or ()),
                   ensemble_weights=None if weights is None else tuple(float(w) for w in weights),
                   metrics=dict(data.get("metrics") or {}), training=dict(data.get("training") or {}))
        if len(info.mean) != info.arch.in_channels or len(info.std) != info.arch.in_channels:
            raise EdgeresError(f"{where}: normalization has {len(info.mean)} channels, the model "
                               f"{info.arch.in_channels}: the checkpoint is inconsistent")
        return info

    def with_metrics(self, metrics: dict[int, dict[str, float]]) -> "CheckpointInfo":
        return replace(self, metrics={str(r): m for r, m in metrics.items()})


def save_checkpoint(directory: str | os.PathLike, model, info: CheckpointInfo) -> Path:
    """Write weights + checkpoint.json into `directory` atomically (all or nothing)."""
    st = _optional.require("safetensors.torch", "saving a checkpoint")
    directory = Path(directory)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(directory) as tmp:
        tmp.mkdir()
        st.save_file(state, str(tmp / WEIGHTS_FILE))
        weights = {"file": WEIGHTS_FILE, "sha256": sha256_file(tmp / WEIGHTS_FILE),
                   "bytes": (tmp / WEIGHTS_FILE).stat().st_size}
        write_manifest(tmp / "checkpoint.json", "checkpoint", {**info.to_json(), "weights": weights})
    return directory


def read_checkpoint_info(directory: str | os.PathLike) -> CheckpointInfo:
    """checkpoint.json alone (no torch needed): for stages that only need the facts."""
    data = read_manifest(_checkpoint_dir(directory), "checkpoint")
    return CheckpointInfo.from_json(data, data["_path"])


def load_checkpoint(directory: str | os.PathLike, device: str = "cpu"):
    """Rebuild the RS-Net from the directory alone; returns (model in eval mode, CheckpointInfo, sha256)."""
    _optional.torch("loading a checkpoint")
    from .models.rsnet import build_rsnet

    directory = _checkpoint_dir(directory)
    data = read_manifest(directory, "checkpoint")
    where = data["_path"]
    info = CheckpointInfo.from_json(data, where)
    weights = require(data, "weights", dict, where)
    path = contained(directory, require(weights, "file", str, where))
    digest = sha256_file(path) if path.is_file() else None
    if digest != require(weights, "sha256", str, where):
        raise EdgeresError(f"{path} does not match checkpoint.json (sha256 {'missing file' if digest is None else 'mismatch'}"
                           "): the checkpoint was modified or truncated; re-create it")
    model = build_rsnet(info.arch, info.resolutions)
    load_into(model, load_state_dict_file(path), f"checkpoint {directory}")
    return model.to(device).eval(), info, digest


def load_state_dict_file(path: str | os.PathLike) -> dict[str, Any]:
    """A state dict from .safetensors, or .pt/.pth via torch.load(weights_only=True): never runs a pickle."""
    torch = _optional.torch("loading weights")
    path = Path(path)
    if not path.is_file():
        raise EdgeresError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any parse failure of untrusted bytes is the user's file, not a bug
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EdgeresError(f"cannot load weights from {path}: not a plain tensor state dict ({first[:200]})") from None
    for key in ("state_dict", "model"):  # common training-checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EdgeresError(f"{path} does not hold a state dict of tensors: save model.state_dict()")
    return state


def load_into(model, state: dict[str, Any], what: str) -> None:
    """load_state_dict(strict) with a one-line error naming the first mismatching keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        detail = "; ".join(f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                           for label, keys in (("missing", missing), ("unexpected", unexpected),
                                               ("shape mismatch", shapes)) if keys)
        raise EdgeresError(f"{what} does not fit the architecture ({detail}): check --arch and the class count")
    model.load_state_dict(state)


def _checkpoint_dir(directory: str | os.PathLike) -> Path:
    directory = Path(directory)
    if directory.is_file() and directory.name == "checkpoint.json":
        directory = directory.parent
    if not (directory / "checkpoint.json").is_file():
        raise EdgeresError(f"{directory} is not a checkpoint directory (no checkpoint.json): pass the output of "
                           "`edgeres train` or `edgeres import`")
    return directory
