"""Compiled max and average pooling, NHWC, forward and backward.

Max pooling writes values only (inference) or values and int32 argmax (flat ``H*W*C``
indices per image, as PyTorch's ``return_indices``); the backward scatters ``dy`` to the
argmax (one select per input cell when the windows tile the input) or, without argmax, finds
the winners again in one compare-and-write pass. Padding never wins (-inf), a NaN in a window
wins (the last one in row-major order). Average pooling has general kernels (any stride,
padding, dilation, ceil mode, ``count_include_pad``) and row-sum kernels for windows that
tile the input. No fastmath: results are exact.
"""
from __future__ import annotations

import math

import numpy as np

from ..._aligned import output_empty
from ...errors import ShapeError
from ...shapes import Geometry
from ..runtime import threads as _threads
from ..runtime import backend as _backend
from ..runtime.backend import _chunk_slots, _run, jit
from .checks import _check_dy, _check_geometry, _geo_ints, _nhwc


def _k_maxpool_fwd(x, y, arg, kh, kw, sh, sw, dh, dw, top, left, lo, hi):
    n_batch, height, width, channels = x.shape
    h_out, w_out = y.shape[1], y.shape[2]
    for r in range(lo, hi):
        n = r // h_out
        oh = r - n * h_out
        for ow in range(w_out):
            dst = y[n, oh, ow]                  # (C,) views: inner loops index by c only
            where = arg[n, oh, ow]
            first = True
            for i in range(kh):
                ih = oh * sh - top + i * dh
                if ih < 0 or ih >= height:
                    continue
                for j in range(kw):
                    iw = ow * sw - left + j * dw
                    if iw < 0 or iw >= width:
                        continue
                    flat = ih * width + iw
                    src = x[n, ih, iw]
                    if first:
                        for c in range(channels):
                            dst[c] = src[c]
                            where[c] = flat
                        first = False
                    else:
                        for c in range(channels):
                            v = src[c]
                            best = dst[c]
                            # strict '>' keeps the first maximum; a NaN always takes
                            # over, so the last NaN of the window wins (PyTorch's rule).
                            # Selects, not a branch: the loop vectorises and a random
                            # winner pattern costs no mispredictions
                            take = (v > best) | (v != v)
                            dst[c] = v if take else best
                            where[c] = flat if take else where[c]
            if first:  # the window holds only padding
                for c in range(channels):
                    dst[c] = -np.inf
                    where[c] = -1


def _k_maxpool_fwd_values(x, y, kh, kw, sh, sw, dh, dw, top, left, lo, hi):
    """:func:`_k_maxpool_fwd` without the argmax (inference): the same values."""
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    h_out, w_out = y.shape[1], y.shape[2]
    for r in range(lo, hi):
        n = r // h_out
        oh = r - n * h_out
        for ow in range(w_out):
            dst = y[n, oh, ow]
            first = True
            for i in range(kh):
                ih = oh * sh - top + i * dh
                if ih < 0 or ih >= height:
                    continue
                for j in range(kw):
                    iw = ow * sw - left + j * dw
                    if iw < 0 or iw >= width:
                        continue
                    src = x[n, ih, iw]
                    if first:
                        for c in range(channels):
                            dst[c] = src[c]
                        first = False
                    else:
                        for c in range(channels):
                            v = src[c]
                            best = dst[c]
                            dst[c] = v if (v > best) | (v != v) else best
            if first:
                for c in range(channels):
                    dst[c] = -np.inf


def _nan_max(best, v):
    """The larger of ``best`` and ``v``, NaN once either is (a window's maximum as
    ``np.max`` gives it); for the 2x2 kernels that compare a window's four cells in
    registers, here and in the fused Winograd convolution + pool."""
    return v if (v > best) | (v != v) else best


