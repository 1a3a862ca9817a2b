"""Compiled direct convolutions for few channels, NHWC in and out.

* ``conv2d_direct_*``: any stride, dilation and zero padding; the input is copied to a
  zero-padded planar buffer ``(N, C, Hp, Wp)`` and the innermost loop runs over output
  columns (e.g. the 7x7, 3 -> 2 channel seed convolution).
* ``conv2d_wide_*``: stride 1 with ``kh*kw*C_in`` small, computed on the "wide" grid (see
  the comment above :func:`conv2d_wide_forward`'s kernels) so every kernel offset is one
  long contiguous loop; the backward fuses the ReLU mask, kernel, bias and input gradients
  into one pass per image.
"""
from __future__ import annotations

import numpy as np

from ...errors import ShapeError
from ...shapes import Geometry
from ..runtime import threads as _threads
from ..runtime.backend import _chunk_slots, _run, _run_partial, jit
from .checks import _check_dy, _check_geometry, _geo_ints, _nhwc


def _k_to_planar_padded(x, xp, top, left, lo, hi):
    """NHWC ``x`` into zero-padded planar ``xp (N, C, Hp, Wp)``."""
    n_batch, height, width, channels = x.shape
    hp, wp = xp.shape[2], xp.shape[3]
    for r in range(lo, hi):
        n = r // hp
        row = r - n * hp
        ih = row - top
        for c in range(channels):
            dst = xp[n, c, row]
            for col in range(wp):
                dst[col] = 0
            if ih >= 0 and ih < height:
                dst = xp[n, c, row, left:left + width]
                src = x[n, ih, :, c]
                for iw in range(width):
                    dst[iw] = src[iw]


def _k_planar_to_nhwc(xp, x, top, left, lo, hi):
    """Crop planar ``xp (N, C, Hp, Wp)`` at ``(top, left)`` into NHWC ``x``."""
    n_batch, height, width, channels = x.shape
    for r in range(lo, hi):
        n = r // height
        ih = r - n * height
        for c in range(channels):
            src = xp[n, c, ih + top, left:left + width]
            dst = x[n, ih, :, c]
            for iw in range(width):
                dst[iw] = src[iw]


def _k_direct_fwd(xp, k, bias, y, sh, sw, dh, dw, relu, lo, hi):
    c_in = xp.shape[1]
    h_out, w_out, c_out = y.shape[1], y.shape[2], y.shape[3]
    kh, kw = k.shape[0], k.shape[1]
    for r in range(lo, hi):
        n = r // h_out
        oh = r - n * h_out
        acc = np.empty((c_out, w_out), dtype=y.dtype)           # one output row, planar
        for co in range(c_out):
            dst = acc[co]
            for ow in range(w_out):
                dst[ow] = bias[co]
        for ci in range(c_in):
            for i in range(kh):
                row = oh * sh + i * dh
                for j in range(kw):
                    # the input cells this offset reads, one per output column (a view)
                    src = xp[n, ci, row, j * dw:j * dw + (w_out - 1) * sw + 1:sw]
                    for co in range(c_out):
                        w = k[i, j, ci, co]
                        dst = acc[co]
                        if sw == 1:
                            src1 = xp[n, ci, row, j * dw:j * dw + w_out]   # contiguous
                            for ow in range(w_out):
                                dst[ow] += src1[ow] * w
                        else:
                            for ow in range(w_out):
                                dst[ow] += src[ow] * w
        for co in range(c_out):
            src = acc[co]
            dst = y[n, oh, :, co]
            for ow in range(w_out):
                v = src[ow]
                if relu and v < 0:
                    v = 0
                dst[ow] = v


