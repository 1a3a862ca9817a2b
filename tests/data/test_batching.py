"""BatchIterator and train_test_split."""
import tracemalloc

import numpy as np
import pytest

from convkit.data import BatchIterator, train_test_split
from convkit.errors import ConvkitError, ShapeError


def ids_dataset(n=23):
    x = np.arange(n, dtype=np.float32)[:, None, None] * np.ones((1, 2, 3), np.float32)
    y = np.arange(n)
    return x, y


def test_every_sample_once_per_epoch_and_aligned():
    x, y = ids_dataset(23)
    it = BatchIterator(x, y, batch_size=5, rng=0)
    assert len(it) == 5
    for _ in range(3):
        batches = list(it)
        assert [len(yb) for _, yb in batches] == [5, 5, 5, 5, 3]
        seen = np.concatenate([yb for _, yb in batches])
        assert sorted(seen.tolist()) == list(range(23))
        for xb, yb in batches:
            assert xb.shape[1:] == (2, 3) and xb.dtype == np.float32
            np.testing.assert_array_equal(xb[:, 0, 0], yb)  # rows stay paired


def test_reshuffles_every_epoch_and_is_reproducible():
    x, y = ids_dataset(40)
    a = BatchIterator(x, y, batch_size=8, rng=np.random.default_rng(7))
    b = BatchIterator(x, y, batch_size=8, rng=np.random.default_rng(7))
    epochs_a = [np.concatenate([yb for _, yb in a]) for _ in range(3)]
    epochs_b = [np.concatenate([yb for _, yb in b]) for _ in range(3)]
    for ea, eb in zip(epochs_a, epochs_b):
        np.testing.assert_array_equal(ea, eb)
    assert not np.array_equal(epochs_a[0], epochs_a[1])
    assert not np.array_equal(epochs_a[0], np.arange(40))
    assert a.epoch == 3


def test_no_shuffle_gives_ordered_views():
    x, y = ids_dataset(10)
    it = BatchIterator(x, y, batch_size=4, shuffle=False)
    batches = list(it)
    assert [yb.tolist() for _, yb in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert np.shares_memory(batches[0][0], x)


def test_drop_last():
    x, y = ids_dataset(23)
    it = BatchIterator(x, y, batch_size=5, drop_last=True, rng=1)
    assert len(it) == 4
    batches = list(it)
    assert len(batches) == 4 and all(len(yb) == 5 for _, yb in batches)
    assert len(BatchIterator(x, y, batch_size=50, drop_last=True)) == 0


def test_batches_are_gathered_per_step_not_from_an_epoch_copy():
    x, y = ids_dataset(30)
    it = BatchIterator(x, y, batch_size=10, rng=3)
    batches = iter(it)
    _, first = next(batches)
    x[:] = -1.0  # changed after the epoch started: later batches must see it
    for xb, _ in batches:
        assert np.all(xb == -1.0)
    assert first.shape == (10,)


def test_memory_of_an_epoch_is_a_few_batches_not_the_data_set():
    x = np.zeros((4096, 32, 32), dtype=np.float32)  # 16 MiB
    it = BatchIterator(x, batch_size=32, rng=0)
    tracemalloc.start()
    try:
        for xb, yb in it:
            assert yb is None and xb.shape[0] == 32
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < x.nbytes / 8, peak


def test_multi_input_and_multi_output_lists():
    x, y = ids_dataset(12)
    other = np.arange(12) * 10
    it = BatchIterator([x, other], [y, y * 2], batch_size=5, rng=0)
    for (x1, x2), (y1, y2) in it:
        np.testing.assert_array_equal(x2, x1[:, 0, 0] * 10)
        np.testing.assert_array_equal(y2, 2 * y1)


def test_sample_weight():
    x, y = ids_dataset(9)
    it = BatchIterator(x, y, batch_size=4, rng=0, sample_weight=y * 0.5)
    for xb, yb, wb in it:
        np.testing.assert_array_equal(wb, yb * 0.5)


@pytest.mark.parametrize("x, y, fragment", [
    (np.zeros((100, 2)), np.zeros(99), "x has 100 samples but y has 99"),
    ([np.zeros((5, 2)), np.zeros((4, 2))], None, r"x\[0\] has 5 samples but x\[1\] has 4"),
    (np.zeros((5, 2)), [np.zeros(5), np.zeros(6)], r"y\[1\] has 6"),
    (np.float32(3), None, "scalar"),
])
def test_length_mismatch_messages(x, y, fragment):
    with pytest.raises(ShapeError, match=fragment):
        BatchIterator(x, y)


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"batch_size": 2.5},
                                    {"rng": "seed"}])
