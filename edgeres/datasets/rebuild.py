"""Rebuild the bundled `fashion-mnist-mini` dataset from the original Fashion-MNIST files.

Source: Debian's `dataset-fashion-mnist` package (`apt-get install dataset-fashion-mnist`), which ships the
original IDX files of Fashion-MNIST (Zalando Research, MIT licence) under /usr/share/datasets/fashion-mnist.

The subset is class-balanced and deterministic: the first N_TRAIN/10 training images of each class (in file
order) and the first N_TEST/10 test images of each class. Images and labels are stored as raw uint8 arrays
(.npy) compressed with xz, so loading needs neither pickle nor the network.

    python -m edgeres.datasets.rebuild [--src DIR] [--out edgeres/datasets]
"""
import argparse
import gzip
import hashlib
import io
import json
import lzma
from pathlib import Path

import numpy as np

N_TRAIN, N_TEST, N_CLASSES = 10_000, 2_000, 10
CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def balanced_subset(images: np.ndarray, labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    per_class = n // N_CLASSES
    keep = np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(N_CLASSES)]))
    return images[keep], labels[keep]


def write_xz(array: np.ndarray, path: Path) -> str:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    path.write_bytes(lzma.compress(buf.getvalue(), preset=9 | lzma.PRESET_EXTREME))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()
    files = {}
    for split, prefix, n in (("train", "train", N_TRAIN), ("test", "t10k", N_TEST)):
        images = read_idx(args.src / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(args.src / f"{prefix}-labels-idx1-ubyte.gz")
        images, labels = balanced_subset(images, labels, n)
        for kind, array in (("images", images[:, None]), ("labels", labels)):
            name = f"fashion-mnist-mini-{split}-{kind}.npy.xz"
            files[name] = write_xz(np.ascontiguousarray(array), args.out / name)
    info = {"name": "fashion-mnist-mini", "classes": CLASSES, "channels": 1, "size": 28,
            "splits": {"train": N_TRAIN, "test": N_TEST}, "sha256": files,
            "source": "Fashion-MNIST (Zalando Research, MIT), via Debian dataset-fashion-mnist"}
    (args.out / "fashion-mnist-mini.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info["sha256"], indent=2))


if __name__ == "__main__":
    main()