def _k_direct_bwd_kernel(xp, dyp, sh, sw, dh, dw, zero, dk, db, lo, hi):
    """Add the kernel and bias gradients of output rows ``lo:hi`` (over ``N*H_out``) to
    ``dk (kh, kw, Cin, Cout)`` and ``db (Cout,)``:
    ``dk[i, j, ci, co] += sum_ow x_pad[n, ci, oh*sh + i*dh, ow*sw + j*dw] * dy[n, co, oh, ow]``.
    """
    c_in = xp.shape[1]
    c_out, h_out, w_out = dyp.shape[1], dyp.shape[2], dyp.shape[3]
    kh, kw = dk.shape[0], dk.shape[1]
    for r in range(lo, hi):
        n = r // h_out
        oh = r - n * h_out
        for co in range(c_out):
            g = dyp[n, co, oh]
            s = zero
            for ow in range(w_out):
                s += g[ow]
            db[co] += s
        for ci in range(c_in):
            for i in range(kh):
                row = oh * sh + i * dh
                for j in range(kw):
                    src = xp[n, ci, row, j * dw:j * dw + (w_out - 1) * sw + 1:sw]
                    src1 = xp[n, ci, row, j * dw:j * dw + w_out]
                    for co in range(c_out):
                        g = dyp[n, co, oh]
                        s = zero
                        if sw == 1:
                            for ow in range(w_out):
                                s += src1[ow] * g[ow]
                        else:
                            for ow in range(w_out):
                                s += src[ow] * g[ow]
                        dk[i, j, ci, co] += s


def _k_direct_bwd_input(k, dyp, dxp, sh, sw, dh, dw, lo, hi):
    """Padded planar ``dxp`` rows ``lo:hi`` (over ``N*Hp``): each gathers from the output
    rows that read it, so chunks never write the same cell."""
    c_in, hp, wp = dxp.shape[1], dxp.shape[2], dxp.shape[3]
    c_out, h_out, w_out = dyp.shape[1], dyp.shape[2], dyp.shape[3]
    kh, kw = k.shape[0], k.shape[1]
    for r in range(lo, hi):
        n = r // hp
        row = r - n * hp
        for ci in range(c_in):
            dst = dxp[n, ci, row]
            for col in range(wp):
                dst[col] = 0
        for i in range(kh):
            t = row - i * dh
            if t < 0 or t % sh != 0 or t // sh >= h_out:
                continue
            oh = t // sh
            for j in range(kw):
                for ci in range(c_in):
                    dst = dxp[n, ci, row, j * dw:j * dw + (w_out - 1) * sw + 1:sw]
                    dst1 = dxp[n, ci, row, j * dw:j * dw + w_out]
                    for co in range(c_out):
                        w = k[i, j, ci, co]
                        g = dyp[n, co, oh]
                        if sw == 1:
                            for ow in range(w_out):
                                dst1[ow] += g[ow] * w
                        else:
                            for ow in range(w_out):
                                dst[ow] += g[ow] * w


def _direct_setup(where, x, kernel, geometry):
    x = _nhwc(where, "input", x)
    kernel = np.asarray(kernel)
    if kernel.ndim != 4 or kernel.shape[2] != x.shape[3]:
        raise ShapeError(f"{where}: kernel must be (kh, kw, {x.shape[3]}, filters) for input "
                         f"shape {x.shape}, got {kernel.shape}")
    geo = _check_geometry(where, geometry, x.shape)
    if tuple(kernel.shape[:2]) != tuple(geo.kernel):
        raise ShapeError(f"{where}: kernel shape {kernel.shape} does not match the geometry's "
                         f"kernel size {geo.kernel}")
    kernel = np.ascontiguousarray(kernel, dtype=x.dtype)
    hp, wp = geo.padded_hw
    xp = np.empty((x.shape[0], x.shape[3], hp, wp), dtype=x.dtype)   # (N, Cin, Hp, Wp)
    _run(jit(_k_to_planar_padded, where), x.shape[0] * hp, x, xp, geo.pads[0][0],
         geo.pads[1][0])
    return x, kernel, geo, xp


