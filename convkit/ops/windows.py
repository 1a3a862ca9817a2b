"""The windowing primitive shared by convolution and pooling.

A sliding window over an NHWC batch, with kernel ``(kh, kw)``, strides ``(sh, sw)`` and
dilation ``(dh, dw)``, is a *strided view* of the padded input::

    windows[n, i, j, a, b, c] = padded[n, i*sh + a*dh, j*sw + b*dw, c]
    shape (N, H_out, W_out, kh, kw, C)        -- no data copied

Convolution is a matrix product over the last three axes of that view (im2col), max and
average pooling reduce over ``(kh, kw)``. The adjoint of the view -- needed by every
backward pass -- adds a window gradient back onto the padded input. It loops over the
``kh * kw`` kernel offsets, each time adding one strided slice of shape
``(N, H_out, W_out, C)``, and never over output pixels::

    d_padded[:, a*dh : a*dh + (H_out-1)*sh + 1 : sh, b*dw : ... : sw, :] += dwin[:, :, :, a, b, :]

Sizes and pads come from :func:`convkit.shapes.window_geometry` (a :class:`Geometry`).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..shapes import Geometry
from .padding import pad_nhwc, pad_nhwc_backward

__all__ = ["pad_for_windows", "window_view", "offset_slices", "offset_window",
           "scatter_windows", "windows_backward"]


def pad_for_windows(x: np.ndarray, geo: Geometry, mode: str = "zeros",
                    value: float = 0.0) -> np.ndarray:
    """Pad an NHWC batch as ``geo`` says: its pads (in ``mode``) plus the ceil-mode extra
    cells at the bottom/right (always filled with ``value``).

    Result: ``(N, H + top + bottom + extra_h, W + left + right + extra_w, C)``.
    """
    (top, bottom), (left, right) = geo.pads
    extra_h, extra_w = geo.extra
    if mode == "zeros":
        return pad_nhwc(x, ((top, bottom + extra_h), (left, right + extra_w)), "zeros", value)
    padded = pad_nhwc(x, geo.pads, mode)
    return pad_nhwc(padded, ((0, extra_h), (0, extra_w)), "zeros", value)


def window_view(padded: np.ndarray, geo: Geometry) -> np.ndarray:
    """Read-only strided view ``(N, H_out, W_out, kh, kw, C)`` of every window of ``padded``
    (an NHWC array already padded by :func:`pad_for_windows`)."""
    n, _, _, c = padded.shape
    s_n, s_h, s_w, s_c = padded.strides
    (sh, sw), (dh, dw), (kh, kw), (h_out, w_out) = geo.strides, geo.dilation, geo.kernel, geo.out_hw
    return as_strided(padded, shape=(n, h_out, w_out, kh, kw, c),
                      strides=(s_n, s_h * sh, s_w * sw, s_h * dh, s_w * dw, s_c),
                      writeable=False)


def image_blocks(images: int, rows: tuple[int, int], row_bytes: int,
                 block_bytes: int) -> list[tuple[int, int, int, int]]:
    """Blocks ``(image0, image1, row0, row1)`` covering the rows ``rows[0]:rows[1]`` of
    ``images`` images with about ``block_bytes`` of work each (``row_bytes`` for one row of
    one image), so that a block's temporaries stay in cache: several whole images at a time
    when one image's rows fit, else some rows of one image.

    >>> image_blocks(4, (0, 3), 10, 60)           # an image is 30 bytes: two a block
    [(0, 2, 0, 3), (2, 4, 0, 3)]
    >>> image_blocks(2, (0, 3), 10, 20)           # rows of one image, two at a time
    [(0, 1, 0, 2), (0, 1, 2, 3), (1, 2, 0, 2), (1, 2, 2, 3)]
    """
    start, stop = rows
    per_image = (stop - start) * row_bytes
    if images > 1 and per_image <= block_bytes:
        step = max(1, block_bytes // max(1, per_image))
        return [(i, min(i + step, images), start, stop) for i in range(0, images, step)]
    step = max(1, block_bytes // max(1, row_bytes))
    return [(i, i + 1, r, min(r + step, stop)) for i in range(images)
            for r in range(start, stop, step)]


def offset_slices(geo: Geometry, a: int, b: int) -> tuple[slice, slice]:
    """Row and column slices of the padded input that kernel offset ``(a, b)`` reads, one
    cell per output pixel."""
    (sh, sw), (dh, dw), (h_out, w_out) = geo.strides, geo.dilation, geo.out_hw
    rows = slice(a * dh, a * dh + (h_out - 1) * sh + 1, sh)
    cols = slice(b * dw, b * dw + (w_out - 1) * sw + 1, sw)
    return rows, cols


def offset_window(padded: np.ndarray, geo: Geometry, a: int, b: int) -> np.ndarray:
    """``windows[:, :, :, a, b, :]`` as a strided slice: ``(N, H_out, W_out, C)``."""
    rows, cols = offset_slices(geo, a, b)
    return padded[:, rows, cols]


def scatter_windows(offset_grad: Callable[[int, int], np.ndarray | None], geo: Geometry,
                    padded_shape, dtype, channels_major: bool = False) -> np.ndarray:
    """Adjoint of :func:`window_view`: sum window gradients onto the padded input.

    ``offset_grad(a, b)`` returns the gradient of ``windows[:, :, :, a, b, :]``, shaped
    ``(N, H_out, W_out, C)`` (or broadcastable to it), or ``None`` for nothing. Overlapping
    windows add up. Returns ``(N, H_padded, W_padded, C)``.

    With ``channels_major`` the result is an NHWC *view* of a ``(C, N, H, W)`` buffer: when
    the gradients come in that memory order too, every add runs along contiguous rows,
    which is faster for few channels.
    """
    if channels_major:
        n, h, w, c = padded_shape
        d_padded = np.zeros((c, n, h, w), dtype=dtype).transpose(1, 2, 3, 0)
    else:
        d_padded = np.zeros(padded_shape, dtype=dtype)
    for a in range(geo.kernel[0]):
        for b in range(geo.kernel[1]):
            grad = offset_grad(a, b)
            if grad is not None:
                rows, cols = offset_slices(geo, a, b)
                d_padded[:, rows, cols] += grad
    return d_padded


def windows_backward(offset_grad: Callable[[int, int], np.ndarray | None], geo: Geometry,
                     x_shape, dtype, mode: str = "zeros",
                     channels_major: bool = False) -> np.ndarray:
    """Gradient with respect to the *unpadded* NHWC input ``x`` of shape ``x_shape``:
    :func:`scatter_windows`, then drop the ceil-mode extra cells, then the adjoint of the
    padding (crop for zeros, fold back for reflect / replicate / circular). The result may
    be a non-contiguous view."""
    n, h, w, c = x_shape
    (top, bottom), (left, right) = geo.pads
    extra_h, extra_w = geo.extra
    padded_shape = (n, h + top + bottom + extra_h, w + left + right + extra_w, c)
    d_padded = scatter_windows(offset_grad, geo, padded_shape, dtype, channels_major)
    d_padded = d_padded[:, :padded_shape[1] - extra_h, :padded_shape[2] - extra_w]
    return pad_nhwc_backward(d_padded, geo.pads, mode, (h, w))
