"""Compiled im2col and its adjoint col2im, NHWC.

``cols[(n*H_out + i)*W_out + j, (a*kw + b)*C + c] = x_pad[n, i*sh + a*dh, j*sw + b*dw, c]``:
a convolution is then ``cols @ kernel.reshape(kh*kw*C, filters)`` (the GEMM paths of
:mod:`convkit.ops.conv`), and ``col2im`` adds column entries back onto their input cells.
"""
from __future__ import annotations

import numpy as np

from ...errors import ShapeError
from ...shapes import Geometry
from ..runtime.backend import _run, jit
from .checks import _check_geometry, _geo_ints, _nhwc, _out_array


def _k_im2col(x3, cols, channels, kh, kw, sh, sw, dh, dw, top, left, h_out, w_out, lo, hi):
    """``x3`` is the NHWC input as ``(N, H, W*C)``: with dilation 1 the ``kw`` cells of one
    window row are ``kw*C`` contiguous values, copied in one run."""
    height, width = x3.shape[1], x3.shape[2] // channels
    span = kw * channels                           # one window row in the columns
    for r in range(lo, hi):
        n = r // h_out
        oh = r - n * h_out
        for ow in range(w_out):
            dst = cols[r * w_out + ow]             # (kh*kw*C,) view
            iw0 = ow * sw - left
            j_lo = 0                               # taps j_lo:j_hi fall inside the row
            while j_lo < kw and iw0 + j_lo * dw < 0:
                j_lo += 1
            j_hi = kw
            while j_hi > j_lo and iw0 + (j_hi - 1) * dw >= width:
                j_hi -= 1
            for i in range(kh):
                ih = oh * sh - top + i * dh
                base = i * span
                if ih < 0 or ih >= height or j_lo >= j_hi:
                    dst[base:base + span] = 0
                    continue
                src = x3[n, ih]                    # (W*C,) view
                if j_lo > 0:
                    dst[base:base + j_lo * channels] = 0
                if j_hi < kw:
                    dst[base + j_hi * channels:base + span] = 0
                if dw == 1:                        # slice copies compile to a memcpy
                    s0 = iw0 * channels
                    dst[base + j_lo * channels:base + j_hi * channels] = \
                        src[s0 + j_lo * channels:s0 + j_hi * channels]
                else:
                    for j in range(j_lo, j_hi):
                        s0 = (iw0 + j * dw) * channels
                        d0 = base + j * channels
                        dst[d0:d0 + channels] = src[s0:s0 + channels]


def _k_col2im(dcols, dx3, channels, kh, kw, sh, sw, dh, dw, top, left, h_out, w_out, lo, hi):
    """``dx3`` is the NHWC gradient as ``(N, H, W*C)``; each task owns whole input rows and
    gathers the column entries that read them, so chunks never write the same cell."""
    height, width = dx3.shape[1], dx3.shape[2] // channels
    span = kw * channels
    for r in range(lo, hi):
        n = r // height
        ih = r - n * height
        dst = dx3[n, ih]                           # (W*C,) view
        dst[:] = 0
        for i in range(kh):
            t = ih + top - i * dh
            if t < 0 or t % sh != 0 or t // sh >= h_out:
                continue
            oh = t // sh
            base = i * span
            for ow in range(w_out):
                src = dcols[(n * h_out + oh) * w_out + ow]
                iw0 = ow * sw - left
                j_lo = 0
                while j_lo < kw and iw0 + j_lo * dw < 0:
                    j_lo += 1
                j_hi = kw
                while j_hi > j_lo and iw0 + (j_hi - 1) * dw >= width:
                    j_hi -= 1
                if dw == 1:                        # slices indexed from 0 vectorise
                    d_run = dst[(iw0 + j_lo) * channels:(iw0 + j_hi) * channels]
                    s_run = src[base + j_lo * channels:base + j_hi * channels]
                    for q in range(d_run.shape[0]):
                        d_run[q] += s_run[q]
                else:
                    for j in range(j_lo, j_hi):
                        d0 = (iw0 + j * dw) * channels
                        s0 = base + j * channels
                        for c in range(channels):
                            dst[d0 + c] += src[s0 + c]



def im2col(x: np.ndarray, geometry: Geometry, out: np.ndarray | None = None) -> np.ndarray:
    """Window columns ``(N*H_out*W_out, kh*kw*C)`` of an NHWC batch, zero padding folded in.

    ``cols[(n*H_out + i)*W_out + j, (a*kw + b)*C + c] = x_pad[n, i*sh + a*dh, j*sw + b*dw, c]``,
    so ``cols @ kernel.reshape(kh*kw*C, filters)`` is the convolution and
    ``cols.T @ dy.reshape(-1, filters)`` its kernel gradient. ``out``: a C-contiguous array
    of that shape and dtype to write into (a reused buffer).
    """
    where = "im2col"
    compiled = jit(_k_im2col, where)
    x = _nhwc(where, "input", x)
    geo = _check_geometry(where, geometry, x.shape)
    (kh, kw), (h_out, w_out) = geo.kernel, geo.out_hw
    shape = (x.shape[0] * h_out * w_out, kh * kw * x.shape[3])
    cols = _out_array(where, out, shape, x.dtype)
    x3 = x.reshape(x.shape[0], x.shape[1], -1)                  # (N, H, W*C)
    _run(compiled, x.shape[0] * h_out, x3, cols, x.shape[3], *_geo_ints(geo), h_out, w_out)
    return cols


def col2im(dcols: np.ndarray, geometry: Geometry, x_shape,
           out: np.ndarray | None = None) -> np.ndarray:
    """Adjoint of :func:`im2col`: add each column entry back onto its input cell (cells in
    the padding are dropped). ``dcols (N*H_out*W_out, kh*kw*C)`` -> ``dx x_shape``, written
    into ``out`` (C-contiguous, ``x_shape``) when given."""
    where = "col2im"
    compiled = jit(_k_col2im, where)
    x_shape = tuple(int(v) for v in x_shape)
    geo = _check_geometry(where, geometry, x_shape)
    dcols = np.asarray(dcols)
    (kh, kw), (h_out, w_out) = geo.kernel, geo.out_hw
    expected = (x_shape[0] * h_out * w_out, kh * kw * x_shape[3])
    if dcols.shape != expected or dcols.dtype not in (np.float32, np.float64):
        raise ShapeError(f"{where}: dcols must be float32/float64 of shape {expected} for "
                         f"x_shape {x_shape}, got {dcols.dtype} {dcols.shape}")
    dcols = np.ascontiguousarray(dcols)
    dx = _out_array(where, out, x_shape, dcols.dtype)
    dx3 = dx.reshape(x_shape[0], x_shape[1], -1)                # (N, H, W*C)
    _run(compiled, x_shape[0] * x_shape[1], dcols, dx3, x_shape[3], *_geo_ints(geo), h_out,
         w_out)
    return dx