def _k_maxpool_fwd_values_2x2(x, y, lo, hi):
    """:func:`_k_maxpool_fwd_values` for 2x2 windows with stride 2, no padding and no
    dilation (the usual pooling after a convolution): the four cells of a window are
    compared in registers, channel by channel, and each output is stored once (the general
    kernel keeps its running maximum in ``y``: twice as slow while the maps are in cache).
    The same values, NaN included (a NaN in a window gives NaN)."""
    channels = x.shape[3]
    h_out, w_out = y.shape[1], y.shape[2]
    for r in range(lo, hi):
        n = r // h_out
        oh = r - n * h_out
        upper = x[n, 2 * oh]
        lower = x[n, 2 * oh + 1]
        out = y[n, oh]
        for ow in range(w_out):
            a, b = upper[2 * ow], upper[2 * ow + 1]
            c, d = lower[2 * ow], lower[2 * ow + 1]
            dst = out[ow]
            for k in range(channels):
                dst[k] = _nan_max(_nan_max(_nan_max(a[k], b[k]), c[k]), d[k])


def max_values_2x2(where: str):
    """:func:`_k_maxpool_fwd_values_2x2`, compiled (with its helper), for every caller."""
    return jit(_k_maxpool_fwd_values_2x2, where, fastmath=False, helpers=(_nan_max,))


def _k_maxpool_bwd(dy, arg, dx_flat, lo, hi):
    """``dx_flat (N, H*W*C)``: cell ``(ih, iw, c)`` of image ``n`` is ``(ih*W + iw)*C + c``."""
    h_out, w_out, channels = dy.shape[1], dy.shape[2], dy.shape[3]
    for n in range(lo, hi):          # windows of one image may overlap: one image per task
        dst = dx_flat[n]
        for p in range(dst.shape[0]):
            dst[p] = 0
        for oh in range(h_out):
            for ow in range(w_out):
                g = dy[n, oh, ow]
                where = arg[n, oh, ow]
                for c in range(channels):
                    a = where[c]
                    if a >= 0:
                        dst[a * channels + c] += g[c]


def _k_maxpool_bwd_tiles(dy, arg, dx, kh, kw, lo, hi):
    """Max-pool gradient from the argmax when the windows tile the input (stride = window,
    no padding, no dilation): input rows ``lo:hi`` over ``N*H``; every cell is written once,
    ``dy`` where the argmax names it and 0 elsewhere (a select, no scatter), so ``dx``
    needs no zeroing; rows and columns no window reaches get 0."""
    height, width, channels = dx.shape[1], dx.shape[2], dx.shape[3]
    h_out, w_out = dy.shape[1], dy.shape[2]
    for r in range(lo, hi):
        n = r // height
        ih = r - n * height
        oh = ih // kh
        row = dx[n, ih]
        if oh >= h_out:
            for iw in range(width):
                cell = row[iw]
                for c in range(channels):
                    cell[c] = 0
            continue
        for ow in range(w_out):
            g = dy[n, oh, ow]
            where = arg[n, oh, ow]
            for j in range(kw):
                iw = ow * kw + j
                flat = ih * width + iw
                cell = row[iw]
                for c in range(channels):
                    cell[c] = g[c] if where[c] == flat else 0
        for iw in range(w_out * kw, width):
            cell = row[iw]
            for c in range(channels):
                cell[c] = 0


