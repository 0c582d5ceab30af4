"""What rebuilds a model: architecture name and options. Torch-free, so manifests can be read anywhere.

`ArchSpec` travels in checkpoint.json so that rebuilding needs no flag the producer used.
"""
from dataclasses import asdict, dataclass
from typing import Any

from edgeres.errors import EdgeresError

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
    quant: str | None = None  # LQ-Net quantization, e.g. "w2a2" or "w2a32" (see edgeres.models.lq)

    def __post_init__(self) -> None:
        if self.name not in ARCHITECTURES:
            raise EdgeresError(f"unknown architecture {self.name!r}: choose one of {', '.join(ARCHITECTURES)}")
        if self.num_classes < 2 or self.in_channels < 1:
            raise EdgeresError(f"num_classes must be >= 2 and in_channels >= 1, got {self.num_classes}, "
                               f"{self.in_channels}")
        if self.width_mult != 1.0 and not ARCHITECTURES[self.name]:
            raise EdgeresError(f"{self.name} has no width multiplier: use mobilenet_v2 or width_mult=1.0")
        if self.quant is not None:
            parse_quant(self.quant)
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


def parse_quant(quant: str) -> tuple[int, int | None]:
    """'w2a2' -> (2, 2); 'w2a32' -> (2, None): K-bit LQ weights, K-bit LQ activations or full precision."""
    import re
    match = re.fullmatch(r"(?:lq:)?w(\d+)a(\d+)", quant.strip().lower())
    w_bits, a_bits = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
    if not match or not 1 <= w_bits <= 8 or not (1 <= a_bits <= 8 or a_bits == 32):
        raise EdgeresError(f"quantization {quant!r} is not understood: use lq:wKaJ with K, J in 1..8 "
                           "(J=32 keeps activations full precision), e.g. lq:w2a2, lq:w4a4, lq:w2a32")
    return w_bits, None if a_bits == 32 else a_bits
