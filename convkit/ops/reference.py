"""Naive loop versions of convolution and pooling: the test oracle.

Written on purpose without the windowing primitive, the padding module or the shapes module:
plain loops over output pixels that read each input cell through explicit padding logic.
They are slow (use small inputs) and compute in float64.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["reference_pads", "reference_out_size", "conv2d_ref", "max_pool2d_ref",
           "max_pool2d_backward_ref", "avg_pool2d_ref"]


def _pair(v):
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def reference_pads(n, k, s, d, padding, axis):
    """``(before, after)`` along ``axis`` (0 = height, 1 = width) for any padding form."""
    if isinstance(padding, str):
        if padding.lower() == "valid":
            return 0, 0
        out = math.ceil(n / s)
        total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
        return total // 2, total - total // 2
    if isinstance(padding, int):
        return padding, padding
    entry = padding[axis]
    if isinstance(entry, int):
        return entry, entry
    return int(entry[0]), int(entry[1])


def reference_out_size(n, k, s, d, before, after, padding, ceil_mode=False):
    if isinstance(padding, str) and padding.lower() == "same":
        return math.ceil(n / s)
    span = n + before + after - d * (k - 1) - 1
    if not ceil_mode:
        return span // s + 1
    out = math.ceil(span / s) + 1
    if (out - 1) * s >= n + before:   # last window would start in the right padding
        out -= 1
    return out


def _source(pos, n, mode):
    """Input index read at padded position ``pos`` (which may lie outside ``[0, n)``), or
    None for a zero cell."""
    if 0 <= pos < n:
        return pos
    if mode == "zeros":
        return None
    if mode == "reflect":
        return -pos if pos < 0 else 2 * (n - 1) - pos
    if mode == "replicate":
        return 0 if pos < 0 else n - 1
    if mode == "circular":
        return pos % n
    raise ValueError(mode)


def _geometry(x, kernel_hw, strides, padding, dilation_rate, ceil_mode=False):
    kh, kw = _pair(kernel_hw)
    sh, sw = _pair(strides)
    dh, dw = _pair(dilation_rate)
    h, w = x.shape[1], x.shape[2]
    top, bottom = reference_pads(h, kh, sh, dh, padding, 0)
    left, right = reference_pads(w, kw, sw, dw, padding, 1)
    h_out = reference_out_size(h, kh, sh, dh, top, bottom, padding, ceil_mode)
    w_out = reference_out_size(w, kw, sw, dw, left, right, padding, ceil_mode)
    return (kh, kw), (sh, sw), (dh, dw), (top, bottom, left, right), (h_out, w_out)


def _nhwc(x, data_format):
    x = np.asarray(x, dtype=np.float64)
    return x.transpose(0, 2, 3, 1) if data_format == "channels_first" else x


def _back(y, data_format):
    return y.transpose(0, 3, 1, 2) if data_format == "channels_first" else y


def conv2d_ref(x, kernel, bias=None, strides=1, padding="valid", dilation_rate=1, groups=1,
               padding_mode="zeros", data_format="channels_last"):
    """``y[n,i,j,f] = bias[f] + sum_{a,b,c} x_pad[n, i*sh + a*dh, j*sw + b*dw, g*C_g + c]
    * kernel[a,b,c,f]`` with ``g = f // (F / groups)``; HWIO kernel, no flip."""
    x = _nhwc(x, data_format)
    kernel = np.asarray(kernel, dtype=np.float64)
    n_batch, h, w, channels = x.shape
    kh, kw, c_g, filters = kernel.shape
    f_g = filters // groups
    (kh, kw), (sh, sw), (dh, dw), (top, _, left, _), (h_out, w_out) = _geometry(
        x, (kh, kw), strides, padding, dilation_rate)
    y = np.zeros((n_batch, h_out, w_out, filters))
    for n in range(n_batch):
        for i in range(h_out):
            for j in range(w_out):
                patch = np.zeros((kh, kw, channels))
                for a in range(kh):
                    r = _source(i * sh + a * dh - top, h, padding_mode)
                    for b in range(kw):
                        c = _source(j * sw + b * dw - left, w, padding_mode)
                        if r is not None and c is not None:
                            patch[a, b] = x[n, r, c]
                for f in range(filters):
                    g = f // f_g
                    y[n, i, j, f] = np.sum(patch[:, :, g * c_g:(g + 1) * c_g] * kernel[..., f])
                    if bias is not None:
                        y[n, i, j, f] += bias[f]
    return _back(y, data_format)


