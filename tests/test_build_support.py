"""Shared by the build tests: a tiny trained CNN exported at two resolutions, with its export.json.

Made once per test session (cached on disk): a few seconds of training on the bundled fashion-mnist-mini so
accuracy comparisons (INT8 vs FP32) mean something. The export follows the export.json shape documented in
edgeres/manifest.py.
"""
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgeres._io import sha256_file
from edgeres.data import ArrayImageSet, eval_batches, open_images
from edgeres.manifests._base import write_manifest

RESOLUTIONS = (28, 16)
MEAN, STD = (0.2860,), (0.3530,)
_CACHE: dict[str, Path] = {}


def tiny_cnn(torch):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


def train_tiny(torch, steps: int = 200):
    """Adam at batch 64 on a shuffled 4000-image subset, alternating both resolutions: ~80 % top-1 in seconds."""
    torch.manual_seed(0)
    torch.set_num_threads(1)  # deterministic and polite to the other test processes on 2 cores
    model = tiny_cnn(torch)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    images = open_images("fashion-mnist-mini", "train")
    pick = np.random.default_rng(0).permutation(len(images))[:4000]
    subset = ArrayImageSet(images.info, "train", images.images[pick], images.labels[pick], "subset")
    data = [[(torch.from_numpy(x), torch.from_numpy(y)) for x, y in eval_batches(subset, r, MEAN, STD, 1.0, 64)]
            for r in RESOLUTIONS]
    for step in range(steps):
        x, y = data[step % 2][(step // 2) % len(data[0])]
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def export_graphs(torch, model, out: Path) -> list[dict]:
    graphs = []
    for res in RESOLUTIONS:
        path = out / f"tiny-{res}.onnx"
        torch.onnx.export(model, (torch.zeros(1, 1, res, res),), str(path), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["logits"])
        graphs.append({"resolution": res, "file": path.name, "sha256": sha256_file(path),
                       "bytes": path.stat().st_size, "input": {"name": "input", "shape": [1, 1, res, res]},
                       "output": {"name": "logits", "shape": [1, 10]}, "macs": 1000 * res * res, "params": 14000,
                       "bn": "exact", "max_abs_diff": 0.0, "top1_agreement": 1.0})
    return graphs


def make_tiny_export(out: Path) -> Path:
    import warnings
    torch = pytest.importorskip("torch")
    out.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graphs = export_graphs(torch, train_tiny(torch), out)
    classes = list(open_images("fashion-mnist-mini", "val").info.classes)
    write_manifest(out / "export.json", "export", {
        "checkpoint": {"path": "tiny", "sha256": "0" * 64, "arch": "tiny-cnn", "resolutions": list(RESOLUTIONS)},
        "data": "fashion-mnist-mini", "classes": classes, "normalization": {"mean": MEAN, "std": STD},
        "eval_crop_ratio": 1.0, "opset": 17, "graphs": graphs, "switchable": None})
    return out


def tiny_export(tmp_path_factory, name: str = "tiny-export") -> Path:
    """A fresh copy of the session's tiny export directory (tests may modify their copy)."""
    if "base" not in _CACHE:
        _CACHE["base"] = make_tiny_export(tmp_path_factory.mktemp("export-base"))
    copy = tmp_path_factory.mktemp(name)
    shutil.copytree(_CACHE["base"], copy, dirs_exist_ok=True)
    return copy


def test_tiny_export_is_accurate_enough(tmp_path_factory):
    """The fixture must learn something, or INT8-vs-FP32 comparisons are vacuous."""
    from edgeres.evaluate import evaluate_scorers
    from edgeres.runtimes.ort import OrtRunner
    export = tiny_export(tmp_path_factory)
    images = open_images("fashion-mnist-mini", "val")
    acc = evaluate_scorers({r: OrtRunner(export / f"tiny-{r}.onnx").infer for r in RESOLUTIONS}, images, MEAN, STD,
                           1.0, batch_size=1, limit=300)
    assert all(a.top1 > 50 for a in acc.values()), acc
    assert np.isfinite([a.top1 for a in acc.values()]).all()
