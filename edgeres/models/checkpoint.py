"""Checkpoint = a directory: `model.safetensors` + a versioned `checkpoint.json` that rebuilds the model.

Loading is for untrusted input: the weights' sha256 must match the JSON, safetensors never unpickles, and a
`.pt/.pth` state dict goes through `torch.load(weights_only=True)`.
"""
import os
from pathlib import Path
from typing import Any

from edgeres import _optional
from edgeres._io import check_out_dir, contained, sha256_file, staged_dir
from edgeres.arch import arch_code_trusted
from edgeres.errors import EdgeresError
from edgeres.manifests._base import read_manifest, require, write_manifest
from edgeres.manifests.checkpoint import WEIGHTS_FILE, CheckpointInfo, checkpoint_dir

# A checkpoint directory's own files; anything else in a previous checkpoint directory is kept.
OWN_FILES = (WEIGHTS_FILE, "checkpoint.json", "train_log.jsonl")
MARKERS = ("checkpoint.json",)


def check_checkpoint_out(directory: str | os.PathLike) -> Path:
    """Refuse, before any work, a `--out` that is not new, empty or a previous checkpoint directory."""
    return check_out_dir(directory, MARKERS, "train/import")


def save_checkpoint(directory: str | os.PathLike, model, info: CheckpointInfo) -> Path:
    """Write weights + checkpoint.json into `directory` atomically (all or nothing); a previous checkpoint
    there is replaced, other files in it are kept."""
    st = _optional.require("safetensors.torch", "saving a checkpoint")
    directory = Path(directory)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with staged_dir(directory, MARKERS, "train/import", keep=lambda name: name not in OWN_FILES) as tmp:
        st.save_file(state, str(tmp / WEIGHTS_FILE))
        weights = {"file": WEIGHTS_FILE, "sha256": sha256_file(tmp / WEIGHTS_FILE),
                   "bytes": (tmp / WEIGHTS_FILE).stat().st_size}
        write_manifest(tmp / "checkpoint.json", "checkpoint", {**info.to_json(), "weights": weights})
    return directory


def load_checkpoint(directory: str | os.PathLike, device: str = "cpu", trust_arch: bool | str = False):
    """Rebuild the RS-Net from the directory alone; returns (model in eval mode, CheckpointInfo, sha256).

    A checkpoint whose arch is a `module.path:factory` imports that module: only with the user's say-so,
    `trust_arch=True` (the CLI's --trust-arch), `trust_arch=<the same --arch string>`, or inside
    `edgeres.arch.trusting_arch_code()`. Otherwise it is refused before anything is imported.
    """
    _optional.torch("loading a checkpoint")
    from edgeres.models.rsnet import build_rsnet

    directory = checkpoint_dir(directory)
    data = read_manifest(directory, "checkpoint")
    where = data["_path"]
    info = CheckpointInfo.from_json(data, where)
    if not arch_code_trusted(info.arch, trust_arch):
        raise EdgeresError(f"{directory} builds its model by importing your code {info.arch.name!r} "
                           "(checkpoint.json arch): pass --trust-arch if you trust this checkpoint "
                           "(Python: load_checkpoint(..., trust_arch=True))")
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
    return load_weights_file(path)[0]


def load_weights_file(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state dict, scalar facts of its wrapper dict such as epoch/arch/best_acc), loaded as load_state_dict_file."""
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
        raise EdgeresError(_load_failure(path, exc)) from None
    meta: dict[str, Any] = {}
    for key in ("state_dict", "model"):  # common training-checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            meta = {k: v for k, v in state.items() if isinstance(v, (str, int, float, bool))}
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EdgeresError(f"{path} does not hold a state dict of tensors: save model.state_dict()")
    return state, meta


def _load_failure(path: Path, exc: Exception) -> str:
    """One line for a weights file torch/safetensors would not read."""
    import pickle
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError) and ("global" in text.lower() or "GLOBAL" in text):
        # torch's own text goes on to suggest weights_only=False, i.e. running the file's code: not for us
        return (f"{path} was refused for safety: it holds pickled Python objects besides tensors, and loading "
                "them could run code; pass a plain state dict instead (torch.save(model.state_dict(), "
                "'weights.pt') or a .safetensors file)")
    if isinstance(exc, pickle.UnpicklingError):
        return (f"cannot load weights from {path}: not a readable torch.save file (damaged?): pass a state dict "
                "saved with torch.save(model.state_dict(), ...) or safetensors")
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return f"cannot load weights from {path}: not a plain tensor state dict ({first[:160]})"


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