def conv2d_direct_forward(x: np.ndarray, kernel: np.ndarray, bias, geometry: Geometry,
                          relu: bool = False) -> np.ndarray:
    """Direct convolution for few channels and large kernels (e.g. 7x7, 3 -> 2 channels).

    ``x (N, H, W, Cin)``, ``kernel (kh, kw, Cin, Cout)``, ``bias (Cout,)`` or None ->
    ``y (N, H_out, W_out, Cout)``, zero padding, any stride/dilation, then ``max(y, 0)`` if
    ``relu`` (the caller masks ``dy`` with ``y > 0`` before the backward)::

        y[n, i, j, f] = bias[f] + sum_{a, b, c} x_pad[n, i*sh + a*dh, j*sw + b*dw, c]
                                                * kernel[a, b, c, f]

    The input is copied once to a padded planar layout ``(N, Cin, Hp, Wp)``; each output row
    accumulates over ``(c, a, b)`` with a contiguous loop over its output columns.
    """
    where = "conv2d_direct_forward"
    compiled = jit(_k_direct_fwd, where)
    x, kernel, geo, xp = _direct_setup(where, x, kernel, geometry)
    c_out = kernel.shape[3]
    b = np.zeros(c_out, x.dtype) if bias is None else np.ascontiguousarray(bias, x.dtype)
    if b.shape != (c_out,):
        raise ShapeError(f"{where}: bias must have shape ({c_out},), got {b.shape}")
    y = np.empty((x.shape[0], *geo.out_hw, c_out), dtype=x.dtype)
    kh, kw, sh, sw, dh, dw, _, _ = _geo_ints(geo)
    _run(compiled, x.shape[0] * geo.out_hw[0], xp, kernel, b, y, sh, sw, dh, dw, bool(relu))
    return y


def conv2d_direct_backward(dy: np.ndarray, x: np.ndarray, kernel: np.ndarray,
                           geometry: Geometry, input_grad: bool = True):
    """Gradients of :func:`conv2d_direct_forward` (without ReLU): ``(dx (N, H, W, Cin),
    dkernel (kh, kw, Cin, Cout), dbias (Cout,))``; ``dx`` is ``None`` with
    ``input_grad=False``."""
    where = "conv2d_direct_backward"
    grad_kernel = jit(_k_direct_bwd_kernel, where)
    grad_input = jit(_k_direct_bwd_input, where)
    x, kernel, geo, xp = _direct_setup(where, x, kernel, geometry)
    n_batch, c_out = x.shape[0], kernel.shape[3]
    dy = _check_dy(where, dy, geo, n_batch, c_out, x.dtype)
    h_out, w_out = geo.out_hw
    dyp = np.empty((n_batch, c_out, h_out, w_out), dtype=x.dtype)   # (N, Cout, Ho, Wo)
    _run(jit(_k_to_planar_padded, where), n_batch * h_out, dy, dyp, 0, 0)
    kh, kw, sh, sw, dh, dw, top, left = _geo_ints(geo)
    # each output row's dot products in the input dtype, their sums in float64 (few cells)
    dk, db = _run_partial(grad_kernel, n_batch * h_out, (kernel.shape, (c_out,)), np.float64,
                          xp, dyp, sh, sw, dh, dw, x.dtype.type(0))
    dk, db = dk.astype(x.dtype), db.astype(x.dtype)
    if not input_grad:
        return None, dk, db
    dxp = np.empty_like(xp)                                          # (N, Cin, Hp, Wp)
    _run(grad_input, n_batch * xp.shape[2], kernel, dyp, dxp, sh, sw, dh, dw)
    dx = np.empty_like(x)
    _run(jit(_k_planar_to_nhwc, where), n_batch * x.shape[1], dxp, dx, top, left)
    return dx, dk, db


# ============================================== direct convolution on the wide grid (stride 1)
# For a stride-1 convolution of a zero-padded planar image ``xp (C, Hp, Wp)`` flattened to
# one row per channel, output pixel ``(i, j)`` reads ``xp[c, (i + a*dh)*Wp + j + b*dw]``.
# Computing the output on the "wide" grid ``p = i*Wp + j`` for all ``j < Wp`` (the columns
# ``j >= W_out`` are thrown away) makes every kernel offset one long contiguous product:
#     yw[f, p] += kernel[a, b, c, f] * xp[c, p + a*dh*Wp + b*dw],   p = 0 .. H_out*Wp - 1
# -- loops of hundreds of elements that vectorise fully, where a loop over one output row or
# over a few filters would not. The gradients are the same loops with the roles exchanged
# (``dy`` on the wide grid holds zeros in the thrown-away columns, so they add nothing).
# Each pass over a row takes four taps (or, for the input gradient, four filters) at once:
# the products are bound by loads and stores, and a pass that adds one product per element
# loads and stores the accumulator once per product (LeNet-5's first layer, 6 filters of
# 5x5 on 28x28x1, batch 128: 1.42 -> 0.87 ms forward, 1.81 -> 1.06 ms for the gradients).
# Each image is one task; a plane carries ``(kw-1)*dw`` zero cells of slack at its end for
# the reads past the last row.

