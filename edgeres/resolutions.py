"""Input resolutions: parsed and validated in one place, always stored sorted high -> low.

A bad value is a usage error (exit 2): resolutions come from the command line or a config file.

The order matters: MRED distils from higher to lower resolutions (RS-Nets Sec. 3.3), so whatever order a
user types, index 0 is the highest resolution.
"""
from typing import Iterable

from edgeres.errors import EdgeresUsageError

MIN_RES, MAX_RES = 8, 2048  # below 8 px a CNN stem has nothing left; above 2048 is not a classifier input


def parse_resolutions(value: str | int | Iterable[int | str]) -> tuple[int, ...]:
    """'96,128,224' / [96, 224] / 128 -> (224, 128, 96): validated, de-duplicated, sorted descending."""
    if isinstance(value, str):
        items = [v.strip() for v in value.replace(" ", ",").split(",") if v.strip()]
    elif isinstance(value, int):
        items = [value]
    else:
        items = list(value)
    if not items:
        raise EdgeresUsageError("no resolution given: pass e.g. --res 224,192,160,128,96")
    return tuple(sorted({_one(v) for v in items}, reverse=True))


def _one(value: int | str) -> int:
    try:
        res = int(str(value).strip())
    except ValueError:
        raise EdgeresUsageError(f"resolution {value!r} is not an integer: pass pixels, e.g. 224") from None
    if str(value).strip() != str(res) and not isinstance(value, int):
        raise EdgeresUsageError(f"resolution {value!r} is not an integer: pass pixels, e.g. 224")
    if not MIN_RES <= res <= MAX_RES:
        raise EdgeresUsageError(f"resolution {res} is outside the supported range {MIN_RES}..{MAX_RES} px")
    return res

