import numpy as np
import pytest
import torch
from PIL import Image

from edgeres.data import eval_batches, eval_image, open_images
from edgeres.errors import EdgeresError
from edgeres.train.augment import MultiResolutionTrainSet, crop_box


def test_bundled_fashion_mnist_mini_is_real_balanced_data():
    train, val = open_images("fashion-mnist-mini", "train"), open_images("fashion-mnist-mini", "val")
    assert (len(train), len(val)) == (10_000, 2_000)
    assert np.bincount(train.labels).tolist() == [1000] * 10
    assert train.image(0).shape == (28, 28, 1) and train.image(0).dtype == np.uint8
    assert 0.28 < train.images.mean() / 255 < 0.29  # Fashion-MNIST's known mean pixel, 0.286
    assert train.fingerprint != val.fingerprint


def test_eval_image_resizes_by_crop_ratio_then_centre_crops():
    image = np.zeros((40, 40, 3), np.uint8)
    image[15:25, 15:25] = 255  # a centred white square
    out = eval_image(image, 16, crop_ratio=0.5)  # resize to 32, crop 16: the square fills 8x8 in the middle
    assert out.shape == (16, 16, 3)
    assert out[8, 8].tolist() == [255, 255, 255] and out[0, 0].tolist() == [0, 0, 0]
    assert eval_image(np.zeros((30, 60, 1), np.uint8), 12, 1.0).shape == (12, 12, 1)


def test_eval_image_equals_pils_resize_and_centre_crop():
    """The fast paths (no resize at the source's own size; frombuffer/tobytes) give the pixels of PIL's
    fromarray -> resize(BILINEAR) -> asarray -> centre crop."""
    from PIL import Image
    rng = np.random.default_rng(0)
    same_size = (((28, 28, 1), 28, 1.0), ((24, 32, 3), 24, 1.0), ((40, 40, 1), 32, 0.8))
    resized = (((28, 28, 1), 12, 1.0), ((30, 40, 3), 16, 0.875), ((28, 28, 4), 20, 1.0))
    for shape, res, crop in same_size + resized:
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        h, w, c = shape
        short = round(res / crop)
        size = (short, round(h * short / w)) if w <= h else (round(w * short / h), short)
        pil = Image.fromarray(image[:, :, 0] if c == 1 else image).resize(size, Image.BILINEAR)
        assert (size == (w, h)) == ((shape, res, crop) in same_size)
        ref = np.asarray(pil).reshape(size[1], size[0], c)
        top, left = (size[1] - res) // 2, (size[0] - res) // 2
        np.testing.assert_array_equal(eval_image(image, res, crop), ref[top:top + res, left:left + res])


def test_eval_batches_normalise_nchw():
    val = open_images("fashion-mnist-mini", "val")
    x, y = next(eval_batches(val, 12, (0.5,), (0.25,), 1.0, batch_size=5))
    assert x.shape == (5, 1, 12, 12) and x.dtype == np.float32 and y.tolist() == val.labels[:5].tolist()
    assert x.min() >= -2.0 - 1e-6 and x.max() <= 2.0 + 1e-6


def test_one_crop_resized_to_every_resolution():
    val = open_images("fashion-mnist-mini", "val")
    data = MultiResolutionTrainSet(val, (12, 28, 20), (0.0,), (1.0,), scale=(0.3, 1.0), seed=3)
    views, label = data[7]
    assert [v.shape[-1] for v in views] == [28, 20, 12] and label == int(val.labels[7])
    # the same crop: downscaling the 28 px view gives (nearly) the 12 px view
    small = torch.nn.functional.interpolate(views[0][None], size=12, mode="bilinear", antialias=True)[0]
    assert (small - views[2]).abs().mean() < 0.03
    again, _ = data[7]
    assert all(torch.equal(a, b) for a, b in zip(views, again))  # reproducible per (seed, epoch, index)
    data.set_epoch(1)
    assert not torch.equal(data[7][0][0], views[0])


def test_crop_box_respects_scale_and_ratio():
    import random
    rng = random.Random(0)
    for _ in range(200):
        top, left, h, w = crop_box(100, 80, (0.08, 1.0), (3 / 4, 4 / 3), rng)
        assert 0 <= top <= 100 - h and 0 <= left <= 80 - w
        assert 0.07 * 8000 <= h * w <= 8000


def test_image_folder(tmp_path):
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            Image.new("RGB", (20, 30), (10, 200, 30)).save(tmp_path / split / cls / "a.png")
    images = open_images(tmp_path, "val")
    assert images.info.classes == ("cat", "dog") and images.labels.tolist() == [0, 1]
    assert images.image(1).shape == (30, 20, 3)


def test_bad_data_gives_one_line_errors(tmp_path):
    with pytest.raises(EdgeresError, match="neither a built-in dataset"):
        open_images(tmp_path / "missing", "train")
    with pytest.raises(EdgeresError, match="no class folders"):
        open_images(tmp_path, "train")
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(EdgeresError, match="contains no images"):
        open_images(tmp_path, "train")


def test_stratified_subset_keeps_each_class_share():
    from edgeres.data import stratified_indices
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)  # ordered by class, as a folder dataset is
    # shares count * n_c / 100 rounded down, the rest to the largest remainders: 7 -> 3.5/2.1/1.4 -> 3/2/1 + 1
    # to class 0; 3 -> 1.5/0.9/0.6 -> 1/0/0 + 2 to classes 1 and 2; 99 -> 49.5/29.7/19.8 -> 49/29/19 + classes 2, 1
    for count, expected in ((10, [5, 3, 2]), (7, [4, 2, 1]), (3, [1, 1, 1]), (99, [49, 30, 20])):
        picked = stratified_indices(labels, count)
        assert len(picked) == count and np.bincount(labels[picked], minlength=3).tolist() == expected, count
        assert (np.diff(picked) > 0).all()  # ascending, no repeats
    assert stratified_indices(labels, 100).tolist() == list(range(100))
    assert stratified_indices(labels, 10).tolist() == stratified_indices(labels, 10).tolist()  # seeded
    assert stratified_indices(labels, 10, seed=1).tolist() != stratified_indices(labels, 10).tolist()
    with pytest.raises(EdgeresError):
        stratified_indices(labels, 0)


def test_eval_limit_covers_every_class_of_a_folder_dataset(tmp_path):
    from edgeres.evaluate import evaluate_scorers
    for cls in ("a", "b", "c", "d"):
        (tmp_path / "val" / cls).mkdir(parents=True)
        for i in range(5):
            Image.new("RGB", (8, 8), (10 * i, 0, 0)).save(tmp_path / "val" / cls / f"{i}.png")
    images = open_images(tmp_path, "val")
    seen = []
    evaluate_scorers({8: lambda x: seen.append(len(x)) or np.zeros((len(x), 4), np.float32)}, images,
                     (0.5,) * 3, (0.5,) * 3, 1.0, batch_size=100, limit=8)
    assert seen == [8]
    from edgeres.evaluate import subset
    assert np.bincount(images.labels[subset(images, 8)]).tolist() == [2, 2, 2, 2]