def _wide_fill_x(x, n, xp, top, left, wp, plane):
    """Image ``n`` of NHWC ``x`` into the zeroed planar buffer ``xp`` (C * plane,)."""
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    for q in range(xp.shape[0]):
        xp[q] = 0
    for ih in range(height):
        row = x[n, ih]                                   # (W, C)
        base = (ih + top) * wp + left
        for iw in range(width):
            cell = row[iw]
            for c in range(channels):
                xp[c * plane + base + iw] = cell[c]


def _k_wide_fwd(x, kf, offs, bias, y, top, left, wp, plane, relu, zero, xp, yw, lo, hi):
    """Images ``lo:hi``: ``y (N, H_out, W_out, F)`` of ``x (N, H, W, C)``; ``kf (T, F)`` is
    the kernel with one row per tap ``t = (a*kw + b)*C + c`` and ``offs (T,)`` where that
    tap reads in ``xp``; ``xp (C * plane,)`` and ``yw (F, H_out * Wp)`` are this task's
    buffers."""
    taps, filters = kf.shape
    h_out, w_out = y.shape[1], y.shape[2]
    length = h_out * wp
    whole = taps - taps % 4
    for n in range(lo, hi):
        _wide_fill_x(x, n, xp, top, left, wp, plane)
        for f in range(filters):
            acc = yw[f]
            for p in range(length):
                acc[p] = 0
            # four taps per pass: one load and store of the accumulator per four products
            for t in range(0, whole, 4):
                w0, w1, w2, w3 = kf[t, f], kf[t + 1, f], kf[t + 2, f], kf[t + 3, f]
                s0 = xp[offs[t]:offs[t] + length]
                s1 = xp[offs[t + 1]:offs[t + 1] + length]
                s2 = xp[offs[t + 2]:offs[t + 2] + length]
                s3 = xp[offs[t + 3]:offs[t + 3] + length]
                for p in range(length):
                    acc[p] += w0 * s0[p] + w1 * s1[p] + w2 * s2[p] + w3 * s3[p]
            for t in range(whole, taps):
                w = kf[t, f]
                src = xp[offs[t]:offs[t] + length]
                for p in range(length):
                    acc[p] += w * src[p]
            b = bias[f]
            for p in range(length):       # a select in a contiguous loop: no branch
                v = acc[p] + b
                if relu and v < 0:
                    v = zero
                acc[p] = v
        for oh in range(h_out):
            for ow in range(w_out):
                dst = y[n, oh, ow]
                q = oh * wp + ow
                for f in range(filters):
                    dst[f] = yw[f, q]