def test_bad_arguments(kwargs):
    with pytest.raises(ConvkitError, match="BatchIterator"):
        BatchIterator(np.zeros((4, 2)), **kwargs)


# --------------------------------------------------------------------------- splitting

def test_stratified_split_keeps_class_proportions():
    y = np.repeat(np.arange(4), [40, 30, 20, 10])  # 100 samples, class-ordered
    x = np.arange(100)
    (x_train, y_train), (x_test, y_test) = train_test_split(x, y, test_size=0.2, seed=0)
    assert len(x_test) == 20 and len(x_train) == 80
    assert np.bincount(y_test).tolist() == [8, 6, 4, 2]
    assert np.bincount(y_train).tolist() == [32, 24, 16, 8]
    assert not set(x_train) & set(x_test)
    assert sorted(np.concatenate([x_train, x_test]).tolist()) == list(range(100))
    np.testing.assert_array_equal(y[x_train], y_train)  # rows stay paired
    assert len(set(y_train[:20].tolist())) > 1  # came out shuffled, not class-ordered


def test_split_is_fixed_by_the_seed():
    x = np.arange(50)
    y = x % 5
    first = train_test_split(x, y, test_size=10, seed=4)
    again = train_test_split(x, y, test_size=10, seed=4)
    other = train_test_split(x, y, test_size=10, seed=5)
    np.testing.assert_array_equal(first[1][0], again[1][0])
    assert not np.array_equal(np.sort(first[1][0]), np.sort(other[1][0]))


def test_rounding_and_uneven_classes():
    y = np.array([0] * 7 + [1] * 3 + [2] * 1)
    x = np.arange(11)
    (xt, yt), (xv, yv) = train_test_split(x, y, test_size=0.3, seed=0)
    assert len(xv) == 4  # ceil(0.3 * 11)
    counts = np.bincount(yv, minlength=3)
    ideal = np.array([7, 3, 1]) * 4 / 11
    assert np.all(np.abs(counts - ideal) < 1)


def test_one_hot_labels_plain_split_and_no_shuffle():
    y = np.eye(2)[np.repeat([0, 1], 10)]
    (_, y_train), (_, y_test) = train_test_split(np.zeros((20, 3)), y, test_size=0.5, seed=0)
    assert y_test.shape == (10, 2) and y_test.sum(axis=0).tolist() == [5, 5]
    (x_train, none_train), (x_test, none_test) = train_test_split(np.arange(10), None, 3,
                                                                  seed=0)
    assert none_train is None and none_test is None and len(x_test) == 3
    (x_train, _), (x_test, _) = train_test_split(np.arange(10), np.arange(10), 3,
                                                 shuffle=False)
    assert x_train.tolist() == list(range(7)) and x_test.tolist() == [7, 8, 9]


def test_split_of_a_list_of_inputs():
    x1, x2, y = np.arange(20), np.arange(20) * 3, np.arange(20) % 2
    ([a, b], y_train), ([c, d], y_test) = train_test_split([x1, x2], y, test_size=4, seed=1)
    np.testing.assert_array_equal(b, 3 * a)
    np.testing.assert_array_equal(d, 3 * c)
    assert len(c) == 4 and np.bincount(y_test).tolist() == [2, 2]


@pytest.mark.parametrize("test_size", [1.0, -1, 21, "0.2", True])
def test_bad_test_size(test_size):
    with pytest.raises(ConvkitError, match="test_size"):
        train_test_split(np.arange(20), np.arange(20), test_size=test_size)


def test_split_length_mismatch():
    with pytest.raises(ShapeError, match="x has 5 samples but y has 4"):
        train_test_split(np.zeros(5), np.zeros(4))
