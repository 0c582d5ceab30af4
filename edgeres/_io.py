"""The one place that writes artifacts (atomically: temp file + rename) and resolves untrusted paths."""
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from edgeres.errors import EdgeresError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success rename it over `path`, on failure remove it.

    Works for files and directories; readers never see a half-written artifact.
    """
    path = Path(path)
    parent = _ensure_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    os.close(fd)
    os.unlink(tmp)  # the caller decides whether it becomes a file or a directory
    tmp = Path(tmp)
    try:
        yield tmp
        _replace(tmp, path)
    finally:
        _remove(tmp)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    # allow_nan=False: NaN/Infinity are not JSON; other tools reading our manifests would choke on them
    return write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EdgeresError(f"{what} not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EdgeresError(f"{what} {path} is not valid JSON ({exc}): regenerate it") from None
    except OSError as exc:
        raise EdgeresError(f"cannot read {what} {path}: {exc.strerror}") from None


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def contained(base: str | os.PathLike, name: str) -> Path:
    """Resolve `name` (from an untrusted manifest) inside `base`; refuse absolute paths and `..` escapes."""
    base = Path(base).resolve()
    candidate = (base / name).resolve()
    if Path(name).is_absolute() or not candidate.is_relative_to(base):
        raise EdgeresError(f"manifest path {name!r} escapes its directory {base}: refusing to use it")
    return candidate


def _ensure_dir(directory: Path) -> Path:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgeresError(f"cannot create output directory {directory}: {exc.strerror}") from None
    if not os.access(directory, os.W_OK):
        raise EdgeresError(f"output directory {directory} is not writable: choose another with --out")
    return directory


def _replace(tmp: Path, path: Path) -> None:
    if tmp.is_dir() and path.exists():
        # os.replace cannot swap a directory over a non-empty one: park the old one, then drop it.
        old = path.with_name(f".{path.name}.old")
        _remove(old)
        os.replace(path, old)
        os.replace(tmp, path)
        _remove(old)
    else:
        os.replace(tmp, path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()