def _k_maxpool_bwd_direct(x, dy, dx, best, win, tiled, kh, kw, sh, sw, dh, dw, top, left,
                          lo, hi):
    """Max-pool gradient without an argmax array, for windows that do not overlap: per
    window, find the winner of each channel (as :func:`_k_maxpool_fwd`: first maximum, the
    last NaN) and write ``dy`` there and 0 in the window's other cells. Rows ``lo:hi`` over
    ``N*H_out``; output row ``oh`` first zeroes its band of input rows (``oh*sh - top`` up
    to the next row's band, the last row to the bottom), so cells no window covers are 0
    and ``dx`` needs no zeroing beforehand; with ``tiled`` (the windows tile the input
    exactly) every cell is some window's and that pass is skipped."""
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    h_out, w_out = dy.shape[1], dy.shape[2]
    for r in range(lo, hi):
        n = r // h_out
        oh = r - n * h_out
        band_lo = 0 if oh == 0 else max(0, oh * sh - top)
        band_hi = height if oh == h_out - 1 else min(height, (oh + 1) * sh - top)
        for ih in range(band_lo, band_hi if not tiled else band_lo):
            row = dx[n, ih]
            for iw in range(width):
                cell = row[iw]
                for c in range(channels):
                    cell[c] = 0
        for ow in range(w_out):
            first = True
            k = 0
            for i in range(kh):
                ih = oh * sh - top + i * dh
                if ih < 0 or ih >= height:
                    continue
                for j in range(kw):
                    iw = ow * sw - left + j * dw
                    if iw < 0 or iw >= width:
                        continue
                    src = x[n, ih, iw]
                    if first:
                        for c in range(channels):
                            best[c] = src[c]
                            win[c] = 0
                        first = False
                    else:
                        for c in range(channels):
                            v = src[c]
                            b = best[c]
                            take = (v > b) | (v != v)
                            best[c] = v if take else b
                            win[c] = k if take else win[c]
                    k += 1
            if first:       # only padding: no gradient
                continue
            g = dy[n, oh, ow]
            k = 0
            for i in range(kh):
                ih = oh * sh - top + i * dh
                if ih < 0 or ih >= height:
                    continue
                for j in range(kw):
                    iw = ow * sw - left + j * dw
                    if iw < 0 or iw >= width:
                        continue
                    dst = dx[n, ih, iw]
                    for c in range(channels):
                        dst[c] = g[c] if win[c] == k else 0
                    k += 1


