"""Datasets and evaluation preprocessing, without torch (the device side evaluates ONNX artifacts too).

A dataset is named by `--data`: a built-in name (`fashion-mnist-mini`, bundled, real images) or an
ImageFolder directory with `train/` and `val/` subfolders (one folder per class). Evaluation preprocessing
is one numpy/PIL function used for PyTorch and ONNX Runtime alike, so their accuracies are comparable.
"""
import hashlib
import io
import json
import lzma
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np

from edgeres.errors import EdgeresError, EdgeresUsageError

BUILTIN_DIR = Path(__file__).parent / "datasets"
BUILTINS = ("fashion-mnist-mini",)
SPLITS = ("train", "val")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    classes: tuple[str, ...]
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    eval_crop_ratio: float  # 0.875 for photos (RS-Nets eval); 1.0 for tiny centred images
    native_size: int | None = None


class ImageSet:
    """Images (HWC uint8 numpy) with integer labels; `fingerprint` identifies the exact content."""

    def __init__(self, info: DatasetInfo, split: str, labels: np.ndarray, fingerprint: str):
        self.info, self.split, self.labels, self.fingerprint = info, split, labels, fingerprint

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, index: int) -> np.ndarray:
        raise NotImplementedError


class ArrayImageSet(ImageSet):
    def __init__(self, info, split, images: np.ndarray, labels, fingerprint):
        super().__init__(info, split, labels, fingerprint)
        self.images = images  # N, H, W, C uint8

    def image(self, index: int) -> np.ndarray:
        return self.images[index]


class FolderImageSet(ImageSet):
    def __init__(self, info, split, paths: list[Path], labels, fingerprint):
        super().__init__(info, split, labels, fingerprint)
        self.paths = paths

    def image(self, index: int) -> np.ndarray:
        from PIL import Image
        try:
            with Image.open(self.paths[index]) as img:
                return np.asarray(img.convert("L" if self.info.channels == 1 else "RGB")).reshape(
                    img.height, img.width, self.info.channels)
        except Image.DecompressionBombError as exc:  # a tiny file that would decode to gigabytes
            raise EdgeresError(f"image {self.paths[index]} is too large to decode safely ({exc}): remove or "
                               "shrink it") from None
        except OSError as exc:
            raise EdgeresError(f"cannot read image {self.paths[index]}: {exc}: remove or replace it") from None


def open_images(data: str | os.PathLike, split: str) -> ImageSet:
    """`fashion-mnist-mini` or an ImageFolder root (with train/ and val/) -> the images of `split`."""
    if split not in SPLITS:
        raise EdgeresError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    if str(data) in BUILTINS:
        return _builtin(str(data), split)
    root = Path(data)
    if not root.is_dir():
        raise EdgeresError(f"--data {data!r} is neither a built-in dataset ({', '.join(BUILTINS)}) nor a directory")
    return _folder(root, split)


@lru_cache(maxsize=4)
def _builtin(name: str, split: str) -> ArrayImageSet:
    meta = json.loads((BUILTIN_DIR / f"{name}.json").read_text())
    file_split = "test" if split == "val" else "train"
    arrays = {kind: _load_xz(BUILTIN_DIR / f"{name}-{file_split}-{kind}.npy.xz", meta["sha256"])
              for kind in ("images", "labels")}
    info = DatasetInfo(name, tuple(meta["classes"]), meta["channels"], (0.2860,), (0.3530,), 1.0, meta["size"])
    images = np.ascontiguousarray(arrays["images"].transpose(0, 2, 3, 1))  # stored NCHW -> HWC per image
    digest = meta["sha256"][f"{name}-{file_split}-images.npy.xz"]
    return ArrayImageSet(info, split, images, arrays["labels"].astype(np.int64), f"{name}:{split}:{digest[:16]}")


def _load_xz(path: Path, expected: dict[str, str]) -> np.ndarray:
    raw = path.read_bytes()
    if hashlib.sha256(raw).hexdigest() != expected[path.name]:
        raise EdgeresError(f"bundled data file {path} is corrupt (sha256 mismatch): reinstall edgeres")
    return np.load(io.BytesIO(lzma.decompress(raw)), allow_pickle=False)