def _k_wide_bwd(x, kf, offs, dy, ymask, mask, top, left, wp, plane, want_dx, zero, xp, dyw,
                dxp, dx, dk, db, lo, hi):
    """Images ``lo:hi``: add the kernel and bias gradients to ``dk (T, F)`` and ``db (F,)``
    (this task's partial sums) and, with ``want_dx``, write ``dx (N, H, W, C)``; ``kf``
    and ``offs`` as in :func:`_k_wide_fwd`. ``dy`` is masked by ``ymask > 0`` when
    ``mask`` (a fused ReLU). Buffers: ``xp`` and ``dxp`` ``(C * plane,)``, ``dyw (F,
    H_out * Wp)``."""
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    taps, filters = kf.shape
    h_out, w_out = dy.shape[1], dy.shape[2]
    length = h_out * wp
    whole = taps - taps % 4
    for n in range(lo, hi):
        _wide_fill_x(x, n, xp, top, left, wp, plane)
        for f in range(filters):
            row = dyw[f]
            for p in range(length):
                row[p] = 0
        for oh in range(h_out):
            for ow in range(w_out):
                g = dy[n, oh, ow]
                q = oh * wp + ow
                if mask:       # a product, not a branch on a random sign pattern
                    yv = ymask[n, oh, ow]
                    for f in range(filters):
                        dyw[f, q] = g[f] * (yv[f] > 0)
                else:
                    for f in range(filters):
                        dyw[f, q] = g[f]
        for f in range(filters):
            g = dyw[f]
            s = zero
            for p in range(length):
                s += g[p]
            db[f] += s
            # four taps per pass: four dot products sharing each load of g
            for t in range(0, whole, 4):
                s0 = xp[offs[t]:offs[t] + length]
                s1 = xp[offs[t + 1]:offs[t + 1] + length]
                s2 = xp[offs[t + 2]:offs[t + 2] + length]
                s3 = xp[offs[t + 3]:offs[t + 3] + length]
                a0 = a1 = a2 = a3 = zero
                for p in range(length):
                    gp = g[p]
                    a0 += s0[p] * gp
                    a1 += s1[p] * gp
                    a2 += s2[p] * gp
                    a3 += s3[p] * gp
                dk[t, f] += a0
                dk[t + 1, f] += a1
                dk[t + 2, f] += a2
                dk[t + 3, f] += a3
            for t in range(whole, taps):
                src = xp[offs[t]:offs[t] + length]
                a0 = zero
                for p in range(length):
                    a0 += src[p] * g[p]
                dk[t, f] += a0
        if not want_dx:
            continue
        for q in range(dxp.shape[0]):
            dxp[q] = 0
        whole_f = filters - filters % 4
        for t in range(taps):
            dst = dxp[offs[t]:offs[t] + length]
            for f in range(0, whole_f, 4):       # four filters per pass over dst
                w0, w1, w2, w3 = kf[t, f], kf[t, f + 1], kf[t, f + 2], kf[t, f + 3]
                g0, g1, g2, g3 = dyw[f], dyw[f + 1], dyw[f + 2], dyw[f + 3]
                for p in range(length):
                    dst[p] += w0 * g0[p] + w1 * g1[p] + w2 * g2[p] + w3 * g3[p]
            for f in range(whole_f, filters):
                w = kf[t, f]
                g = dyw[f]
                for p in range(length):
                    dst[p] += w * g[p]
        for ih in range(height):
            base = (ih + top) * wp + left
            for iw in range(width):
                cell = dx[n, ih, iw]
                for c in range(channels):
                    cell[c] = dxp[c * plane + base + iw]


def _wide_setup(where, x, kernel, geometry):
    x = _nhwc(where, "input", x)
    kernel = np.asarray(kernel)
    geo = _check_geometry(where, geometry, x.shape)
    if kernel.ndim != 4 or kernel.shape[2] != x.shape[3] \
            or tuple(kernel.shape[:2]) != tuple(geo.kernel):
        raise ShapeError(f"{where}: kernel must be ({geo.kernel[0]}, {geo.kernel[1]}, "
                         f"{x.shape[3]}, filters) for input shape {x.shape}, got "
                         f"{kernel.shape}")
    if geo.strides != (1, 1) or geo.extra != (0, 0):
        raise ShapeError(f"{where}: needs stride 1 (got strides {geo.strides})")
    kh, kw, channels, filters = kernel.shape
    kf = np.ascontiguousarray(kernel, dtype=x.dtype).reshape(kh * kw * channels, filters)
    hp, wp = geo.padded_hw
    plane = hp * wp + kw * geo.dilation[1]                  # slack past the last row
    (top, _), (left, _) = geo.pads
    (dh, dw) = geo.dilation
    offs = (np.arange(channels) * plane + (np.arange(kh) * (dh * wp))[:, None, None]
            + (np.arange(kw) * dw)[None, :, None]).reshape(-1).astype(np.int64)  # tap order
    return x, kf, offs, geo, int(wp), int(plane), int(top), int(left)


