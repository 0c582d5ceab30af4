"""The one place that writes artifacts (atomically: temp file + rename) and resolves untrusted paths.

Temporaries sit beside their target as `.<name>.<pid>-<random>.tmp` (a directory being swapped out parks as
`.<name>.<pid>-<random>.old`), so a run killed with SIGKILL leaves names that say whose they were: the next
write to the same target removes those of dead processes (and puts back an `.old` directory whose swap was cut
between its two renames).
"""
import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from edgeres.errors import EdgeresError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success rename it over `path`, on failure remove it.

    Works for files and directories; readers never see a half-written artifact.
    """
    path = Path(path)
    _refuse_nameless(path)
    parent = _ensure_dir(path.parent)
    clean_stale(path)
    tmp = _temp_path(parent, path.name, ".tmp")
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


def relative_to(path: str | os.PathLike, base: str | os.PathLike) -> str:
    """`path` as a manifest in directory `base` records it: relative (with `..` when outside), so that a
    directory copied elsewhere together with what it refers to keeps working."""
    return os.path.relpath(Path(path).resolve(), Path(base).resolve())


def resolve_from(base: str | os.PathLike, recorded: str) -> Path:
    """A path a manifest in `base` recorded (relative to `base`, or absolute as older manifests wrote it)."""
    return Path(recorded) if Path(recorded).is_absolute() else Path(base) / recorded


# ---------------------------------------------------------------- output directories

def check_out_dir(out: str | os.PathLike, markers: Sequence[str], stage: str, flag: str = "--out") -> Path:
    """Refuse an output directory this stage must not replace: a file, the current directory (or one above
    it), or a non-empty directory holding none of `markers` (glob patterns naming this stage's previous
    output, e.g. "export.json"). Call it before the long work; `staged_dir` calls it again at the end."""
    out = Path(out)
    cwd, resolved = Path.cwd().resolve(), out.resolve()
    if cwd == resolved or cwd.is_relative_to(resolved):
        raise EdgeresError(f"{flag} {out} is the current directory or holds it: pass a new directory, "
                           f"e.g. {flag} {stage}-out")
    _refuse_nameless(out)
    if out.exists() and not out.is_dir():
        raise EdgeresError(f"{flag} {out} is a file: pass a directory")
    if out.is_dir():
        clean_stale(out)
        entries = [e for e in out.iterdir() if not _STALE.match(e.name)]
        if entries and not any(next(out.glob(m), None) is not None for m in markers):
            raise EdgeresError(f"{flag} {out} is not empty and holds no {' or '.join(markers)} (it is not a "
                               f"previous {stage} output): choose a new or empty directory")
    return out


@contextlib.contextmanager
def staged_dir(out: str | os.PathLike, markers: Sequence[str], stage: str,
               keep: Callable[[str], bool] | None = lambda name: True) -> Iterator[Path]:
    """Yield an empty temp directory beside `out` to write the whole output into; on success carry over the
    previous `out`'s entries that `keep(name)` accepts and the new output lacks (other stages' files, the
    user's notes: hard links, no copy), then swap it in. On failure or interruption `out` stays as it was."""
    out = check_out_dir(out, markers, stage)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        with errors_naming(tmp, out):
            yield tmp
        if keep is not None:
            carry_over(out, tmp, keep)


@contextlib.contextmanager
def errors_naming(staged: Path, final: Path) -> Iterator[None]:
    """EdgeresErrors raised inside name `final` where they named `staged`: a staging copy is gone by the time
    the user reads the line (e.g. a stale calibration cache under <out>/calib, carried into the copy)."""
    try:
        yield
    except EdgeresError as error:
        text = str(error)
        if str(staged) not in text:
            raise
        renamed = type(error)(text.replace(str(staged), str(final)))
        raise renamed.with_traceback(error.__traceback__) from error.__cause__


def carry_over(old: Path, new: Path, keep: Callable[[str], bool] = lambda name: True) -> list[str]:
    """Hard-link (or copy) the entries of directory `old` that `new` lacks and `keep` accepts into `new`."""
    carried = []
    if not old.is_dir():
        return carried
    for entry in old.iterdir():
        if _STALE.match(entry.name) or (new / entry.name).exists() or not keep(entry.name):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, new / entry.name, copy_function=_link_or_copy, symlinks=True)
        else:
            _link_or_copy(entry, new / entry.name)
        carried.append(entry.name)
    return carried


def _link_or_copy(src, dst) -> None:
    # Safe because every writer replaces files by rename (never writes into one), so a shared inode is
    # never changed under the other name.
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


# ---------------------------------------------------------------- result files (--json, --markdown)

# file name -> the stage whose manifest it is: no other result may take the name (a later stage would read it)
MANIFEST_NAMES = {"checkpoint.json": "checkpoint", "export.json": "export", "build.json": "build",
                  "bench.json": "bench", "cascade.json": "cascade", "select.json": "select"}


def text_marker(kind: str) -> str:
    """First line of a text result (Markdown), so that a later run knows it may replace the file."""
    return f"<!-- written by edgeres {kind}; the next run may replace this file -->"


def check_result_file(path: str | os.PathLike, kind: str, flag: str) -> Path:
    """Refuse, before any work, to write a `kind` result over a file edgeres did not write as that kind of
    result (a manifest, the user's file) or under another stage's manifest name."""
    path = Path(path)
    owner = MANIFEST_NAMES.get(path.name)
    if owner is not None and owner != kind:
        raise EdgeresError(f"{flag} {path}: {path.name} is the name of the {owner} stage's manifest: choose "
                           f"another file name, e.g. {path.with_name(kind + path.suffix)}")
    if path.is_dir():
        raise EdgeresError(f"{flag} {path} is a directory: pass a file name")
    if path.exists() and not _written_as(path, kind):
        raise EdgeresError(f"{flag} {path} exists and is not an earlier edgeres {kind} result: choose a new "
                           "file name (the file is left as it is)")
    return path


def _written_as(path: Path, kind: str) -> bool:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if text.startswith(text_marker(kind)):
        return True
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return False
    return isinstance(data, dict) and data.get("kind") == kind


# ---------------------------------------------------------------- temporaries

_STALE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[A-Za-z0-9_]+\.(?P<kind>tmp|old)$")


def clean_stale(path: str | os.PathLike) -> None:
    """Remove the temporaries of `path` left by dead processes; restore an `.old` directory whose swap over
    `path` was cut short (the new one never arrived)."""
    path = Path(path)
    if not path.parent.is_dir():
        return
    for entry in path.parent.iterdir():
        match = _STALE.match(entry.name)
        if not match or match["name"] != path.name or _alive(int(match["pid"])):
            continue
        if match["kind"] == "old" and not os.path.lexists(path):
            os.replace(entry, path)
        else:
            _remove(entry)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _temp_path(parent: Path, name: str, suffix: str) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.{os.getpid()}-", suffix=suffix, dir=parent)
    os.close(fd)
    os.unlink(tmp)  # the caller decides whether it becomes a file or a directory
    return Path(tmp)


def _refuse_nameless(path: Path) -> None:
    """`.`, `..` or `/` cannot be replaced beside themselves."""
    if path.name in ("", ".", ".."):
        raise EdgeresError(f"cannot write to {str(path) or '.'}: name a file or directory inside it")


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
        old = _temp_path(path.parent, path.name, ".old")
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
