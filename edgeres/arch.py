"""What rebuilds a model: architecture spec and options. Torch-free, so manifests can be read anywhere.

`ArchSpec` travels in checkpoint.json so that rebuilding needs no flag the producer used. One grammar names
an architecture (ARCH_HELP): a torchvision classification model, `timm:NAME`, or `module.path:factory`.
A factory is the user's own code: importing it when a checkpoint is loaded needs the user's say-so
(`trusting_arch_code`, the CLI's --trust-arch), never just a name written in a file.
"""
import contextlib
import contextvars
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

from edgeres.errors import EdgeresError, EdgeresUsageError

# torchvision architecture name -> accepts a width multiplier. These four also take --small-input and any
# --in-channels through edgeres' own stem adapters (edgeres.models.rsnet.STEM_ADAPTERS).
ARCHITECTURES: dict[str, bool] = {"resnet18": False, "resnet34": False, "resnet50": False, "mobilenet_v2": True}

ARCH_HELP = ("NAME: any torchvision classification model (resnet18, mobilenet_v3_large, efficientnet_b0, "
             "regnet_y_400mf, ...); timm:NAME: a timm model (pip install 'edgeres[timm]'), built with "
             "pretrained=False; module.path:factory: your own callable returning an nn.Module (like uvicorn's "
             "app strings), called with --arch-kwargs.")

_TIMM = re.compile(r"timm:[A-Za-z0-9_.\-]+")
_FACTORY = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
_TORCHVISION = re.compile(r"[a-z][a-z0-9_]*")


def arch_kind(name: str) -> str:
    """'torchvision', 'timm' or 'factory' for an --arch string, or a one-line error stating the grammar."""
    if _TIMM.fullmatch(name):
        return "timm"
    if _FACTORY.fullmatch(name):
        return "factory"
    if _TORCHVISION.fullmatch(name):
        return "torchvision"
    raise EdgeresError(f"--arch {name!r} is not understood: {ARCH_HELP}")


@dataclass(frozen=True)
class ArchSpec:
    """What rebuilds a model: the --arch string, its keyword arguments and edgeres' own options."""

    name: str  # "resnet18", "timm:resnet10t" or "my_pkg.nets:build" (see ARCH_HELP)
    num_classes: int
    in_channels: int = 3
    width_mult: float = 1.0
    small_input: bool = False
    quant: str | None = None  # LQ-Net quantization, e.g. "w2a2" or "w2a32" (see edgeres.models.lq)
    kwargs: dict[str, Any] = field(default_factory=dict)  # --arch-kwargs: keyword arguments of the builder

    def __post_init__(self) -> None:
        arch_kind(self.name)
        if self.num_classes < 2 or self.in_channels < 1:
            raise EdgeresError(f"num_classes must be >= 2 and in_channels >= 1, got {self.num_classes}, "
                               f"{self.in_channels}")
        if self.width_mult != 1.0 and not ARCHITECTURES.get(self.name, False):
            raise EdgeresError(f"{self.name} has no --width-mult: use mobilenet_v2, or pass the builder's own "
                               "argument in --arch-kwargs")
        if self.small_input and self.name not in ARCHITECTURES:
            raise EdgeresError(f"--small-input adapts the stems of {', '.join(ARCHITECTURES)} only, not "
                               f"{self.name}: build a small-input stem in a factory (module:function) instead")
        if self.quant is not None:
            parse_quant(self.quant)
        if not 0.0 < self.width_mult <= 4.0:
            raise EdgeresError(f"width_mult must be in (0, 4], got {self.width_mult}")
        object.__setattr__(self, "kwargs", check_arch_kwargs(self.kwargs))

    @property
    def kind(self) -> str:
        return arch_kind(self.name)

    @property
    def slug(self) -> str:
        """The name made safe for file names: 'timm:resnet10t' -> 'timm-resnet10t'."""
        return re.sub(r"[^A-Za-z0-9_.\-]", "-", self.name)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ArchSpec":
        try:
            return cls(**data)
        except TypeError as exc:
            raise EdgeresError(f"architecture entry {data!r} is invalid ({exc}): regenerate the checkpoint") from None


def check_arch_kwargs(kwargs: Any) -> dict[str, Any]:
    """A JSON object with string keys (it is stored in checkpoint.json), copied."""
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) and k.isidentifier() for k in kwargs):
        raise EdgeresError(f"architecture kwargs must be a JSON object of keyword arguments, got {kwargs!r}")
    try:
        return json.loads(json.dumps(kwargs, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise EdgeresError(f"architecture kwargs {kwargs!r} are not plain JSON ({exc})") from None


def parse_arch_kwargs(text: str | None) -> dict[str, Any]:
    """--arch-kwargs '{"width_mult": 0.5}' -> {'width_mult': 0.5}; None -> {}."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EdgeresUsageError(f"--arch-kwargs {text!r} is not JSON ({exc.msg}): pass an object, e.g. "
                                "'{\"width_mult\": 0.5}'") from None
    if not isinstance(value, dict):
        raise EdgeresUsageError(f"--arch-kwargs must be a JSON object of keyword arguments, got {text!r}")
    return check_arch_kwargs(value)


# Factories the user allowed to be imported while loading checkpoints: None = none, "*" = any (--trust-arch).
_TRUSTED: contextvars.ContextVar[frozenset[str] | str | None] = contextvars.ContextVar("edgeres_trusted_arch",
                                                                                      default=None)


@contextlib.contextmanager
def trusting_arch_code(*names: str) -> Iterator[None]:
    """Within the block, checkpoints whose arch is one of the factories `names` may import it (none, or "*":
    any factory)."""
    token = _TRUSTED.set("*" if not names or "*" in names else frozenset(names))
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def arch_code_trusted(spec: ArchSpec, trust: bool | str = False) -> bool:
    """Whether rebuilding `spec` may import code: always for torchvision/timm; a factory only when the user
    said so (`trust` True, or the same --arch string re-stated, or inside `trusting_arch_code`)."""
    if spec.kind != "factory" or trust is True or trust == spec.name:
        return True
    trusted = _TRUSTED.get()
    return trusted == "*" or (isinstance(trusted, frozenset) and spec.name in trusted)


def parse_quant(quant: str) -> tuple[int, int | None]:
    """'w2a2' -> (2, 2); 'w2a32' -> (2, None): K-bit LQ weights, K-bit LQ activations or full precision."""
    match = re.fullmatch(r"(?:lq:)?w(\d+)a(\d+)", quant.strip().lower())
    w_bits, a_bits = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
    if not match or not 1 <= w_bits <= 8 or not (1 <= a_bits <= 8 or a_bits == 32):
        raise EdgeresError(f"quantization {quant!r} is not understood: use lq:wKaJ with K, J in 1..8 "
                           "(J=32 keeps activations full precision), e.g. lq:w2a2, lq:w4a4, lq:w2a32")
    return w_bits, None if a_bits == 32 else a_bits
