"""How every stage feeds a model: per-channel mean/std and the eval crop ratio, validated once."""
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeres.errors import EdgeresError
from edgeres.manifests._base import number, numbers, table


@dataclass(frozen=True)
class Preprocessing:
    """x = (resize(image, res / crop_ratio) centre-cropped to res, scaled to [0, 1] - mean) / std, per channel."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_ratio: float  # eval: resize to res / ratio, centre-crop res (RS-Nets, Sec. 4.1); 1.0 = no crop

    @classmethod
    def from_manifest(cls, data: dict[str, Any], where: str) -> "Preprocessing":
        """From a manifest's `normalization{mean,std}` and `eval_crop_ratio` fields."""
        norm = table(data, "normalization", where)
        mean = numbers(norm, "mean", f"{where} normalization")
        std = numbers(norm, "std", f"{where} normalization", low=0.0, low_open=True)
        if len(mean) != len(std):
            raise EdgeresError(f"{where}: normalization has {len(mean)} means but {len(std)} stds: the manifest is "
                               "damaged, regenerate it")
        return cls(mean, std, number(data, "eval_crop_ratio", where, 0.0, 1.0, low_open=True))

    @property
    def channels(self) -> int:
        return len(self.mean)

    def to_json(self) -> dict[str, Any]:
        return {"normalization": {"mean": list(self.mean), "std": list(self.std)}, "eval_crop_ratio": self.crop_ratio}


class CarriesCheckpoint:
    """What export.json and build.json share: their directory and the checkpoint reference they carry."""

    path: Path
    checkpoint: dict[str, Any]

    @property
    def directory(self) -> Path:
        return self.path.parent

    def checkpoint_dir(self) -> Path | None:
        """The checkpoint directory (absolute, or relative to the manifest) when it still exists here."""
        path = self.checkpoint.get("path")
        if not isinstance(path, str) or not path:
            return None
        resolved = Path(path) if Path(path).is_absolute() else self.directory / path
        return resolved if (resolved / "checkpoint.json").is_file() else None
