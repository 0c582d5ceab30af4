"""What rebuilds a model: architecture name and options. Torch-free, so manifests can be read anywhere.

`ArchSpec` travels in checkpoint.json so that rebuilding needs no flag the producer used.
"""
from dataclasses import asdict, dataclass
from typing import Any

from .errors import EdgeresError

# torchvision architecture name -> accepts a width multiplier
ARCHITECTURES: dict[str, bool] = {"resnet18": False, "resnet34": False, "resnet50": False, "mobilenet_v2": True}


@dataclass(frozen=True)
class ArchSpec:
    """What rebuilds a model: architecture name and its options."""

    name: str
    num_classes: int
    in_channels: int = 3
    width_mult: float = 1.0
    small_input: bool = False

    def __post_init__(self) -> None:
        if self.name not in ARCHITECTURES:
            raise EdgeresError(f"unknown architecture {self.name!r}: choose one of {', '.join(ARCHITECTURES)}")
        if self.num_classes < 2 or self.in_channels < 1:
            raise EdgeresError(f"num_classes must be >= 2 and in_channels >= 1, got {self.num_classes}, "
                               f"{self.in_channels}")
        if self.width_mult != 1.0 and not ARCHITECTURES[self.name]:
            raise EdgeresError(f"{self.name} has no width multiplier: use mobilenet_v2 or width_mult=1.0")
        if not 0.0 < self.width_mult <= 4.0:
            raise EdgeresError(f"width_mult must be in (0, 4], got {self.width_mult}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ArchSpec":
        try:
            return cls(**data)
        except TypeError as exc:
            raise EdgeresError(f"architecture entry {data!r} is invalid ({exc}): regenerate the checkpoint") from None
