"""A build is staged whole: every file goes into a temporary copy of the output directory, swapped in at the end.

The copy starts as hard links of the previous output (its artifacts, calibration caches, engines, and the export
when building into the export directory), so builders, cache hits, `--recalibrate` and kept rows all work on
the copy while the previous build stays byte-identical until the swap; a failed or interrupted build leaves it
as it was. A calibration directory outside the output (`--calib-dir`) is staged the same way, inside the copy,
and its new or replaced caches are published there only once every target has been built.
"""
import contextlib
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from edgeres._io import carry_over, errors_naming, relative_to, write_bytes
from edgeres.build.targets import CalibSettings

EXTERNAL_CALIB = ".calib-dir"  # inside the staging copy; removed before the swap


@dataclass(frozen=True)
class Stage:
    """Where a build writes (`root`, the staging copy) and where its files will end up (`out`)."""

    root: Path
    out: Path
    external_calib: Path | None = None  # a --calib-dir outside `out`, staged at root/EXTERNAL_CALIB

    def final(self, path: str | os.PathLike) -> Path:
        """The path a staged file will have after the swap (or after publishing, for external caches)."""
        path = Path(path)
        if self.external_calib is not None and path.is_relative_to(self.root / EXTERNAL_CALIB):
            return self.external_calib / path.relative_to(self.root / EXTERNAL_CALIB)
        return self.out / path.relative_to(self.root) if path.is_relative_to(self.root) else path

    def recorded(self, path: str | os.PathLike) -> str:
        """How build.json records a staged file: relative to the build directory, as after the swap."""
        return relative_to(self.final(path), self.out)


def begin(root: Path, out: Path, calib: CalibSettings) -> tuple[Stage, CalibSettings]:
    """Fill the staging copy from the previous output; returns the stage and calibration settings whose
    cache directory lies inside the copy."""
    carry_over(out, root)
    if calib.cache_dir is None:
        return Stage(root, out), calib
    wanted = Path(calib.cache_dir).resolve()
    if wanted.is_relative_to(out.resolve()):
        return Stage(root, out), replace(calib, cache_dir=root / wanted.relative_to(out.resolve()))
    staged = root / EXTERNAL_CALIB
    staged.mkdir()
    carry_over(wanted, staged)
    return Stage(root, out, wanted), replace(calib, cache_dir=staged)


def publish(stage: Stage) -> None:
    """Copy new or replaced caches into the external calibration directory, then drop its staging copy."""
    if stage.external_calib is None:
        return
    staged = stage.root / EXTERNAL_CALIB
    for path in sorted(p for p in staged.rglob("*") if p.is_file()):
        target = stage.final(path)
        if not (target.exists() and os.path.samefile(target, path)):
            write_bytes(target, path.read_bytes())
    shutil.rmtree(staged)


def errors_name_external_calib(stage: Stage):
    """Errors about a staged --calib-dir cache name the user's calibration directory (the copy is internal)."""
    if stage.external_calib is None:
        return contextlib.nullcontext()
    return errors_naming(stage.root / EXTERNAL_CALIB, stage.external_calib)
