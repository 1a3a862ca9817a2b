"""Compiled one-pass kernel and bias gradients of a convolution with few taps
(``kh*kw*C_in*filters`` small), with the ReLU mask fused in: no im2col columns.
"""
from __future__ import annotations

import numpy as np

from ...errors import ShapeError
from ...shapes import Geometry
from ..runtime import threads as _threads
from ..runtime.backend import jit
from .checks import _check_dy, _check_geometry, _geo_ints, _nhwc


def _k_kgrad_small(x3, dy2, y2, dz2, acc, channels, kh, kw, sh, sw, dh, dw, top, left,
                   h_out, w_out, mask, write_dz, dk, db, lo, hi):
    """Kernel and bias gradients for few taps (``kh*kw*C``), output rows ``lo:hi`` over
    ``N*H_out``: ``dk[(a*kw + b)*C + c, f] += x_pad[n, i*sh + a*dh, j*sw + b*dw, c] *
    dz[m, f]`` and ``db[f] += dz[m, f]`` with ``dz = dy * (y > 0)`` when ``mask`` (else
    ``dy``), written to ``dz2`` when ``write_dz``. One output row is summed in the input
    dtype (``acc``), the rows in ``dk``/``db`` (float64)."""
    height, width = x3.shape[1], x3.shape[2] // channels
    filters = dy2.shape[1]
    taps = kh * kw * channels
    g = np.empty(filters, dtype=dy2.dtype)
    row_db = np.empty(filters, dtype=dy2.dtype)
    for r in range(lo, hi):
        n = r // h_out
        oh = r - n * h_out
        acc[:, :] = 0
        row_db[:] = 0
        for ow in range(w_out):
            m = r * w_out + ow
            src = dy2[m]
            if mask:
                yv = y2[m]
                for f in range(filters):
                    g[f] = src[f] * (yv[f] > 0)
            else:
                for f in range(filters):
                    g[f] = src[f]
            if write_dz:
                out = dz2[m]
                for f in range(filters):
                    out[f] = g[f]
            for f in range(filters):
                row_db[f] += g[f]
            iw0 = ow * sw - left
            for a in range(kh):
                ih = oh * sh - top + a * dh
                if ih < 0 or ih >= height:
                    continue
                xrow = x3[n, ih]
                for b in range(kw):
                    iw = iw0 + b * dw
                    if iw < 0 or iw >= width:
                        continue
                    for c in range(channels):
                        xv = xrow[iw * channels + c]
                        dst = acc[(a * kw + b) * channels + c]
                        for f in range(filters):
                            dst[f] += xv * g[f]
        for t in range(taps):
            src_row = acc[t]
            dst_row = dk[t]
            for f in range(filters):
                dst_row[f] += src_row[f]
        for f in range(filters):
            db[f] += row_db[f]


#: :func:`conv2d_kernel_grad_small` applies when ``kh*kw*C_in*filters`` is at most this (the
#: per-thread sums stay in the L1 cache) and there are at least ``SMALL_KGRAD_MIN_FILTERS``
#: filters (the inner loop runs over them)
SMALL_KGRAD_MAX_CELLS = 1024
SMALL_KGRAD_MIN_FILTERS = 8


def conv2d_kernel_grad_small(dy: np.ndarray, x: np.ndarray, kernel_shape, geometry: Geometry,
                             relu_y=None, write_dz: bool = False):
    """``(dkernel (kh, kw, C, F), dbias (F,), dz)`` of a convolution with few taps, in one
    pass over ``dy`` without im2col columns: ``dz = dy * (relu_y > 0)`` when ``relu_y`` (the
    output of a fused ReLU) is given, else ``dy``; ``dz`` is returned (a new array) only
    with ``write_dz``, else ``None``. Ungrouped; any stride, dilation and zero padding.
    ``x (N, H, W, C)``, ``dy`` and ``relu_y`` ``(N, H_out, W_out, F)``."""
    where = "conv2d_kernel_grad_small"
    compiled = jit(_k_kgrad_small, where)
    x = _nhwc(where, "input", x)
    geo = _check_geometry(where, geometry, x.shape)
    kh, kw, c_in, filters = (int(v) for v in kernel_shape)
    if (kh, kw) != tuple(geo.kernel) or c_in != x.shape[3]:
        raise ShapeError(f"{where}: kernel shape {tuple(kernel_shape)} does not fit input "
                         f"shape {x.shape} and kernel size {geo.kernel}")
    dy = _check_dy(where, dy, geo, x.shape[0], filters, x.dtype)
    h_out, w_out = geo.out_hw
    dy2 = dy.reshape(-1, filters)                               # (M, F)
    mask = relu_y is not None
    if mask:
        relu_y = _check_dy(where, relu_y, geo, x.shape[0], filters, x.dtype)
        y2 = relu_y.reshape(-1, filters)
    else:
        y2 = dy2
    dz = np.empty_like(dy) if write_dz else None
    dz2 = dz.reshape(-1, filters) if write_dz else dy2
    x3 = x.reshape(x.shape[0], x.shape[1], -1)                  # (N, H, W*C)
    taps = kh * kw * c_in
    chunks = _threads.split(x.shape[0] * h_out, _threads.num_threads())
    accs = np.empty((len(chunks), taps, filters), x.dtype)
    slot = {start: q for q, (start, _) in enumerate(chunks)}
    dk_parts = np.zeros((len(chunks), taps, filters), np.float64)
    db_parts = np.zeros((len(chunks), filters), np.float64)

    def work(lo, hi):
        q = slot[lo]
        compiled(x3, dy2, y2, dz2, accs[q], c_in, *_geo_ints(geo), h_out, w_out, mask,
                 bool(write_dz), dk_parts[q], db_parts[q], lo, hi)
    _threads.run_chunks(work, x.shape[0] * h_out, single_blas=False)
    dk = dk_parts.sum(axis=0).astype(x.dtype).reshape(kh, kw, c_in, filters)
    return dk, db_parts.sum(axis=0).astype(x.dtype), dz

