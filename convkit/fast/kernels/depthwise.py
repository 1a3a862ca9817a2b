"""Compiled depthwise convolution (``groups == C_in``, any depth multiplier, stride,
dilation and zero padding), NHWC, forward and backward.

``kernel (kh, kw, 1, C*dm)``; output channel ``c*dm + m`` reads input channel ``c``. The
innermost loops run over contiguous channels.
"""
from __future__ import annotations

import numpy as np

from ..._aligned import output_empty
from ...errors import ShapeError
from ...shapes import Geometry
from .._generated.dw_kgrad3x3 import LANES, _k_dw_kgrad3x3
from ..runtime.backend import _run, _run_partial, jit
from .checks import _check_dy, _check_geometry, _geo_ints, _nhwc

#: fastmath of the register kernel: fused multiply-add, but no reassociation -- with it, LLVM
#: vectorises the sums over the row's pixels (gathers) instead of over the channels
REGISTER_FASTMATH = frozenset({"contract", "nsz"})


def _k_dw_fwd(x, k, bias, y, sh, sw, dh, dw, top, left, dm, lo, hi):
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    h_out, w_out, c_out = y.shape[1], y.shape[2], y.shape[3]
    kh, kw = k.shape[0], k.shape[1]
    fast3 = kh == 3 and kw == 3 and dm == 1
    k00, k01, k02 = k[0, 0], k[0, min(1, kw - 1)], k[0, min(2, kw - 1)]
    k10, k11, k12 = k[min(1, kh - 1), 0], k[min(1, kh - 1), min(1, kw - 1)], \
        k[min(1, kh - 1), min(2, kw - 1)]
    k20, k21, k22 = k[min(2, kh - 1), 0], k[min(2, kh - 1), min(1, kw - 1)], \
        k[min(2, kh - 1), min(2, kw - 1)]
    for r in range(lo, hi):
        n = r // h_out
        oh = r - n * h_out
        ih0 = oh * sh - top
        rows_inside = ih0 >= 0 and ih0 + 2 * dh < height
        # the three input rows of a 3x3 window, as (W, C) views made once per output row
        # (nine (C,) views per pixel cost more than the pixel's arithmetic at C = 128)
        r0 = x[n, min(max(ih0, 0), height - 1)]
        r1 = x[n, min(max(ih0 + dh, 0), height - 1)]
        r2 = x[n, min(max(ih0 + 2 * dh, 0), height - 1)]
        for ow in range(w_out):
            dst = y[n, oh, ow]               # (C*dm,) views: inner loops index by c only
            iw0 = ow * sw - left
            if fast3 and rows_inside and iw0 >= 0 and iw0 + 2 * dw < width:
                # 3x3 window inside the input: nine taps summed in registers, one store
                i1, i2 = iw0 + dw, iw0 + 2 * dw
                for c in range(channels):
                    dst[c] = (bias[c] + r0[iw0, c] * k00[c] + r0[i1, c] * k01[c]
                              + r0[i2, c] * k02[c]
                              + r1[iw0, c] * k10[c] + r1[i1, c] * k11[c] + r1[i2, c] * k12[c]
                              + r2[iw0, c] * k20[c] + r2[i1, c] * k21[c] + r2[i2, c] * k22[c])
                continue
            for o in range(c_out):
                dst[o] = bias[o]
            for i in range(kh):
                ih = oh * sh - top + i * dh
                if ih < 0 or ih >= height:
                    continue
                for j in range(kw):
                    iw = ow * sw - left + j * dw
                    if iw < 0 or iw >= width:
                        continue
                    src = x[n, ih, iw]
                    kr = k[i, j]
                    if dm == 1:
                        for c in range(channels):
                            dst[c] += src[c] * kr[c]
                    else:
                        for c in range(channels):
                            xv = src[c]
                            for m in range(dm):
                                dst[c * dm + m] += xv * kr[c * dm + m]