def conv2d_wide_forward(x: np.ndarray, kernel: np.ndarray, bias, geometry: Geometry,
                        relu: bool = False) -> np.ndarray:
    """Stride-1 direct convolution for few channels, on the wide grid (see above).

    ``x (N, H, W, Cin)``, ``kernel (kh, kw, Cin, Cout)``, ``bias (Cout,)`` or None ->
    ``y (N, H_out, W_out, Cout)``; zero padding, any dilation, stride 1; ``max(y, 0)`` if
    ``relu``::

        y[n, i, j, f] = bias[f] + sum_{a, b, c} x_pad[n, i + a*dh, j + b*dw, c] * kernel[a, b, c, f]

    Work per image: ``kh*kw*Cin*Cout`` contiguous products of ``H_out * Wp`` elements.
    """
    where = "conv2d_wide_forward"
    compiled = jit(_k_wide_fwd, where, helpers=(_wide_fill_x,))
    x, kf, offs, geo, wp, plane, top, left = _wide_setup(where, x, kernel, geometry)
    c_in, c_out = x.shape[3], kf.shape[1]
    b = np.zeros(c_out, x.dtype) if bias is None else np.ascontiguousarray(bias, x.dtype)
    if b.shape != (c_out,):
        raise ShapeError(f"{where}: bias must have shape ({c_out},), got {b.shape}")
    h_out, w_out = geo.out_hw
    y = np.empty((x.shape[0], h_out, w_out, c_out), dtype=x.dtype)
    if y.size == 0:
        return y
    chunks, slot = _chunk_slots(x.shape[0])
    xps = np.empty((len(chunks), c_in * plane), x.dtype)
    yws = np.empty((len(chunks), c_out, h_out * wp), x.dtype)

    def work(lo, hi):
        q = slot[lo]
        compiled(x, kf, offs, b, y, top, left, wp, plane, bool(relu), x.dtype.type(0), xps[q],
                 yws[q], lo, hi)
    _threads.run_chunks(work, x.shape[0], single_blas=False)
    return y


def conv2d_wide_backward(dy: np.ndarray, x: np.ndarray, kernel: np.ndarray, geometry: Geometry,
                         relu_y=None, input_grad: bool = True):
    """Gradients of :func:`conv2d_wide_forward`: ``(dx (N, H, W, Cin) or None, dkernel,
    dbias)``. With ``relu_y`` (the output of a fused ReLU) ``dy`` is masked by
    ``relu_y > 0`` first. Kernel and bias gradients: per-image dot products of length
    ``H_out * Wp`` summed per thread in float64."""
    where = "conv2d_wide_backward"
    compiled = jit(_k_wide_bwd, where, helpers=(_wide_fill_x,))
    x, kf, offs, geo, wp, plane, top, left = _wide_setup(where, x, kernel, geometry)
    n_batch, c_in, c_out = x.shape[0], x.shape[3], kf.shape[1]
    dy = _check_dy(where, dy, geo, n_batch, c_out, x.dtype)
    mask = relu_y is not None
    ymask = _check_dy(where, relu_y, geo, n_batch, c_out, x.dtype) if mask else dy
    h_out, _ = geo.out_hw
    chunks, slot = _chunk_slots(n_batch)
    xps = np.empty((len(chunks), c_in * plane), x.dtype)
    dxps = np.empty((len(chunks), c_in * plane if input_grad else 1), x.dtype)
    dyws = np.empty((len(chunks), c_out, h_out * wp), x.dtype)
    dks = np.zeros((len(chunks), *kf.shape), np.float64)
    dbs = np.zeros((len(chunks), c_out), np.float64)
    dx = np.empty_like(x) if input_grad else x

    def work(lo, hi):
        q = slot[lo]
        compiled(x, kf, offs, dy, ymask, mask, top, left, wp, plane, bool(input_grad),
                 x.dtype.type(0), xps[q], dyws[q], dxps[q], dx, dks[q], dbs[q], lo, hi)
    if n_batch:
        _threads.run_chunks(work, n_batch, single_blas=False)
    dk = dks.sum(axis=0).astype(x.dtype).reshape(kernel.shape)
    db = dbs.sum(axis=0).astype(x.dtype)
    return (dx if input_grad else None), dk, db
