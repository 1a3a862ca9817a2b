"""``convkit.datasets.fashion_mnist.load_data()``: Keras's Fashion-MNIST loader, offline.

Keras keeps the four gzipped IDX files it downloads in
``$KERAS_HOME/datasets/fashion-mnist/`` (default ``~/.keras/datasets/fashion-mnist/``);
this loader reads them from there (or from ``directory``) and never downloads. Nothing of
Fashion-MNIST ships with convkit, so without the files it raises ``FileNotFoundError`` naming
the folder to put them in.
"""
from __future__ import annotations

import os

import numpy as np

from .idx import load_mnist_idx
from .mnist import cache_path

__all__ = ["load_data"]


def load_data(directory=None):
    """``(x_train, y_train), (x_test, y_test)``: ``x`` uint8 ``(N, 28, 28)``, ``y`` uint8
    ``(N,)`` (60,000 / 10,000 with Keras's files), as Keras returns them."""
    folder = os.fspath(directory) if directory is not None else cache_path("fashion-mnist")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"fashion_mnist.load_data: no folder {folder}; put Keras's "
                                f"train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
                                f"t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz "
                                f"there (nothing is downloaded)")
    parts = []
    for kind in ("train", "test"):
        x, y = load_mnist_idx(folder, kind=kind, normalize=False)
        # (N, 28, 28, 1) float32 0..255 -> (N, 28, 28) uint8, Keras's layout
        parts.append((x[..., 0].astype(np.uint8), y.astype(np.uint8)))
    return parts[0], parts[1]