def _folder(root: Path, split: str) -> FolderImageSet:
    split_dir = root / split
    classes = sorted(d.name for d in split_dir.iterdir() if d.is_dir()) if split_dir.is_dir() else []
    if not classes:
        raise EdgeresError(f"{split_dir} has no class folders: --data needs {root}/train/<class>/*.jpg "
                           f"and {root}/val/<class>/*.jpg")
    paths, labels = [], []
    for label, cls in enumerate(classes):
        files = sorted(p for p in (split_dir / cls).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        paths += files
        labels += [label] * len(files)
    if not paths:
        raise EdgeresError(f"{split_dir} contains no images ({', '.join(IMAGE_EXTENSIONS)})")
    digest = hashlib.sha256()
    for p in paths:
        stat = p.stat()
        digest.update(f"{p.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    info = DatasetInfo(str(root), tuple(classes), 3, IMAGENET_MEAN, IMAGENET_STD, 0.875)
    return FolderImageSet(info, split, paths, np.asarray(labels, np.int64), f"{root.name}:{split}:{digest.hexdigest()[:16]}")


SUBSET_RULE = "stratified by class, seed 0"  # how N of the eval images are chosen (recorded in manifests)


def stratified_indices(labels, count: int, seed: int = 0) -> np.ndarray:
    """`count` indices into `labels` (ascending) holding each class's share of the whole.

    Folder datasets are ordered by class, so "the first N" would cover the first classes only. Class c of
    n_c images gets floor(count * n_c / n) images, the few left over go to the largest remainders (ties: the
    lower class label); which images of a class is drawn with `seed`. All indices when count >= n.
    """
    labels = np.asarray(labels)
    if count < 1:
        raise EdgeresUsageError(f"an image subset needs at least 1 image, got {count}")
    if count >= len(labels):
        return np.arange(len(labels))
    classes, inverse, sizes = np.unique(labels, return_inverse=True, return_counts=True)
    take, remainder = np.divmod(count * sizes, len(labels))  # exact integer shares
    order = np.lexsort((classes, -remainder))  # largest remainder first, then class label
    take[order[:count - int(take.sum())]] += 1
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(inverse == c), size=int(t), replace=False) for c, t in enumerate(take)]
    return np.sort(np.concatenate(picked)).astype(np.int64)


PIL_MODES = {1: "L", 3: "RGB"}  # channels -> PIL mode of an HWC uint8 image


def eval_image(image: np.ndarray, res: int, crop_ratio: float) -> np.ndarray:
    """Resize the shorter side to round(res / crop_ratio) (bilinear), centre-crop res x res: HWC uint8."""
    from PIL import Image
    h, w, c = image.shape
    short = max(res, round(res / crop_ratio))
    size = (short, max(short, round(h * short / w))) if w <= h else (max(short, round(w * short / h)), short)
    if size == (w, h):  # PIL's resize to the same size is a copy: skip the round trip (the cascade's top stage)
        resized = image
    elif c in PIL_MODES:  # frombuffer/tobytes: the same pixels as fromarray/asarray, 16 vs 22 us at 28 px
        pil = Image.frombuffer(PIL_MODES[c], (w, h), np.ascontiguousarray(image), "raw", PIL_MODES[c], 0, 1)
        resized = np.frombuffer(pil.resize(size, Image.BILINEAR).tobytes(), np.uint8).reshape(size[1], size[0], c)
    else:
        pil = Image.fromarray(image)
        resized = np.asarray(pil.resize(size, Image.BILINEAR)).reshape(size[1], size[0], c)
    top, left = (size[1] - res) // 2, (size[0] - res) // 2
    return resized[top:top + res, left:left + res]


def normalize(batch_hwc: np.ndarray, mean, std) -> np.ndarray:
    """N,H,W,C uint8 -> N,C,H,W float32, (x/255 - mean) / std per channel."""
    x = batch_hwc.astype(np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def eval_batches(images: ImageSet, res: int, mean, std, crop_ratio: float, batch_size: int = 64,
                 limit: int | None = None, indices=None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (N,C,res,res float32, N int64 labels) in dataset order, the first `limit` images only,
    or the images at `indices` in that order."""
    n = len(images) if limit is None else min(limit, len(images))
    order = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = np.stack([eval_image(images.image(int(i)), res, crop_ratio) for i in idx])
        yield normalize(batch, mean, std), images.labels[idx]
