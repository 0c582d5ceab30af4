"""choose.splits: seeded, class-stratified subsets and halves (exact, on hand-made label vectors)."""
import numpy as np

from edgeres.choose.splits import stratified_halves, stratified_order

# a folder dataset: sorted by class, classes of different sizes
LABELS = np.repeat([0, 1, 2], [40, 20, 10])


def test_order_is_a_seeded_permutation_whose_prefixes_keep_class_proportions():
    order = stratified_order(LABELS, seed=0)
    assert sorted(order.tolist()) == list(range(70))
    np.testing.assert_array_equal(order, stratified_order(LABELS, seed=0))
    assert not np.array_equal(order, stratified_order(LABELS, seed=1))
    for n in (7, 14, 35):  # every prefix: 4:2:1 like the whole set, within one image per class
        counts = np.bincount(LABELS[order[:n]], minlength=3)
        assert np.all(np.abs(counts - n * np.array([4, 2, 1]) / 7) <= 1), (n, counts)
    assert set(LABELS[order[:7]]) == {0, 1, 2}  # the first 7 in dataset order would be class 0 only


def test_halves_are_disjoint_and_balanced_per_class():
    chosen = stratified_order(LABELS, seed=0)[:50]
    tune, report = stratified_halves(LABELS, chosen)
    assert not set(tune) & set(report) and sorted([*tune, *report]) == sorted(chosen.tolist())
    a, b = np.bincount(LABELS[tune], minlength=3), np.bincount(LABELS[report], minlength=3)
    assert np.all(np.abs(a - b) <= 1) and abs(len(tune) - len(report)) <= 3
    assert list(tune) == sorted(tune) and list(report) == sorted(report)
