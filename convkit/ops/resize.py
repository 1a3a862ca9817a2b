"""Resizing and cropping image batches, forward and backward.

Resizing is separable: each output row (column) is a weighted sum of at most two input rows
(columns), its *taps*. Per axis, input size ``n``, output size ``m``, output ``i``:

* ``"nearest"``: one tap, ``floor((i + 0.5) * n / m)`` (the input cell whose span holds the
  output cell's centre; ``i // s`` when upsampling by an integer ``s``);
* ``"bilinear"``: two taps around the centre's position in the input,
  ``c = clip((i + 0.5) * n / m - 0.5, 0, n - 1)``: ``floor(c)`` with weight
  ``1 - frac(c)`` and the next cell with weight ``frac(c)`` (half-pixel centres, edges
  clamped: TensorFlow 2, ``jax.image.resize`` without antialiasing, PyTorch's
  ``align_corners=False``). Upsampling 2 -> 4: ``c = 0, 0.25, 0.75, 1``.

Both are what Keras's ``UpSampling2D`` and ``Resizing`` compute. The backward of each axis
adds every output gradient, times its weight, onto its taps (a sum over runs of equal
indices, no loop over pixels).

Cropping removes ``((top, bottom), (left, right))`` cells; its backward pads with zeros.
"""
from __future__ import annotations

import numpy as np

from .._validate import as_float_array
from ..errors import ShapeError
from ..shapes import to_pair
from .padding import check_data_format, layout_of, pad2d

__all__ = ["INTERPOLATIONS", "resize_taps", "resize2d", "resize2d_backward", "crop2d",
           "crop2d_backward"]

INTERPOLATIONS = ("nearest", "bilinear")


def check_interpolation(interpolation, where: str) -> str:
    name = interpolation.lower() if isinstance(interpolation, str) else interpolation
    if name not in INTERPOLATIONS:
        raise ShapeError(f"{where}: interpolation must be one of {', '.join(INTERPOLATIONS)}; "
                         f"got {interpolation!r}")
    return name


