"""The array functions Keras users call as ``keras.ops.<name>``, on NumPy arrays.

convkit computes with NumPy, so a "tensor" is an ``np.ndarray``: ``convert_to_tensor`` and
``convert_to_numpy`` both give one, and each function below is the NumPy function of the same
meaning with Keras's argument names (``axis``, ``keepdims``, ``dtype``)::

    >>> import convkit as keras
    >>> probs = keras.ops.softmax(keras.ops.convert_to_tensor([[1.0, 2.0, 3.0]]))
    >>> keras.ops.argmax(probs, axis=-1)
    array([2])

These have no backward pass: they are for data preparation and reading results, not for
building layers (a layer calls the ops in :mod:`convkit.ops` that come with a backward).
"""
from __future__ import annotations

import numpy as np

from .. import config

__all__ = [
    "convert_to_tensor", "convert_to_numpy", "cast", "shape", "expand_dims", "squeeze",
    "reshape", "transpose", "concatenate", "stack", "argmax", "argmin", "argsort", "max",
    "min", "sum", "mean", "std", "var", "abs", "sqrt", "exp", "log", "square", "clip",
    "where", "maximum", "minimum", "matmul", "one_hot", "zeros", "ones", "zeros_like",
    "ones_like", "arange", "top_k", "equal", "round",
]

_builtin_max, _builtin_min = max, min


def convert_to_tensor(x, dtype=None):
    """``x`` as an array; Python floats become ``floatx()`` (float32 by default), as in Keras."""
    arr = np.asarray(x, dtype=dtype)
    if dtype is None and arr.dtype == np.float64 and not isinstance(x, np.ndarray):
        arr = arr.astype(config.floatx())
    return arr


def convert_to_numpy(x) -> np.ndarray:
    """``x`` as a NumPy array (already one for everything convkit returns)."""
    return np.asarray(x)


def cast(x, dtype):
    return np.asarray(x).astype(dtype)


def shape(x) -> tuple:
    return tuple(np.shape(x))


def expand_dims(x, axis):
    return np.expand_dims(x, axis)


def squeeze(x, axis=None):
    return np.squeeze(x, axis=axis)


def reshape(x, newshape):
    return np.reshape(x, newshape)


def transpose(x, axes=None):
    return np.transpose(x, axes)


def concatenate(xs, axis=0):
    return np.concatenate(xs, axis=axis)


def stack(xs, axis=0):
    return np.stack(xs, axis=axis)


def argmax(x, axis=None, keepdims=False):
    return np.argmax(x, axis=axis, keepdims=keepdims)


def argmin(x, axis=None, keepdims=False):
    return np.argmin(x, axis=axis, keepdims=keepdims)


def argsort(x, axis=-1):
    return np.argsort(x, axis=axis)


def max(x, axis=None, keepdims=False):  # noqa: A001 - Keras's name
    return np.max(x, axis=axis, keepdims=keepdims)


def min(x, axis=None, keepdims=False):  # noqa: A001 - Keras's name
    return np.min(x, axis=axis, keepdims=keepdims)


def sum(x, axis=None, keepdims=False):  # noqa: A001 - Keras's name
    return np.sum(x, axis=axis, keepdims=keepdims)


def mean(x, axis=None, keepdims=False):
    return np.mean(x, axis=axis, keepdims=keepdims)


def std(x, axis=None, keepdims=False):
    return np.std(x, axis=axis, keepdims=keepdims)


def var(x, axis=None, keepdims=False):
    return np.var(x, axis=axis, keepdims=keepdims)


def abs(x):  # noqa: A001 - Keras's name
    return np.abs(x)


def sqrt(x):
    return np.sqrt(x)


def exp(x):
    return np.exp(x)


def log(x):
    return np.log(x)


def square(x):
    return np.square(x)


def round(x, decimals=0):  # noqa: A001 - Keras's name
    return np.round(x, decimals)


def clip(x, x_min, x_max):
    return np.clip(x, x_min, x_max)


def where(condition, x1=None, x2=None):
    if x1 is None and x2 is None:
        return np.nonzero(condition)
    return np.where(condition, x1, x2)


def maximum(x1, x2):
    return np.maximum(x1, x2)


def minimum(x1, x2):
    return np.minimum(x1, x2)


def equal(x1, x2):
    return np.equal(x1, x2)


def matmul(x1, x2):
    return np.matmul(x1, x2)


def one_hot(x, num_classes, axis=-1, dtype=None):
    """Integer labels ``(N,)`` -> ``(N, num_classes)`` with a 1 at each label (floatx);
    labels outside ``[0, num_classes)`` give an all-zero row, as in Keras."""
    labels = np.asarray(x)
    eye = np.eye(num_classes + 1, num_classes, dtype=dtype or config.floatx())
    out = eye[np.where((labels >= 0) & (labels < num_classes), labels, num_classes)]
    return out if axis in (-1, labels.ndim) else np.moveaxis(out, -1, axis)


def zeros(shape, dtype=None):
    return np.zeros(shape, dtype=dtype or config.floatx())


def ones(shape, dtype=None):
    return np.ones(shape, dtype=dtype or config.floatx())


def zeros_like(x, dtype=None):
    return np.zeros_like(x, dtype=dtype)


def ones_like(x, dtype=None):
    return np.ones_like(x, dtype=dtype)


def arange(start, stop=None, step=1, dtype=None):
    return np.arange(start, stop, step, dtype=dtype)


def top_k(x, k, sorted=True):  # noqa: A002 - Keras's name
    """``(values, indices)`` of the ``k`` largest entries along the last axis, largest first."""
    x = np.asarray(x)
    indices = np.argsort(-x, axis=-1, kind="stable")[..., :k]
    return np.take_along_axis(x, indices, axis=-1), indices