def _pool_cells(x, pool_size, strides, padding, dilation_rate, ceil_mode):
    """Yield ``(n, i, j, cells, n_padding_cells)``: the real input cells ``(r, c)`` of each
    window, and how many of its other cells lie in the explicit padding."""
    strides = pool_size if strides is None else strides
    (kh, kw), (sh, sw), (dh, dw), (top, bottom, left, right), (h_out, w_out) = _geometry(
        x, pool_size, strides, padding, dilation_rate, ceil_mode)
    h, w = x.shape[1], x.shape[2]
    for n in range(x.shape[0]):
        for i in range(h_out):
            for j in range(w_out):
                cells, in_padding = [], 0
                for a in range(kh):
                    r = i * sh + a * dh - top
                    for b in range(kw):
                        c = j * sw + b * dw - left
                        if 0 <= r < h and 0 <= c < w:
                            cells.append((r, c))
                        elif -top <= r < h + bottom and -left <= c < w + right:
                            in_padding += 1
                yield n, i, j, cells, in_padding, (h_out, w_out)


def max_pool2d_ref(x, pool_size, strides=None, padding="valid", dilation_rate=1,
                   ceil_mode=False, data_format="channels_last"):
    """Maximum of the real cells of each window (padding never wins)."""
    x = _nhwc(x, data_format)
    y = None
    for n, i, j, cells, _, out_hw in _pool_cells(x, pool_size, strides, padding,
                                                 dilation_rate, ceil_mode):
        if y is None:
            y = np.full((x.shape[0], *out_hw, x.shape[3]), -np.inf)
        for r, c in cells:
            y[n, i, j] = np.maximum(y[n, i, j], x[n, r, c])
    return _back(y, data_format)


def max_pool2d_backward_ref(dy, x, pool_size, strides=None, padding="valid", dilation_rate=1,
                            ceil_mode=False, data_format="channels_last"):
    """Each ``dy`` goes to the first (row-major in the window) cell holding the maximum."""
    x = _nhwc(x, data_format)
    dy = _nhwc(dy, data_format)
    dx = np.zeros_like(x)
    for n, i, j, cells, _, _ in _pool_cells(x, pool_size, strides, padding, dilation_rate,
                                            ceil_mode):
        for ch in range(x.shape[3]):
            best, where = -np.inf, None
            for r, c in cells:
                if x[n, r, c, ch] > best:
                    best, where = x[n, r, c, ch], (r, c)
            dx[n, where[0], where[1], ch] += dy[n, i, j, ch]
    return _back(dx, data_format)


def avg_pool2d_ref(x, pool_size, strides=None, padding="valid", ceil_mode=False,
                   count_include_pad=False, data_format="channels_last"):
    """Sum of the real cells / (number of real cells [+ explicit padding cells])."""
    x = _nhwc(x, data_format)
    y = None
    for n, i, j, cells, in_padding, out_hw in _pool_cells(x, pool_size, strides, padding, 1,
                                                          ceil_mode):
        if y is None:
            y = np.zeros((x.shape[0], *out_hw, x.shape[3]))
        total = sum((x[n, r, c] for r, c in cells), np.zeros(x.shape[3]))
        count = len(cells) + (in_padding if count_include_pad else 0)
        y[n, i, j] = total / count
    return _back(y, data_format)