def max_pool2d_backward_direct(dy: np.ndarray, x: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Gradient of max pooling from ``x`` itself (no argmax array), for windows that do not
    overlap (stride >= dilated window on both axes): one pass that finds each window's
    winner and writes ``dy`` to it. Same result as :func:`max_pool2d_backward` of
    :func:`max_pool2d_forward`'s argmax. ``x (N, H, W, C)``, ``dy (N, H_out, W_out, C)``."""
    where = "max_pool2d_backward_direct"
    kernel = jit(_k_maxpool_bwd_direct, where, fastmath=False)
    x = _nhwc(where, "input", x)
    geo = _check_geometry(where, geometry, x.shape)
    (kh, kw), (sh, sw), (dh, dw) = geo.kernel, geo.strides, geo.dilation
    if sh < (kh - 1) * dh + 1 or sw < (kw - 1) * dw + 1:
        raise ShapeError(f"{where}: the windows overlap (kernel {geo.kernel}, strides "
                         f"{geo.strides}, dilation {geo.dilation}); use max_pool2d_backward")
    dy = _check_dy(where, dy, geo, x.shape[0], x.shape[3], x.dtype)
    dx = output_empty(x.shape, x.dtype)        # every cell is written by the kernel
    if geo.out_hw[0] == 0 or geo.out_hw[1] == 0:
        dx[...] = 0
        return dx
    chunks = _threads.split(x.shape[0] * geo.out_hw[0], _threads.num_threads())
    scratch = np.empty((len(chunks), 2, x.shape[3]), dtype=x.dtype)
    wins = np.empty((len(chunks), x.shape[3]), dtype=np.int64)
    slot = {start: q for q, (start, _) in enumerate(chunks)}

    tiled = (geo.dilation == (1, 1) and geo.kernel == geo.strides
             and geo.pads == ((0, 0), (0, 0))
             and geo.out_hw[0] * sh == x.shape[1] and geo.out_hw[1] * sw == x.shape[2])

    def work(lo, hi):
        q = slot[lo]
        kernel(x, dy, dx, scratch[q, 0], wins[q], tiled, *_geo_ints(geo), lo, hi)
    _threads.run_chunks(work, x.shape[0] * geo.out_hw[0], single_blas=False)
    return dx


def max_pool2d_values(x: np.ndarray, geometry: Geometry) -> np.ndarray:
    """The ``y`` of :func:`max_pool2d_forward` alone (no argmax array is written): for
    inference. ``x (N, H, W, C)`` -> ``y (N, H_out, W_out, C)``; a NaN in a window gives NaN."""
    where = "max_pool2d_values"
    x = _nhwc(where, "input", x)
    geo = _check_geometry(where, geometry, x.shape)
    return prepare_max_values(x.shape, x.dtype, geo)(x)


def prepare_max_values(x_shape: tuple, dtype, geometry: Geometry):
    """:func:`max_pool2d_values` for inputs of ``x_shape`` and ``dtype`` with its set-up
    done once: returns ``run(x) -> y`` for C-contiguous ``x`` of that shape and dtype
    (unchecked: the caller checked it once)."""
    out_shape = (x_shape[0], *geometry.out_hw, x_shape[3])
    rows = x_shape[0] * geometry.out_hw[0]
    work_bytes = np.dtype(dtype).itemsize * (math.prod(x_shape) + math.prod(out_shape))
    if _is_tiling(geometry) and geometry.kernel == (2, 2):
        kernel = max_values_2x2("max_pool2d_values")
        ints = ()
    else:
        kernel = jit(_k_maxpool_fwd_values, "max_pool2d_values", fastmath=False)
        ints = _geo_ints(geometry)

    def run(x):
        y = output_empty(out_shape, dtype)
        _run(kernel, rows, x, y, *ints, small=work_bytes < _backend.SMALL_WORK_BYTES)
        return y
    return run


def max_pool2d_forward(x: np.ndarray, geometry: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """Max pooling with the position of each maximum.

    ``x (N, H, W, C)`` -> ``y (N, H_out, W_out, C)`` and ``argmax`` (int32, same shape): the
    flat index ``ih * W + iw`` of the winning cell in the unpadded input, the first maximum
    in row-major window order on a tie, ``-1`` (and ``y = -inf``) where a window holds only
    padding. Padded cells never win; a NaN in a window wins (the last NaN, as in PyTorch).
    Dilation, strides, pads and ceil mode come from ``geometry``.

    >>> from convkit.shapes import window_geometry
    >>> y, arg = max_pool2d_forward(np.array([[1., 4.], [4., 2.]]).reshape(1, 2, 2, 1),
    ...                             window_geometry((2, 2), 2))      # doctest: +SKIP
    >>> float(y[0, 0, 0, 0]), int(arg[0, 0, 0, 0])                     # doctest: +SKIP
    (4.0, 1)
    """
    where = "max_pool2d_forward"
    kernel = jit(_k_maxpool_fwd, where, fastmath=False)
    x = _nhwc(where, "input", x)
    geo = _check_geometry(where, geometry, x.shape)
    shape = (x.shape[0], *geo.out_hw, x.shape[3])
    y = output_empty(shape, x.dtype)
    arg = np.empty(shape, dtype=np.int32)
    _run(kernel, x.shape[0] * geo.out_hw[0], x, y, arg, *_geo_ints(geo))
    return y, arg


def max_pool2d_backward(dy: np.ndarray, argmax: np.ndarray, x_shape,
                        geometry: Geometry | None = None) -> np.ndarray:
    """Gradient of :func:`max_pool2d_forward`: ``dx[n, argmax // W, argmax % W, c] += dy``
    (overlapping windows add up; ``argmax == -1`` sends nothing). Returns ``x_shape``, the
    dtype of ``dy``. With the forward's ``geometry``, windows that tile the input take a
    faster pass that writes each cell once.
    """
    where = "max_pool2d_backward"
    kernel = jit(_k_maxpool_bwd, where, fastmath=False)
    dy = _nhwc(where, "dy", dy)
    argmax = np.ascontiguousarray(argmax)
    x_shape = tuple(int(v) for v in x_shape)
    if argmax.shape != dy.shape or argmax.dtype != np.int32:
        raise ShapeError(f"{where}: argmax must be int32 shaped like dy {dy.shape}, got "
                         f"{argmax.dtype} {argmax.shape}")
    if len(x_shape) != 4 or x_shape[0] != dy.shape[0] or x_shape[3] != dy.shape[3]:
        raise ShapeError(f"{where}: x_shape {x_shape} does not fit dy shape {dy.shape}")
    if argmax.size and int(argmax.max()) >= x_shape[1] * x_shape[2]:
        raise ShapeError(f"{where}: argmax holds index {int(argmax.max())}, beyond the "
                         f"{x_shape[1]}x{x_shape[2]} input")
    dx = output_empty(x_shape, dy.dtype)
    if geometry is not None and _is_tiling(_check_geometry(where, geometry, x_shape)) \
            and tuple(geometry.out_hw) == dy.shape[1:3]:
        tiles = jit(_k_maxpool_bwd_tiles, where, fastmath=False)
        _run(tiles, x_shape[0] * x_shape[1], dy, argmax, dx, *geometry.kernel)
        return dx
    _run(kernel, dy.shape[0], dy, argmax, dx.reshape(x_shape[0], -1))
    return dx


# ======================================================================== average pooling
def _taps_inside(o, stride, pad_before, k, dilation, lo, hi):
    """How many of the ``k`` taps of window ``o`` along one axis, at ``o*stride - pad_before
    + t*dilation``, fall in ``[lo, hi)``: the divisor's factor for that axis."""
    count = 0
    for t in range(k):
        p = o * stride - pad_before + t * dilation
        if p >= lo and p < hi:
            count += 1
    return count


def _k_avgpool_fwd(x, y, kh, kw, sh, sw, dh, dw, top, left, lo_h, hi_h, lo_w, hi_w, lo, hi):
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    h_out, w_out = y.shape[1], y.shape[2]
    divisor = np.empty(1, dtype=y.dtype)     # the count in the array's dtype: float32 math
    for r in range(lo, hi):
        n = r // h_out
        oh = r - n * h_out
        rows = _taps_inside(oh, sh, top, kh, dh, lo_h, hi_h)
        for ow in range(w_out):
            cols = _taps_inside(ow, sw, left, kw, dw, lo_w, hi_w)
            divisor[0] = max(rows * cols, 1)
            count = divisor[0]
            dst = y[n, oh, ow]
            for c in range(channels):
                dst[c] = 0
            for i in range(kh):
                ih = oh * sh - top + i * dh
                if ih < 0 or ih >= height:
                    continue
                for j in range(kw):
                    iw = ow * sw - left + j * dw
                    if iw < 0 or iw >= width:
                        continue
                    src = x[n, ih, iw]
                    for c in range(channels):
                        dst[c] += src[c]
            for c in range(channels):
                dst[c] = dst[c] / count


def _k_avgpool_tiles_fwd(x3, y3, kh, kw, channels, divisor, rs, lo, hi):
    """Average pooling whose windows tile the input (stride = window, no padding, no
    dilation): output rows ``lo:hi`` over ``N*H_out``, ``x3 (N, H, W*C)``, ``y3 (N, H_out,
    W_out*C)``. The ``kh`` input rows are summed first along whole rows (long contiguous
    loops), then ``kw`` neighbouring cells; ``rs (W*C,)`` is this task's row buffer."""
    h_out = y3.shape[1]
    span = y3.shape[2] // channels * kw * channels     # the row cells the windows cover
    row_sum = rs[:span]
    if kh == 2 and kw == 2:
        # 2x2 windows: each output from its four cells in one pass, the same sums in the
        # same order ((top-left + bottom-left) + (top-right + bottom-right)), times the
        # exact 1/4 instead of a division (128x28x28x32, two threads, AVX-512: 0.83-0.94
        # -> 0.58-0.62 ms; the row sums, then three passes over each output's channels)
        quarter = np.float32(0.25)      # exact in either float type
        for r in range(lo, hi):
            n = r // h_out
            oh = r - n * h_out
            top, bottom, out = x3[n, 2 * oh], x3[n, 2 * oh + 1], y3[n, oh]
            for ow in range(out.shape[0] // channels):
                base = 2 * ow * channels
                dst = out[ow * channels:(ow + 1) * channels]
                a, b = top[base:base + channels], bottom[base:base + channels]
                c_, d = top[base + channels:base + 2 * channels], \
                    bottom[base + channels:base + 2 * channels]
                for c in range(channels):
                    dst[c] = ((a[c] + b[c]) + (c_[c] + d[c])) * quarter
        return
    for r in range(lo, hi):
        n = r // h_out
        oh = r - n * h_out
        first = x3[n, oh * kh, :span]
        for q in range(span):
            row_sum[q] = first[q]
        for i in range(1, kh):
            src = x3[n, oh * kh + i, :span]
            for q in range(span):
                row_sum[q] += src[q]
        out = y3[n, oh]
        for ow in range(out.shape[0] // channels):
            dst = out[ow * channels:(ow + 1) * channels]
            src = row_sum[ow * kw * channels:(ow * kw + 1) * channels]
            for c in range(channels):
                dst[c] = src[c]
            for j in range(1, kw):
                src = row_sum[(ow * kw + j) * channels:(ow * kw + j + 1) * channels]
                for c in range(channels):
                    dst[c] += src[c]
            for c in range(channels):
                dst[c] = dst[c] / divisor


def _k_avgpool_tiles_bwd(dy3, dx3, kh, kw, channels, divisor, rs, lo, hi):
    """Gradient of :func:`_k_avgpool_tiles_fwd`: input rows ``lo:hi`` over ``N*H``; each
    row is ``dy / divisor`` spread over its window's ``kw`` cells (0 in the rows and columns
    no window reaches)."""
    height, h_out = dx3.shape[1], dy3.shape[1]
    width_c = dx3.shape[2]
    w_out_c = dy3.shape[2]
    span = w_out_c * kw
    for r in range(lo, hi):
        n = r // height
        ih = r - n * height
        dst = dx3[n, ih]
        oh = ih // kh
        if oh >= h_out:
            for q in range(width_c):
                dst[q] = 0
            continue
        for ow in range(w_out_c // channels):
            g = dy3[n, oh, ow * channels:(ow + 1) * channels]
            for j in range(kw):
                cell = dst[(ow * kw + j) * channels:(ow * kw + j + 1) * channels]
                for c in range(channels):
                    cell[c] = g[c] / divisor
        for q in range(span, width_c):
            dst[q] = 0


#: tiling average pools of fewer elements than this run on the calling thread alone
SMALL_POOL = 1 << 19


def _is_tiling(geo: Geometry) -> bool:
    return (geo.strides == geo.kernel and geo.dilation == (1, 1) and geo.extra == (0, 0)
            and geo.pads == ((0, 0), (0, 0)))


def _k_avgpool_bwd(dy, dx, kh, kw, sh, sw, dh, dw, top, left, lo_h, hi_h, lo_w, hi_w, lo, hi):
    h_out, w_out, channels = dy.shape[1], dy.shape[2], dy.shape[3]
    height, width = dx.shape[1], dx.shape[2]
    share = np.empty(channels, dtype=dx.dtype)
    for n in range(lo, hi):          # windows of one image may overlap: one image per task
        dx[n] = 0
        for oh in range(h_out):
            rows = _taps_inside(oh, sh, top, kh, dh, lo_h, hi_h)
            for ow in range(w_out):
                cols = _taps_inside(ow, sw, left, kw, dw, lo_w, hi_w)
                share[0] = max(rows * cols, 1)
                count = share[0]
                g = dy[n, oh, ow]
                for c in range(channels):
                    share[c] = g[c] / count     # dy / divisor, in the array's dtype
                for i in range(kh):
                    ih = oh * sh - top + i * dh
                    if ih < 0 or ih >= height:
                        continue
                    for j in range(kw):
                        iw = ow * sw - left + j * dw
                        if iw < 0 or iw >= width:
                            continue
                        dst = dx[n, ih, iw]
                        for c in range(channels):
                            dst[c] += share[c]


def _count_bounds(geo: Geometry, count_include_pad: bool):
    (top, bottom), (left, right) = geo.pads
    height, width = geo.in_hw
    if count_include_pad:   # explicit padding counts, the ceil-mode extra cells never do
        return -top, height + bottom, -left, width + right
    return 0, height, 0, width


def avg_pool2d_forward(x: np.ndarray, geometry: Geometry,
                       count_include_pad: bool = False) -> np.ndarray:
    """Average pooling ``(N, H, W, C) -> (N, H_out, W_out, C)``.

    Each window's sum over its real cells is divided by the number of real cells
    (``count_include_pad=False``, Keras) or by the cells inside the input or its explicit
    padding (``True``, PyTorch; ceil-mode extra cells never count); at least 1.

    >>> from convkit.shapes import window_geometry
    >>> x = np.arange(9.0).reshape(1, 3, 3, 1)
    >>> avg_pool2d_forward(x, window_geometry((3, 3), 2, 2, "same"))[0, :, :, 0]  # doctest: +SKIP
    array([[2. , 3.5],
           [6.5, 8. ]])
    """
    where = "avg_pool2d_forward"
    kernel = jit(_k_avgpool_fwd, where, fastmath=False, helpers=(_taps_inside,))
    x = _nhwc(where, "input", x)
    geo = _check_geometry(where, geometry, x.shape)
    y = output_empty((x.shape[0], *geo.out_hw, x.shape[3]), x.dtype)
    if _is_tiling(geo) and y.size:     # windows tile the input: every divisor is kh*kw
        tiles = jit(_k_avgpool_tiles_fwd, where, fastmath=False)
        chunks, slot = _chunk_slots(x.shape[0] * geo.out_hw[0])
        rows = np.empty((len(chunks), x.shape[2] * x.shape[3]), dtype=x.dtype)
        x3 = x.reshape(x.shape[0], x.shape[1], -1)              # (N, H, W*C)
        y3 = y.reshape(y.shape[0], y.shape[1], -1)              # (N, H_out, W_out*C)
        divisor = x.dtype.type(geo.kernel[0] * geo.kernel[1])
        total = x.shape[0] * geo.out_hw[0]
        if x.size < SMALL_POOL:          # a hand-off to another thread costs more
            tiles(x3, y3, *geo.kernel, x.shape[3], divisor, rows[0], 0, total)
            return y
        _threads.run_chunks(lambda lo, hi: tiles(x3, y3, *geo.kernel, x.shape[3], divisor,
                                                 rows[slot[lo]], lo, hi),
                            total, single_blas=False)
        return y
    _run(kernel, x.shape[0] * geo.out_hw[0], x, y, *_geo_ints(geo),
         *_count_bounds(geo, bool(count_include_pad)))
    return y


def avg_pool2d_backward(dy: np.ndarray, geometry: Geometry, x_shape,
                        count_include_pad: bool = False) -> np.ndarray:
    """Gradient of :func:`avg_pool2d_forward`: each ``dy`` divided by its window's divisor
    is added to the window's real input cells. Returns ``x_shape``, the dtype of ``dy``."""
    where = "avg_pool2d_backward"
    kernel = jit(_k_avgpool_bwd, where, fastmath=False, helpers=(_taps_inside,))
    x_shape = tuple(int(v) for v in x_shape)
    geo = _check_geometry(where, geometry, x_shape)
    dy = _nhwc(where, "dy", dy)
    dy = _check_dy(where, dy, geo, x_shape[0], x_shape[3], dy.dtype)
    dx = output_empty(x_shape, dy.dtype)
    if _is_tiling(geo) and dx.size:
        tiles = jit(_k_avgpool_tiles_bwd, where, fastmath=False)
        divisor = dy.dtype.type(geo.kernel[0] * geo.kernel[1])
        args = (dy.reshape(dy.shape[0], dy.shape[1], -1),
                dx.reshape(x_shape[0], x_shape[1], -1), *geo.kernel, x_shape[3], divisor,
                dx[0, 0, :, 0])
        if dx.size < SMALL_POOL:
            tiles(*args, 0, x_shape[0] * x_shape[1])
        else:
            _run(tiles, x_shape[0] * x_shape[1], *args)
        return dx
    _run(kernel, dy.shape[0], dy, dx, *_geo_ints(geo),
         *_count_bounds(geo, bool(count_include_pad)))
    return dx


