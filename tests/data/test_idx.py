"""IDX files: hand-built bytes, round trips (plain and gzip), header checks, MNIST folders."""
import gzip
import os

import numpy as np
import pytest

from convkit.data import load_mnist_idx, parse_idx, read_idx, write_idx
from convkit.errors import ConvkitError, FileFormatError, ShapeError


def test_hand_built_uint8_file(tmp_path):
    data = bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes([1, 2, 3, 4, 5, 255])
    path = tmp_path / "a-idx2-ubyte"
    path.write_bytes(data)
    got = read_idx(path)
    assert got.dtype == np.uint8 and got.shape == (2, 3)
    np.testing.assert_array_equal(got, [[1, 2, 3], [4, 5, 255]])
    write_idx(tmp_path / "b", got)
    assert (tmp_path / "b").read_bytes() == data


def test_hand_built_big_endian_int32_and_float32():
    ints = bytes([0, 0, 0x0C, 1, 0, 0, 0, 2]) + (258).to_bytes(4, "big") + \
        (-1).to_bytes(4, "big", signed=True)
    got = parse_idx(ints)
    assert got.dtype == np.int32 and got.dtype.isnative
    assert got.tolist() == [258, -1]
    floats = bytes([0, 0, 0x0D, 1, 0, 0, 0, 1]) + bytes.fromhex("3fc00000")  # 1.5 big-endian
    assert parse_idx(floats).tolist() == [1.5]


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32,
                                   np.float64])
@pytest.mark.parametrize("name", ["x-idx", "x-idx.gz"])
def test_round_trip(tmp_path, rng, dtype, name):
    array = (rng.standard_normal((3, 4, 5)) * 50).astype(dtype)
    path = tmp_path / name
    write_idx(path, array)
    raw = path.read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == name.endswith(".gz")
    got = read_idx(path)
    assert got.dtype == np.dtype(dtype) and got.shape == (3, 4, 5)
    np.testing.assert_array_equal(got, array)


def test_gzip_detected_from_content_not_name(tmp_path):
    array = np.arange(10, dtype=np.uint8)
    write_idx(tmp_path / "labels.gz", array)
    os.rename(tmp_path / "labels.gz", tmp_path / "labels-idx1-ubyte")
    np.testing.assert_array_equal(read_idx(tmp_path / "labels-idx1-ubyte"), array)


def good_bytes():
    return bytes([0, 0, 0x08, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2]) + bytes(range(8))


@pytest.mark.parametrize("data, fragment", [
    (good_bytes()[:-1], "truncated"),
    (good_bytes()[:10], "header"),
    (good_bytes() + b"\x00", "trailing"),
    (b"\x00\x00", "fewer than"),
    (b"", "fewer than"),
    (b"PK\x03\x04" + bytes(20), "magic"),
    (bytes([0, 0, 0x0A, 1, 0, 0, 0, 1, 7]), "dtype code"),
    (bytes([0, 0, 0x08, 0]), "0 dimensions"),
    (bytes([0, 0, 0x08, 1, 255, 255, 255, 255, 1, 2]), "truncated"),
])
def test_bad_headers_name_the_file(tmp_path, data, fragment):
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(data)
    with pytest.raises(FileFormatError) as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert fragment in str(info.value)


def test_truncated_gzip(tmp_path):
    path = tmp_path / "x.gz"
    write_idx(path, np.arange(1000, dtype=np.int32))
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(FileFormatError, match="gzip"):
        read_idx(path)


def test_gzip_of_a_truncated_idx(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(good_bytes()[:-3]))
    with pytest.raises(FileFormatError, match="truncated"):
        read_idx(path)


def test_write_refuses_what_idx_cannot_hold(tmp_path):
    with pytest.raises(ConvkitError, match="int64"):
        write_idx(tmp_path / "a", np.arange(3, dtype=np.int64))
    with pytest.raises(ConvkitError, match="bool"):
        write_idx(tmp_path / "a", np.ones(3, dtype=bool))
    with pytest.raises(ShapeError, match=r"shape \(\)"):
        write_idx(tmp_path / "a", np.uint8(3))
    assert os.listdir(tmp_path) == []


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")


# --------------------------------------------------------------------------- MNIST folders

def make_mnist_dir(directory, rng, prefix, n, style="dash", gz=False):
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    sep = "-" if style == "dash" else "."
    suffix = ".gz" if gz else ""
    write_idx(directory / f"{prefix}-images{sep}idx3-ubyte{suffix}", images)
    write_idx(directory / f"{prefix}-labels{sep}idx1-ubyte{suffix}", labels)
    return images, labels


@pytest.mark.parametrize("style, gz", [("dash", False), ("dash", True), ("dot", False),
                                       ("dot", True)])
def test_load_mnist_idx(tmp_path, rng, style, gz):
    images, labels = make_mnist_dir(tmp_path, rng, "train", 7, style, gz)
    test_images, test_labels = make_mnist_dir(tmp_path, rng, "t10k", 3, style, gz)
    x, y = load_mnist_idx(tmp_path)
    assert x.shape == (7, 28, 28, 1) and x.dtype == np.float32
    assert y.shape == (7,) and y.dtype == np.int64
    np.testing.assert_allclose(x[..., 0], images / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, labels)
    x_test, y_test = load_mnist_idx(str(tmp_path), kind="test")
    assert x_test.shape == (3, 28, 28, 1)
    np.testing.assert_array_equal(y_test, test_labels)
    raw, _ = load_mnist_idx(tmp_path, kind="t10k", normalize=False)
    np.testing.assert_array_equal(raw[..., 0], test_images)


def test_missing_mnist_files_say_what_was_looked_for(tmp_path, rng):
    make_mnist_dir(tmp_path, rng, "train", 2)
    with pytest.raises(FileNotFoundError) as info:
        load_mnist_idx(tmp_path, kind="test")
    message = str(info.value)
    assert str(tmp_path) in message
    for name in ("t10k-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz",
                 "t10k-images.idx3-ubyte"):
        assert name in message
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_mnist_idx(tmp_path / "absent")


def test_mnist_count_mismatch_and_bad_kind(tmp_path, rng):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 28, 28), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(5, np.uint8))
    with pytest.raises(FileFormatError, match="4 images.*5 labels"):
        load_mnist_idx(tmp_path)
    with pytest.raises(ConvkitError, match="kind"):
        load_mnist_idx(tmp_path, kind="validation")