def resize_taps(n_in: int, n_out: int, interpolation: str = "bilinear"):
    """``(index, weight)``, each ``(n_out, taps)``: output cell ``i`` along one axis is
    ``sum_t weight[i, t] * input[index[i, t]]`` (see the module docstring).

    >>> index, weight = resize_taps(2, 4)
    >>> index.tolist(), weight.tolist()
    ([[0, 1], [0, 1], [0, 1], [1, 1]], [[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [1.0, 0.0]])
    >>> resize_taps(3, 6, "nearest")[0].ravel().tolist()
    [0, 0, 1, 1, 2, 2]
    """
    out = np.arange(n_out)
    if interpolation == "nearest":
        index = (2 * out + 1) * n_in // (2 * n_out)             # floor((i + 0.5) * n / m), exact
        return index[:, None], np.ones((n_out, 1))
    centre = np.clip((out + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
    low = np.floor(centre).astype(np.int64)
    frac = centre - low
    index = np.stack([low, np.minimum(low + 1, n_in - 1)], axis=1)
    return index, np.stack([1 - frac, frac], axis=1)


def _along(values: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    """A 1-D array shaped to broadcast along ``axis`` of an ``ndim``-D array."""
    shape = [1] * ndim
    shape[axis] = -1
    return values.reshape(shape)


def _resample_axis(x: np.ndarray, axis: int, index: np.ndarray, weight: np.ndarray):
    y = None
    for t in range(index.shape[1]):
        term = np.take(x, index[:, t], axis=axis)
        if not np.all(weight[:, t] == 1):
            term = term * _along(weight[:, t].astype(x.dtype), axis, x.ndim)
        y = term if y is None else y + term
    return y


def _resample_axis_backward(dy: np.ndarray, axis: int, index: np.ndarray,
                            weight: np.ndarray, n_in: int) -> np.ndarray:
    shape = list(dy.shape)
    shape[axis] = n_in
    dx = np.zeros(shape, dtype=dy.dtype)
    for t in range(index.shape[1]):
        taps = index[:, t]                                      # non-decreasing
        starts = np.flatnonzero(np.r_[True, taps[1:] != taps[:-1]])
        weighted = dy * _along(weight[:, t].astype(dy.dtype), axis, dy.ndim)
        sums = np.add.reduceat(weighted, starts, axis=axis)     # one slice per distinct tap
        target = [slice(None)] * dy.ndim
        target[axis] = taps[starts]                             # distinct: += is safe
        dx[tuple(target)] += sums
    return dx


def _spatial_axes(data_format: str) -> tuple[int, int]:
    return (1, 2) if data_format == "channels_last" else (2, 3)


def _resize_setup(where, x, size, interpolation, data_format):
    check_data_format(data_format, where)
    x = as_float_array(x, where, "input", ndim=4, layout=layout_of(data_format))
    size = to_pair(size, "size", where)
    interpolation = check_interpolation(interpolation, where)
    axes = _spatial_axes(data_format)
    taps = [resize_taps(x.shape[a], m, interpolation) for a, m in zip(axes, size)]
    return x, size, axes, taps


def resize2d(x, size, interpolation: str = "bilinear",
             data_format: str = "channels_last") -> np.ndarray:
    """Resize the images of ``x`` ``(N, H, W, C)`` (``(N, C, H, W)`` for channels_first) to
    ``size = (H_out, W_out)`` (an int means square) with ``"nearest"`` or ``"bilinear"``
    interpolation (see the module docstring for the formulas).

    >>> resize2d(np.array([0.0, 4.0]).reshape(1, 1, 2, 1), (1, 4))[0, 0, :, 0]
    array([0., 1., 3., 4.])
    """
    x, _, axes, taps = _resize_setup("resize2d", x, size, interpolation, data_format)
    for axis, (index, weight) in zip(axes, taps):
        x = _resample_axis(x, axis, index, weight)
    return x


def resize2d_backward(dy, x, size, interpolation: str = "bilinear",
                      data_format: str = "channels_last") -> np.ndarray:
    """Gradient of :func:`resize2d` with respect to ``x`` (only its shape is used): each
    output gradient, times its tap weights, added onto its taps.

    >>> x = np.zeros((1, 1, 2, 1))
    >>> resize2d_backward(np.ones((1, 1, 4, 1)), x, (1, 4))[0, 0, :, 0]
    array([2., 2.])
    """
    where = "resize2d_backward"
    x, size, axes, taps = _resize_setup(where, x, size, interpolation, data_format)
    dy = as_float_array(dy, where, "dy", ndim=4, layout=layout_of(data_format))
    expected = list(x.shape)
    for axis, m in zip(axes, size):
        expected[axis] = m
    if dy.shape != tuple(expected):
        raise ShapeError(f"{where}: dy has shape {dy.shape}, expected {tuple(expected)} (input "
                         f"shape {x.shape} resized to {size})")
    for axis, (index, weight) in zip(axes, taps):
        dy = _resample_axis_backward(dy, axis, index, weight, x.shape[axis])
    return dy.astype(x.dtype, copy=False)


def crop2d(x, cropping, data_format: str = "channels_last") -> np.ndarray:
    """Remove ``cropping = ((top, bottom), (left, right))`` cells from the images of ``x``.

    >>> crop2d(np.arange(16.0).reshape(1, 4, 4, 1), ((1, 1), (1, 0)))[0, :, :, 0]
    array([[ 5.,  6.,  7.],
           [ 9., 10., 11.]])
    """
    where = "crop2d"
    check_data_format(data_format, where)
    x = as_float_array(x, where, "input", ndim=4, layout=layout_of(data_format))
    (top, bottom), (left, right) = cropping
    h_axis, w_axis = _spatial_axes(data_format)
    h, w = x.shape[h_axis], x.shape[w_axis]
    if top + bottom >= h or left + right >= w:
        raise ShapeError(f"{where}: cropping {cropping} leaves nothing of the {h}x{w} images "
                         f"(input shape {x.shape})")
    index = [slice(None)] * 4
    index[h_axis], index[w_axis] = slice(top, h - bottom), slice(left, w - right)
    return x[tuple(index)]


def crop2d_backward(dy, cropping, data_format: str = "channels_last") -> np.ndarray:
    """Gradient of :func:`crop2d`: ``dy`` padded back with zeros where cells were cut."""
    return pad2d(dy, cropping, "zeros", data_format=data_format)
