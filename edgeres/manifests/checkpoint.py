"""checkpoint.json: the facts that rebuild a model (architecture, resolutions, preprocessing, classes). Torch-free.

The weights beside it are saved and loaded by `edgeres.models.checkpoint`.
"""
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgeres.arch import ArchSpec
from edgeres.errors import EdgeresError
from edgeres.manifests._base import numbers, read_manifest, require, table, text, texts
from edgeres.manifests.preprocessing import Preprocessing
from edgeres.resolutions import parse_resolutions

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
        pre = Preprocessing.from_manifest(data, where)
        info = cls(arch=ArchSpec.from_json(require(data, "arch", dict, where)),
                   resolutions=parse_resolutions(require(data, "resolutions", list, where)),
                   mean=pre.mean, std=pre.std, eval_crop_ratio=pre.crop_ratio, data=text(data, "data", where, ""),
                   classes=texts(data, "classes", where) if data.get("classes") is not None else (),
                   ensemble_weights=numbers(data, "ensemble_weights", where, 0.0, optional=True),
                   metrics=table(data, "metrics", where, optional=True) or {},
                   training=table(data, "training", where, optional=True) or {})
        if len(info.mean) != info.arch.in_channels or len(info.std) != info.arch.in_channels:
            raise EdgeresError(f"{where}: normalization has {len(info.mean)} channels, the model "
                               f"{info.arch.in_channels}: the checkpoint is inconsistent")
        return info

    def with_metrics(self, metrics: dict[int, dict[str, float]]) -> "CheckpointInfo":
        return replace(self, metrics={str(r): m for r, m in metrics.items()})


def read_checkpoint_info(directory: str | os.PathLike) -> CheckpointInfo:
    """checkpoint.json alone (no torch needed): for stages that only need the facts."""
    data = read_manifest(checkpoint_dir(directory), "checkpoint")
    return CheckpointInfo.from_json(data, data["_path"])


def checkpoint_dir(directory: str | os.PathLike) -> Path:
    directory = Path(directory)
    if directory.is_file() and directory.name == "checkpoint.json":
        directory = directory.parent
    if not (directory / "checkpoint.json").is_file():
        raise EdgeresError(f"{directory} is not a checkpoint directory (no checkpoint.json): pass the output of "
                           "`edgeres train` or `edgeres import`")
    return directory