def _k_dw_bwd_kernel(x, dy, sh, sw, dh, dw, top, left, dm, ow_a, ow_b, c_split, dk, db, lo,
                     hi):
    """Add the kernel and bias gradients of output rows ``lo:hi`` (over ``N*H_out``) to
    ``dk (kh, kw, C*dm)`` and ``db (C*dm,)``, except the part :func:`_k_dw_kgrad3x3` adds:
    channels ``0:c_split`` of columns ``ow_a:ow_b`` in rows whose three kernel rows are
    inside (``c_split = 0`` when it does not run)."""
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    h_out, w_out, c_out = dy.shape[1], dy.shape[2], dy.shape[3]
    kh, kw = dk.shape[0], dk.shape[1]
    for r in range(lo, hi):
        n = r // h_out
        oh = r - n * h_out
        gr = dy[n, oh]                       # (W_out, C*dm)
        ih0 = oh * sh - top
        rows_inside = dm == 1 and kh == 3 and ih0 >= 0 and ih0 + 2 * dh < height
        for ow in range(w_out):
            g = gr[ow]
            o_lo = c_split if rows_inside and ow_a <= ow < ow_b else 0
            for o in range(o_lo, c_out):
                db[o] += g[o]
        if rows_inside:
            # all three kernel rows inside: each tap column j runs over two output pixels at
            # a time, and the two pixels' dy values serve the three rows' products. The sums
            # live in memory (dk), so this halves the stores and cuts the loads per product
            # from three to under two -- what bounds this loop.
            xa, xb, xc = x[n, ih0], x[n, ih0 + dh], x[n, ih0 + 2 * dh]
            for j in range(kw):
                off = j * dw - left
                ow_lo = max(0, -(off // sw))
                ow_hi = min(w_out, (width - 1 - off) // sw + 1)
                ka, kb, kc = dk[0, j], dk[1, j], dk[2, j]
                # the columns before, inside and after ow_a:ow_b; inside, only the channels
                # from c_split on
                for part in range(3):
                    if part == 0:
                        first, last, c_lo = ow_lo, min(ow_hi, ow_a), 0
                    elif part == 1:
                        first, last, c_lo = max(ow_lo, ow_a), min(ow_hi, ow_b), c_split
                    else:
                        first, last, c_lo = max(ow_lo, ow_b), ow_hi, 0
                    ow = first
                    while ow + 1 < last:
                        p, q = ow * sw + off, (ow + 1) * sw + off
                        g0, a0, b0, c0 = gr[ow], xa[p], xb[p], xc[p]
                        g1, a1, b1, c1 = gr[ow + 1], xa[q], xb[q], xc[q]
                        for c in range(c_lo, channels):
                            u, v = g0[c], g1[c]
                            ka[c] += a0[c] * u + a1[c] * v
                            kb[c] += b0[c] * u + b1[c] * v
                            kc[c] += c0[c] * u + c1[c] * v
                        ow += 2
                    if ow < last:                    # an odd pixel left over
                        p = ow * sw + off
                        g0, a0, b0, c0 = gr[ow], xa[p], xb[p], xc[p]
                        for c in range(c_lo, channels):
                            u = g0[c]
                            ka[c] += a0[c] * u
                            kb[c] += b0[c] * u
                            kc[c] += c0[c] * u
            continue
        for i in range(kh):
            ih = oh * sh - top + i * dh
            if ih < 0 or ih >= height:
                continue
            for j in range(kw):
                off = j * dw - left
                ow_lo = max(0, -(off // sw))
                ow_hi = min(w_out, (width - 1 - off) // sw + 1)
                dkr = dk[i, j]
                for ow in range(ow_lo, ow_hi):
                    src = x[n, ih, ow * sw + off]
                    g = dy[n, oh, ow]
                    if dm == 1:
                        for c in range(channels):
                            dkr[c] += src[c] * g[c]
                    else:
                        for c in range(channels):
                            xv = src[c]
                            for m in range(dm):
                                dkr[c * dm + m] += xv * g[c * dm + m]


def _k_dw_bwd_input(k, dy, dx, sh, sw, dh, dw, top, left, dm, lo, hi):
    """``dx`` rows ``lo:hi`` (over ``N*H``): each input row gathers from the output rows that
    read it, so chunks never write the same cell."""
    height, width, channels = dx.shape[1], dx.shape[2], dx.shape[3]
    h_out, w_out = dy.shape[1], dy.shape[2]
    kh, kw = k.shape[0], k.shape[1]
    fast3 = kh == 3 and kw == 3 and dm == 1 and sh == 1 and sw == 1
    k00, k01, k02 = k[0, 0], k[0, min(1, kw - 1)], k[0, min(2, kw - 1)]
    k10, k11, k12 = k[min(1, kh - 1), 0], k[min(1, kh - 1), min(1, kw - 1)], \
        k[min(1, kh - 1), min(2, kw - 1)]
    k20, k21, k22 = k[min(2, kh - 1), 0], k[min(2, kh - 1), min(1, kw - 1)], \
        k[min(2, kh - 1), min(2, kw - 1)]
    for r in range(lo, hi):
        n = r // height
        ih = r - n * height
        oh0 = ih + top                       # output row read through tap i is oh0 - i*dh
        rows_inside = oh0 - 2 * dh >= 0 and oh0 < h_out
        for iw in range(width):
            dst = dx[n, ih, iw]
            ow0 = iw + left
            if fast3 and rows_inside and ow0 - 2 * dw >= 0 and ow0 < w_out:
                # stride 1, every tap inside dy: nine products summed in registers
                a0, a1, a2 = dy[n, oh0, ow0], dy[n, oh0, ow0 - dw], dy[n, oh0, ow0 - 2 * dw]
                b0, b1, b2 = (dy[n, oh0 - dh, ow0], dy[n, oh0 - dh, ow0 - dw],
                              dy[n, oh0 - dh, ow0 - 2 * dw])
                c0, c1, c2 = (dy[n, oh0 - 2 * dh, ow0], dy[n, oh0 - 2 * dh, ow0 - dw],
                              dy[n, oh0 - 2 * dh, ow0 - 2 * dw])
                for c in range(channels):
                    dst[c] = (a0[c] * k00[c] + a1[c] * k01[c] + a2[c] * k02[c]
                              + b0[c] * k10[c] + b1[c] * k11[c] + b2[c] * k12[c]
                              + c0[c] * k20[c] + c1[c] * k21[c] + c2[c] * k22[c])
                continue
            for c in range(channels):
                dst[c] = 0
            for i in range(kh):
                t = ih + top - i * dh
                if t < 0 or t % sh != 0 or t // sh >= h_out:
                    continue
                oh = t // sh
                for j in range(kw):
                    u = iw + left - j * dw
                    if u < 0 or u % sw != 0 or u // sw >= w_out:
                        continue
                    g = dy[n, oh, u // sw]
                    kr = k[i, j]
                    if dm == 1:
                        for c in range(channels):
                            dst[c] += g[c] * kr[c]
                    else:
                        for c in range(channels):
                            acc = dst[c]
                            for m in range(dm):
                                acc += g[c * dm + m] * kr[c * dm + m]
                            dst[c] = acc


def _register_part(x_shape, geo: Geometry, dm: int, dtype):
    """``(ow_a, ow_b, c_split)``: the output columns whose three kernel columns are inside the
    input and the channels :func:`_k_dw_kgrad3x3` takes (a multiple of ``LANES``); ``(0, 0,
    0)`` when it does not apply: not 3x3, depth multiplier above 1, fewer than ``LANES``
    channels, no such column, or float64 (its compiled register kernel would cost seconds of
    compilation for a dtype used to check gradients, not to train fast).

    >>> from convkit.shapes import window_geometry
    >>> _register_part((8, 56, 56, 70), window_geometry((56, 56), 3, 1, "same"), 1, np.float32)
    (1, 55, 64)
    """
    width, channels = x_shape[2], x_shape[3]
    (kh, kw), (_, sw), (_, dw) = geo.kernel, geo.strides, geo.dilation
    left = geo.pads[1][0]
    c_split = channels // LANES * LANES
    if (kh, kw) != (3, 3) or dm != 1 or c_split == 0 or np.dtype(dtype) != np.float32:
        return 0, 0, 0
    ow_a = -(-left // sw)                                  # first column with iw0 >= 0
    ow_b = min(geo.out_hw[1], (width - 1 - 2 * dw + left) // sw + 1)
    if ow_b <= ow_a:
        return 0, 0, 0
    return ow_a, ow_b, c_split


def _depthwise_setup(where, x, kernel, geometry, depth_multiplier):
    x = _nhwc(where, "input", x)
    kernel = np.asarray(kernel)
    dm = int(depth_multiplier)
    channels = x.shape[3]
    if dm < 1 or kernel.ndim != 4 or kernel.shape[2] != 1 or kernel.shape[3] != channels * dm:
        raise ShapeError(f"{where}: kernel must be (kh, kw, 1, channels * depth_multiplier) = "
                         f"(kh, kw, 1, {channels * max(dm, 1)}) for input shape {x.shape} and "
                         f"depth_multiplier={depth_multiplier}, got {kernel.shape}")
    geo = _check_geometry(where, geometry, x.shape)
    if tuple(kernel.shape[:2]) != tuple(geo.kernel):
        raise ShapeError(f"{where}: kernel shape {kernel.shape} does not match the geometry's "
                         f"kernel size {geo.kernel}")
    k = np.ascontiguousarray(kernel.reshape(kernel.shape[0], kernel.shape[1], -1),
                             dtype=x.dtype)                      # (kh, kw, C*dm)
    return x, k, geo, dm


def depthwise_conv2d_forward(x: np.ndarray, kernel: np.ndarray, bias, geometry: Geometry,
                             depth_multiplier: int = 1) -> np.ndarray:
    """Depthwise convolution (``groups == channels``), zero padding.

    ``x (N, H, W, C)``, ``kernel (kh, kw, 1, C*dm)``, ``bias (C*dm,)`` or None ->
    ``y (N, H_out, W_out, C*dm)`` with output channel ``o = c*dm + m``::

        y[n, i, j, o] = bias[o] + sum_{a, b} x_pad[n, i*sh + a*dh, j*sw + b*dw, o // dm]
                                             * kernel[a, b, 0, o]
    """
    where = "depthwise_conv2d_forward"
    compiled = jit(_k_dw_fwd, where)
    x, k, geo, dm = _depthwise_setup(where, x, kernel, geometry, depth_multiplier)
    c_out = k.shape[2]
    b = np.zeros(c_out, x.dtype) if bias is None else np.ascontiguousarray(bias, x.dtype)
    if b.shape != (c_out,):
        raise ShapeError(f"{where}: bias must have shape ({c_out},), got {b.shape}")
    y = output_empty((x.shape[0], *geo.out_hw, c_out), x.dtype)
    kh, kw, sh, sw, dh, dw, top, left = _geo_ints(geo)
    _run(compiled, x.shape[0] * geo.out_hw[0], x, k, b, y, sh, sw, dh, dw, top, left, dm)
    return y


def depthwise_conv2d_backward(dy: np.ndarray, x: np.ndarray, kernel: np.ndarray,
                              geometry: Geometry, depth_multiplier: int = 1):
    """Gradients of :func:`depthwise_conv2d_forward`: ``(dx (N, H, W, C),
    dkernel (kh, kw, 1, C*dm), dbias (C*dm,))``."""
    where = "depthwise_conv2d_backward"
    x, k, geo, dm = _depthwise_setup(where, x, kernel, geometry, depth_multiplier)
    grad_kernel = jit(_k_dw_bwd_kernel, where)
    grad_input = jit(_k_dw_bwd_input, where)
    dy = _check_dy(where, dy, geo, x.shape[0], k.shape[2], x.dtype)
    kh, kw, sh, sw, dh, dw, top, left = _geo_ints(geo)
    ow_a, ow_b, c_split = _register_part(x.shape, geo, dm, x.dtype)
    grad_regs = jit(_k_dw_kgrad3x3, where, fastmath=REGISTER_FASTMATH, slp=True) \
        if c_split else None
    window = (sh, sw, dh, dw, top, left)

    def grad_rows(dk_part, db_part, sink, lo, hi):   # one thread's rows, its own partials
        if grad_regs is not None:
            grad_regs(x, dy, *window, ow_a, ow_b, c_split, dk_part, db_part, sink, lo, hi)
        grad_kernel(x, dy, *window, dm, ow_a, ow_b, c_split, dk_part, db_part, lo, hi)
    dk, db, _ = _run_partial(grad_rows, x.shape[0] * geo.out_hw[0],
                             (k.shape, k.shape[2:], (1,)), x.dtype)
    dx = output_empty(x.shape, x.dtype)
    _run(grad_input, x.shape[0] * x.shape[1], k, dy, dx, sh, sw, dh, dw, top, left, dm)
    return dx, dk.reshape(np.shape(kernel)), db


