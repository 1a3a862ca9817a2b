"""Stride-2 3x3 convolution with a quarter fewer multiplies: Winograd F(4, 2) along the width.

Along a row, a stride-2 3-tap correlation splits by the parity of the input column. For
four outputs ``j = 0..3`` of a tile, the nine input columns ``d_0 .. d_8`` of its window
give::

    out_j = k_0 d_2j + k_1 d_2j+1 + k_2 d_2j+2
          = (k_0 e_j + k_2 e_j+1)  +  k_1 o_j        e = d_0, d_2, .., d_8   o = d_1, .., d_7

The even part is a stride-1 two-tap correlation, which Winograd's F(4, 2) computes with 5
multiplies instead of 8 (points 0, 1, -1, 2 and infinity); the odd part is one tap, 4
multiplies. So 9 "points" per tile of 4 outputs instead of 12 products::

    V = [B^T e ; o]      (9,)   input transform, B^T (5, 5) with integer entries
    U = [G (k_0, k_2) ; k_1]    kernel transform, G (5, 2)
    Y = [A^T | I] (U * V)       output transform, A^T (4, 5), plus the identity for o

The kernel rows and input channels stay a plain reduction. With one tile row per output
row ``i`` and its three input rows ``2i - top + r``::

    V (9, T, 3*C_in)   T = output rows x tiles per row of a chunk; the three input rows'
                       transforms side by side, zero for rows in the padding
    U (6, 3*C_in, F)   once per call (the four odd columns share k_1)
    M[p] = V[p] @ U[p] nine matrix products per chunk by the register-tile kernel
                       (:func:`convkit.fast.kernels.tiles._k_gemm`, the 1x1 convolution's
                       product at the CPU's tile width)
    y = A^T M          bias (and ReLU) added before the store

75 % of the direct convolution's multiplies: at 8 x 56x56x64 -> 128 (pad 1) the nine
products take about 3.4 ms on two threads where the direct implicit product takes 4.5.
The transforms add only additions, a chunk of output rows at a time while its ``V`` and
``M`` are in the core's cache. Input rows are transformed once per output row that reads
them (1.5 times on average): cheaper than a second buffer layout.

The gradients (:func:`conv3x3_s2_backward`) run the same chunks backwards: ``dy`` through
the output transform's adjoint (``M = [A g ; g]`` for a tile's four columns ``g``), then
``dU[p] += V[p]^T @ M[p]`` for the kernel gradient (``G``'s adjoint at the end) and ``M[p] @
U[p]^T`` through the input transform's adjoint into ``dx``: again nine products per tile
where the direct gradients take 12.

Accuracy: the transforms' entries are small (at most 3 in ``B^T``, 8 in ``A^T``, 1/6 in
``G``); at the size above the float32 result is within 1.5e-6 of the exact sum relative to
its largest value (the direct float32 sum: 1.0e-6). Tests bound it by 1e-5.

>>> import numpy as np
>>> x = np.ones((1, 5, 5, 16), np.float32); k = np.ones((3, 3, 16, 16), np.float32)
>>> y = conv3x3_s2_forward(x, k, None, ((1, 1), (1, 1)))      # doctest: +SKIP
>>> y[0, :, :, 0]                                               # doctest: +SKIP
array([[ 64.,  96.,  64.],
       [ 96., 144.,  96.],
       [ 64.,  96.,  64.]], dtype=float32)
"""
from __future__ import annotations

import math
import threading

import numpy as np

from ...errors import ShapeError
from ..runtime import threads as _threads
from .._generated.conv_regs import LANES
from . import tiles, winograd
from .tiles import _k_gemm  # noqa: F401
from .winograd import _k_point_products_tn  # noqa: F401  (its compiled form replaces it)
from ..runtime.backend import _chunk_slots, jit
from .checks import _pads
from .implicit import REGISTER_FASTMATH

__all__ = ["applies", "backward_applies", "conv3x3_s2_backward", "conv3x3_s2_forward",
           "s2_matrices", "TILE", "POINTS"]

TILE = 4            # outputs per tile along the width
POINTS = 9          # 5 Winograd points of the even columns + 4 odd columns
#: bytes of one thread's ``V`` and ``M`` per chunk of output rows (kept in its L2 cache)
CHUNK_BYTES = 1048576
#: the fewest input channels worth it: below, the transforms cost more than they save
MIN_CHANNELS = 16

_local = threading.local()

# float32 constants for the compiled transforms (an integer literal times a float32 value
# would be computed in float64 there, at half the vector width)
two, three, four, eight = np.float32(2), np.float32(3), np.float32(4), np.float32(8)


def s2_matrices(dtype=np.float64):
    """``(B^T (5, 5), G (5, 2), A^T (4, 5))`` of F(4, 2) for the points 0, 1, -1, 2 and
    infinity, scaled so that ``B^T`` is integer: for ``e (5,)`` and ``g (2,)``,
    ``A^T ((G g) * (B^T e)) == [g_0 e_j + g_1 e_j+1 for j in 0..3]``."""
    bt = np.array([[2, -1, -2, 1, 0],
                   [0, 2, 1, -1, 0],
                   [0, -2, 3, -1, 0],
                   [0, -1, 0, 1, 0],
                   [0, 2, -1, -2, 1]], dtype=dtype)
    g = np.array([[1 / 2, 0],
                  [1 / 2, 1 / 2],
                  [1 / 6, -1 / 6],
                  [1 / 6, 1 / 3],
                  [0, 1]], dtype=dtype)
    at = np.array([[1, 1, 1, 1, 0],
                   [0, 1, -1, 2, 0],
                   [0, 1, 1, 4, 0],
                   [0, 1, -1, 8, 1]], dtype=dtype)
    return bt, g, at


def applies(kernel_shape, strides, dilation, groups: int, dtype) -> bool:
    """Whether :func:`conv3x3_s2_forward` takes this convolution: ungrouped 3x3, stride
    (2, 2), dilation 1, float32, at least :data:`MIN_CHANNELS` input channels and a
    multiple of :data:`LANES` filters (the register-tile product's width)."""
    kh, kw, c_in, filters = kernel_shape
    return ((kh, kw) == (3, 3) and tuple(strides) == (2, 2) and tuple(dilation) == (1, 1)
            and groups == 1 and np.dtype(dtype) == np.float32 and c_in >= MIN_CHANNELS
            and filters > 0 and filters % LANES == 0)


# ================================================================= compiled kernels
def _k_s2_input(x, v, top, left, q0, q1, tiles_w, h_out):
    """``v[p, (q - q0) * tiles_w + t, r*C:(r+1)*C]`` = point ``p`` of the window of tile
    ``t`` on input row ``2i - top + r`` of output row ``q`` (image ``q // h_out``, row ``i``),
    for the output rows ``q0:q1``; zero where the window reads padding."""
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    d = np.empty((9, channels), dtype=x.dtype)
    for q in range(q0, q1):
        n = q // h_out
        i = q - n * h_out
        for r in range(3):
            ih = 2 * i - top + r
            base = r * channels
            for t in range(tiles_w):
                row = (q - q0) * tiles_w + t
                if ih < 0 or ih >= height:
                    for p in range(9):
                        dst = v[p, row]
                        for c in range(channels):
                            dst[base + c] = 0
                    continue
                w0 = 8 * t - left
                src = x[n, ih]                                   # (W, C)
                if w0 < 0 or w0 + 9 > width:                     # copy the window, zeros out
                    for j in range(9):
                        if w0 + j >= 0 and w0 + j < width:
                            for c in range(channels):
                                d[j, c] = src[w0 + j, c]
                        else:
                            for c in range(channels):
                                d[j, c] = 0
                    src = d
                    w0 = 0
                # one loop per point, indexed into src and v themselves: few arrays per
                # loop, so that LLVM vectorises each (nine loads and nine stores in one loop,
                # or a (C,)-view per column, exceed its budget of alias checks: 87 -> 45 us
                # an image of 56x56x64 against the views, one thread)
                for c in range(channels):
                    v[0, row, base + c] = (two * (src[w0, c] - src[w0 + 4, c])
                                           - src[w0 + 2, c] + src[w0 + 6, c])
                for c in range(channels):
                    v[1, row, base + c] = two * src[w0 + 2, c] + src[w0 + 4, c] - src[w0 + 6, c]
                for c in range(channels):
                    v[2, row, base + c] = (three * src[w0 + 4, c] - two * src[w0 + 2, c]
                                           - src[w0 + 6, c])
                for c in range(channels):
                    v[3, row, base + c] = src[w0 + 6, c] - src[w0 + 2, c]
                for c in range(channels):
                    v[4, row, base + c] = (two * (src[w0 + 2, c] - src[w0 + 6, c])
                                           - src[w0 + 4, c] + src[w0 + 8, c])
                for p in range(4):                       # the odd columns as they are
                    for c in range(channels):
                        v[5 + p, row, base + c] = src[w0 + 2 * p + 1, c]


def _k_s2_output(m, bias, y, q0, q1, tiles_w, relu):
    """Output rows ``q0:q1`` of ``y (N, H_out, W_out, F)`` from the products ``m (9, T,
    F)``: ``A^T`` on the five Winograd points plus the four odd-column points, plus
    ``bias``, then ReLU when ``relu``; the last tile clipped at ``W_out``."""
    h_out, w_out, filters = y.shape[1], y.shape[2], y.shape[3]
    out = np.empty((4, filters), dtype=y.dtype)
    for q in range(q0, q1):
        n = q // h_out
        i = q - n * h_out
        dst = y[n, i]                                            # (W_out, F)
        for t in range(tiles_w):
            row = (q - q0) * tiles_w + t
            m0 = m[0, row]
            m1 = m[1, row]
            m2 = m[2, row]
            m3 = m[3, row]
            m4 = m[4, row]
            m5 = m[5, row]
            m6 = m[6, row]
            m7 = m[7, row]
            m8 = m[8, row]
            # one loop per output column (see _k_s2_input), bias and ReLU in the same pass
            if 4 * t + 4 <= w_out:
                d0 = dst[4 * t]
                d1 = dst[4 * t + 1]
                d2 = dst[4 * t + 2]
                d3 = dst[4 * t + 3]
            else:                                    # the last tile, cut at W_out below
                d0 = out[0]
                d1 = out[1]
                d2 = out[2]
                d3 = out[3]
            for f in range(filters):
                d0[f] = m0[f] + m1[f] + m2[f] + m3[f] + m5[f] + bias[f]
            for f in range(filters):
                d1[f] = m1[f] - m2[f] + two * m3[f] + m6[f] + bias[f]
            for f in range(filters):
                d2[f] = m1[f] + m2[f] + four * m3[f] + m7[f] + bias[f]
            for f in range(filters):
                d3[f] = m1[f] - m2[f] + eight * m3[f] + m4[f] + m8[f] + bias[f]
            if 4 * t + 4 > w_out:
                for j in range(w_out - 4 * t):
                    dst[4 * t + j, :] = out[j]
            if relu:
                for j in range(min(4, w_out - 4 * t)):
                    row_out = dst[4 * t + j]
                    for f in range(filters):
                        row_out[f] = max(row_out[f], np.float32(0))


def _k_s2_forward(x, u, bias, zero, y, v, m, top, left, tiles_w, chunk_rows, relu, lo, hi):
    """Output rows ``lo:hi`` (over ``N*H_out``), ``chunk_rows`` at a time: input transform
    into ``v``, nine products into ``m``, output transform into ``y``."""
    h_out = y.shape[1]
    for q0 in range(lo, hi, chunk_rows):
        q1 = min(q0 + chunk_rows, hi)
        rows = (q1 - q0) * tiles_w
        _k_s2_input(x, v, top, left, q0, q1, tiles_w, h_out)
        for p in range(9):
            _k_gemm(v[p], u[min(p, 5)], zero, m[p], False, 0, rows)
        _k_s2_output(m, bias, y, q0, q1, tiles_w, relu)


def _k_s2_dy(dy, y, m, dbias, q0, q1, tiles_w, relu):
    """The adjoint of the output transform for the output rows ``q0:q1``: ``m[p, (q - q0)
    * tiles_w + t]`` = ``sum_j A^T[j, p] g_j`` for the five Winograd points and ``g_j`` for
    the four odd ones, ``g`` the tile's four columns of ``dy (N, H_out, W_out, F)`` (zero
    past ``W_out``; with ``relu``, zero where ``y <= 0``). ``dbias += sum_j g_j``."""
    h_out, w_out, filters = dy.shape[1], dy.shape[2], dy.shape[3]
    g = np.empty((4, filters), dtype=dy.dtype)
    for q in range(q0, q1):
        n = q // h_out
        i = q - n * h_out
        src = dy[n, i]                                           # (W_out, F)
        ysrc = y[n, i]
        for t in range(tiles_w):
            row = (q - q0) * tiles_w + t
            cols = min(4, w_out - 4 * t)
            if cols == 4 and not relu:
                g0 = src[4 * t]
                g1 = src[4 * t + 1]
                g2 = src[4 * t + 2]
                g3 = src[4 * t + 3]
            else:                             # masked by the ReLU, or the cut last tile
                for j in range(4):
                    gj = g[j]
                    if j < cols:
                        sj = src[4 * t + j]
                        yj = ysrc[4 * t + j]
                        if relu:
                            for f in range(filters):
                                gj[f] = sj[f] if yj[f] > 0 else 0
                        else:
                            for f in range(filters):
                                gj[f] = sj[f]
                    else:
                        for f in range(filters):
                            gj[f] = 0
                g0 = g[0]
                g1 = g[1]
                g2 = g[2]
                g3 = g[3]
            m1 = m[1, row]
            for f in range(filters):
                m1[f] = g0[f] + g1[f] + g2[f] + g3[f]
                dbias[f] += m1[f]
            m2 = m[2, row]
            for f in range(filters):
                m2[f] = g0[f] - g1[f] + g2[f] - g3[f]
            m3 = m[3, row]
            for f in range(filters):
                m3[f] = g0[f] + two * g1[f] + four * g2[f] + eight * g3[f]
            for p, gp in ((0, g0), (4, g3), (5, g0), (6, g1), (7, g2), (8, g3)):
                mp = m[p, row]
                for f in range(filters):
                    mp[f] = gp[f]


def _k_s2_input_adjoint(v, dx, side, top, left, q0, q1, lo, tiles_w, h_out):
    """The adjoint of :func:`_k_s2_input` for the output rows ``q0:q1`` of a thread whose
    range starts at ``lo``: each tile's nine columns of ``v[:, row, r*C:(r+1)*C]`` go back
    through ``B`` onto the nine input columns of its window on input row ``2i - top + r``.

    An input row is written (not added to) by the first output row that reads it; the
    column shared by neighbouring tiles and the row shared by neighbouring output rows
    (``r = 2`` of row ``i``, ``r = 0`` of row ``i + 1``) are added the second time. The
    shared row at the start of a thread's range goes to ``side (W, C)`` instead (the
    previous thread writes it too); the caller adds it. Columns in the padding go to a
    scratch row each; rows in the padding are skipped."""
    height, width, channels = dx.shape[1], dx.shape[2], dx.shape[3]
    junk = np.empty((9, channels), dtype=dx.dtype)
    for q in range(q0, q1):
        n = q // h_out
        i = q - n * h_out
        for r in range(3):
            ih = 2 * i - top + r
            if ih < 0 or ih >= height:
                continue
            base = r * channels
            shared = r == 0 and i > 0              # row written by output row i - 1 already
            if shared and q == lo:
                dst = side
                add_row = False
            else:
                dst = dx[n, ih]                                  # (W, C)
                add_row = shared
            for t in range(tiles_w):
                row = (q - q0) * tiles_w + t
                a0 = v[0, row, base:base + channels]
                a1 = v[1, row, base:base + channels]
                a2 = v[2, row, base:base + channels]
                a3 = v[3, row, base:base + channels]
                a4 = v[4, row, base:base + channels]
                a5 = v[5, row, base:base + channels]
                a6 = v[6, row, base:base + channels]
                a7 = v[7, row, base:base + channels]
                a8 = v[8, row, base:base + channels]
                w0 = 8 * t - left
                c0 = dst[w0] if w0 >= 0 and w0 < width else junk[0]
                c1 = dst[w0 + 1] if w0 + 1 >= 0 and w0 + 1 < width else junk[1]
                c2 = dst[w0 + 2] if w0 + 2 >= 0 and w0 + 2 < width else junk[2]
                c3 = dst[w0 + 3] if w0 + 3 >= 0 and w0 + 3 < width else junk[3]
                c4 = dst[w0 + 4] if w0 + 4 >= 0 and w0 + 4 < width else junk[4]
                c5 = dst[w0 + 5] if w0 + 5 >= 0 and w0 + 5 < width else junk[5]
                c6 = dst[w0 + 6] if w0 + 6 >= 0 and w0 + 6 < width else junk[6]
                c7 = dst[w0 + 7] if w0 + 7 >= 0 and w0 + 7 < width else junk[7]
                c8 = dst[w0 + 8] if w0 + 8 >= 0 and w0 + 8 < width else junk[8]
                # one loop per column (see _k_s2_input)
                if add_row or t > 0:
                    for c in range(channels):
                        c0[c] += two * a0[c]
                else:
                    for c in range(channels):
                        c0[c] = two * a0[c]
                if add_row:
                    for c in range(channels):
                        c1[c] += a5[c]
                    for c in range(channels):
                        c2[c] += two * (a1[c] + a4[c] - a2[c]) - a0[c] - a3[c]
                    for c in range(channels):
                        c3[c] += a6[c]
                    for c in range(channels):
                        c4[c] += a1[c] + three * a2[c] - two * a0[c] - a4[c]
                    for c in range(channels):
                        c5[c] += a7[c]
                    for c in range(channels):
                        c6[c] += a0[c] - a1[c] - a2[c] + a3[c] - two * a4[c]
                    for c in range(channels):
                        c7[c] += a8[c]
                    for c in range(channels):
                        c8[c] += a4[c]
                else:
                    for c in range(channels):
                        c1[c] = a5[c]
                    for c in range(channels):
                        c2[c] = two * (a1[c] + a4[c] - a2[c]) - a0[c] - a3[c]
                    for c in range(channels):
                        c3[c] = a6[c]
                    for c in range(channels):
                        c4[c] = a1[c] + three * a2[c] - two * a0[c] - a4[c]
                    for c in range(channels):
                        c5[c] = a7[c]
                    for c in range(channels):
                        c6[c] = a0[c] - a1[c] - a2[c] + a3[c] - two * a4[c]
                    for c in range(channels):
                        c7[c] = a8[c]
                    for c in range(channels):
                        c8[c] = a4[c]


def _k_s2_backward(x, dy, y, ut, zero, dx, side, du, dbias, v, m, top, left, tiles_w,
                   chunk_rows, relu, with_input, lo, hi):
    """Gradients for the output rows ``lo:hi`` (over ``N*H_out``), ``chunk_rows`` at a
    time: ``dy`` through the output transform's adjoint into ``m``, the input transform
    into ``v`` and ``du[min(p, 5)] += v[p]^T @ m[p]``; with ``with_input`` then ``v[p] =
    m[p] @ ut[min(p, 5)]`` and the input transform's adjoint into ``dx`` (see
    :func:`_k_s2_input_adjoint` for ``side``)."""
    h_out = dy.shape[1]
    for q0 in range(lo, hi, chunk_rows):
        q1 = min(q0 + chunk_rows, hi)
        rows = (q1 - q0) * tiles_w
        _k_s2_dy(dy, y, m, dbias, q0, q1, tiles_w, relu)
        _k_s2_input(x, v, top, left, q0, q1, tiles_w, h_out)
        _k_point_products_tn(v, m, du, rows)       # du[min(p, 5)] += v[p]^T @ m[p]
        if with_input:
            for p in range(9):
                _k_gemm(m[p], ut[min(p, 5)], zero, v[p], False, 0, rows)
            _k_s2_input_adjoint(v, dx, side, top, left, q0, q1, lo, tiles_w, h_out)


# ============================================================================ public API
def _k_s2_kernel_transform(k, u, transposed):
    """``u (6, 3*C_in, F)`` from ``k (3, 3, C_in, F)``: ``u[p] = G[p, 0] k[:, 0] + G[p, 1]
    k[:, 2]`` for the five Winograd points (in float64, then rounded), ``u[5] = k[:, 1]``
    for the four odd columns (one matrix serves all four); kernel rows and channels
    flattened as ``V``'s columns. With ``transposed``, ``u (6, F, 3*C_in)`` gets each matrix
    transposed (the input gradient's products)."""
    channels, filters = k.shape[2], k.shape[3]
    for r in range(3):
        for c in range(channels):
            row = r * channels + c
            for f in range(filters):
                i, j = (f, row) if transposed else (row, f)
                k0 = np.float64(k[r, 0, c, f])
                k2 = np.float64(k[r, 2, c, f])
                u[0, i, j] = k0 / 2
                u[1, i, j] = (k0 + k2) / 2
                u[2, i, j] = (k0 - k2) / 6
                u[3, i, j] = (k0 + 2 * k2) / 6
                u[4, i, j] = k2
                u[5, i, j] = k[r, 1, c, f]


def _k_s2_kernel_grad(du, dk):
    """``dk (3, 3, C_in, F)`` from the threads' partial sums ``du (P, 6, 3*C_in, F)`` of
    ``V[p]^T @ M[p]``: the adjoint of the kernel transform, ``G^T`` on the five Winograd
    points for the kernel columns 0 and 2, the odd points' sum for column 1 (in float64,
    then rounded)."""
    parts, channels, filters = du.shape[0], dk.shape[2], dk.shape[3]
    for r in range(3):
        for c in range(channels):
            row = r * channels + c
            for f in range(filters):
                s0 = 0.0
                s1 = 0.0
                s2 = 0.0
                s3 = 0.0
                s4 = 0.0
                s5 = 0.0
                for q in range(parts):
                    s0 += du[q, 0, row, f]
                    s1 += du[q, 1, row, f]
                    s2 += du[q, 2, row, f]
                    s3 += du[q, 3, row, f]
                    s4 += du[q, 4, row, f]
                    s5 += du[q, 5, row, f]
                dk[r, 0, c, f] = (s0 + s1) / 2 + (s2 + s3) / 6
                dk[r, 1, c, f] = s5
                dk[r, 2, c, f] = s1 / 2 - s2 / 6 + s3 / 3 + s4


def _workspace(rows: int, c_in: int, filters: int):
    """This thread's reusable ``V (9, rows, 3*C_in)`` and ``M (9, rows, F)`` buffers."""
    key = (rows, c_in, filters)
    cached = getattr(_local, "buffers", None)
    if cached is None or cached[0] != key:
        cached = (key, np.empty((POINTS, rows, 3 * c_in), np.float32),
                  np.empty((POINTS, rows, filters), np.float32))
        _local.buffers = cached
    return cached[1], cached[2]


def _checked(where: str, x, kernel, pads):
    """``(x, kernel, (top, left), (H_out, W_out))`` for the public functions, after
    checking ``x (N, H, W, C_in)`` float32, ``kernel (3, 3, C_in, F)`` with ``F`` a
    multiple of :data:`LANES` and zero ``pads`` that leave an output."""
    x = np.ascontiguousarray(x)
    kernel = np.asarray(kernel)
    if x.ndim != 4 or x.dtype != np.float32:
        raise ShapeError(f"{where}: expected a float32 (batch, height, width, channels) "
                         f"input, got {x.dtype} {x.shape}")
    if kernel.ndim != 4 or kernel.shape[:3] != (3, 3, x.shape[3]) \
            or kernel.shape[3] % LANES or kernel.shape[3] == 0:
        raise ShapeError(f"{where}: kernel must be (3, 3, {x.shape[3]}, F) with F a multiple "
                         f"of {LANES} for input shape {x.shape}, got {kernel.shape}")
    top, bottom, left, right = _pads(where, pads)
    h_out = (x.shape[1] + top + bottom - 3) // 2 + 1
    w_out = (x.shape[2] + left + right - 3) // 2 + 1
    if h_out <= 0 or w_out <= 0:
        raise ShapeError(f"{where}: output size would be {h_out}x{w_out} for input shape "
                         f"{x.shape} and pads {pads!r}")
    return x, kernel, (top, left), (h_out, w_out)


def conv3x3_s2_forward(x: np.ndarray, kernel: np.ndarray, bias, pads,
                       relu: bool = False) -> np.ndarray:
    """Ungrouped 3x3 convolution, stride 2, dilation 1, float32, by F(4, 2) along the width.

    ``x (N, H, W, C_in)``, ``kernel (3, 3, C_in, F)`` (``F`` a multiple of
    :data:`LANES`), ``bias (F,)`` or None, zero ``pads ((top, bottom), (left, right))`` ->
    ``y (N, H_out, W_out, F)`` with ``H_out = (H + top + bottom - 3) // 2 + 1`` (and so for
    ``W_out``); ``relu=True`` gives ``max(y, 0)``. The same numbers as the direct sum up to
    rounding (see the module docstring).
    """
    where = "conv3x3_s2_forward"
    x, kernel, (top, left), (h_out, w_out) = _checked(where, x, kernel, pads)
    n_batch, _, _, c_in = x.shape
    filters = kernel.shape[3]
    b = np.zeros(filters, np.float32) if bias is None else np.ascontiguousarray(bias,
                                                                                np.float32)
    if b.shape != (filters,):
        raise ShapeError(f"{where}: bias must have shape ({filters},), got {b.shape}")
    driver, kernel_transform, _ = _compiled(where)
    u = np.empty((6, 3 * c_in, filters), np.float32)
    kernel_transform(np.ascontiguousarray(kernel, np.float32), u, False)
    zero = np.zeros(filters, np.float32)
    tiles_w = -(-w_out // TILE)
    y = np.empty((n_batch, h_out, w_out, filters), np.float32)
    chunk_rows = _chunk_rows(tiles_w, c_in, filters)

    def work(lo, hi):
        rows = min(chunk_rows, hi - lo)
        v, m = _workspace(rows * tiles_w, c_in, filters)
        driver(x, u, b, zero, y, v, m, top, left, tiles_w, rows, bool(relu), lo, hi)

    _threads.run_chunks(work, n_batch * h_out, single_blas=False)
    return y


def backward_applies(kernel_shape, strides, dilation, groups: int, dtype) -> bool:
    """Whether :func:`conv3x3_s2_backward` takes this convolution's gradients: as
    :func:`applies`, with the input channels a multiple of :data:`LANES` (``3*C_in`` is the
    width of the input gradient's products)."""
    return applies(kernel_shape, strides, dilation, groups, dtype) \
        and kernel_shape[2] % LANES == 0


def conv3x3_s2_backward(dy: np.ndarray, x: np.ndarray, kernel: np.ndarray, pads, y=None,
                        input_grad: bool = True):
    """Gradients of :func:`conv3x3_s2_forward` by the adjoints of its transforms.

    ``dy (N, H_out, W_out, F)``, ``x (N, H, W, C_in)`` and ``kernel (3, 3, C_in, F)``
    float32 (``C_in`` and ``F`` multiples of :data:`LANES`), zero ``pads`` as for the
    forward; ``y`` the forward's output when it had ``relu=True`` (``dy`` counts only where
    ``y > 0``). Returns ``(dx (N, H, W, C_in) or None, dkernel (3, 3, C_in, F), dbias
    (F,))``. With ``g`` the four columns of ``dy`` of a tile and ``M = [A g ; g]`` (the
    output transform's adjoint, nine points)::

        dkernel = G^T-adjoint of  sum over tiles of  V[p]^T @ M[p]     (V: the forward's)
        dx      = B-adjoint of  M[p] @ U[p]^T,  added up over overlapping windows

    nine products per 4 output columns for each gradient instead of 12; accuracy as the
    forward's (the module docstring).
    """
    where = "conv3x3_s2_backward"
    x, kernel, (top, left), (h_out, w_out) = _checked(where, x, kernel, pads)
    n_batch, height, width, c_in = x.shape
    filters = kernel.shape[3]
    if c_in % LANES:
        raise ShapeError(f"{where}: input channels must be a multiple of {LANES}, got input "
                         f"shape {x.shape}")
    dy = np.asarray(dy)
    if dy.shape != (n_batch, h_out, w_out, filters) or dy.dtype != np.float32:
        raise ShapeError(f"{where}: dy must be float32 {(n_batch, h_out, w_out, filters)} "
                         f"for input shape {x.shape}, got {dy.dtype} {dy.shape}")
    relu = y is not None
    if relu:
        y = np.ascontiguousarray(y)
        if y.shape != dy.shape or y.dtype != np.float32:
            raise ShapeError(f"{where}: y must be float32 {dy.shape} like dy, got "
                             f"{y.dtype} {y.shape}")
    _, kernel_transform, kernel_grad = _compiled(where)
    driver = _compiled_backward(where)
    dy = np.ascontiguousarray(dy)
    tiles_w = -(-w_out // TILE)
    if input_grad:
        ut = np.empty((6, filters, 3 * c_in), np.float32)
        kernel_transform(np.ascontiguousarray(kernel, np.float32), ut, True)
        dx = np.empty(x.shape, np.float32)
    else:
        ut = np.empty((6, 1, 3 * c_in), np.float32)         # unused
        dx = np.empty((1, 1, 1, c_in), np.float32)
    zero = np.zeros(3 * c_in, np.float32)
    total = n_batch * h_out
    chunks, slot = _chunk_slots(total)
    du = np.zeros((len(chunks), 6, 3 * c_in, filters), np.float32)
    dbias = np.zeros((len(chunks), filters), np.float64)
    sides = np.zeros((len(chunks), width, c_in), np.float32)
    chunk_rows = _chunk_rows(tiles_w, c_in, filters)

    def work(lo, hi):
        q = slot.get(lo, 0)
        rows = min(chunk_rows, hi - lo)
        v, m = _workspace(rows * tiles_w, c_in, filters)
        driver(x, dy, y if relu else dy, ut, zero, dx, sides[q], du[q], dbias[q], v, m,
               top, left, tiles_w, rows, relu, bool(input_grad), lo, hi)

    _threads.run_chunks(work, total, single_blas=False)
    dkernel = np.empty(kernel.shape, np.float32)
    kernel_grad(du, dkernel)
    dbias = dbias.sum(axis=0).astype(np.float32)
    if not input_grad:
        return None, dkernel, dbias
    for q, (lo, _) in enumerate(chunks):         # rows shared with the previous thread
        n, i = divmod(lo, h_out)
        if i > 0 and 0 <= 2 * i - top < height:
            dx[n, 2 * i - top] += sides[q]
    last_row = 2 * h_out - top                  # the last input row a window reads
    if last_row + 1 < height:
        dx[:, last_row + 1:] = 0
    last_col = 8 * tiles_w - left               # the last input column a tile reads
    if last_col + 1 < width:
        dx[:, :min(last_row + 1, height), last_col + 1:] = 0
    return dx, dkernel, dbias


def _chunk_rows(tiles_w: int, c_in: int, filters: int) -> int:
    """Output rows per chunk: ``V`` and ``M`` within :data:`CHUNK_BYTES`, and whole 8-row
    register tiles where the tile count allows (a chunk's last rows otherwise take the
    product's slower one-row tail)."""
    row_bytes = POINTS * tiles_w * (3 * c_in + filters) * 4
    step = 8 // math.gcd(tiles_w, 8)
    return max(step, CHUNK_BYTES // row_bytes // step * step)


def _compiled(where: str):
    """The compiled forward driver, kernel transform and the kernel gradient's last step;
    the driver's products by :func:`convkit.fast.kernels.tiles.gemm`."""
    gemm = tiles.gemm(where)
    return (jit(_k_s2_forward, where, fastmath=REGISTER_FASTMATH, slp=True,
                helpers=(_k_s2_input, _k_s2_output, gemm)),
            jit(_k_s2_kernel_transform, where, fastmath=False),
            jit(_k_s2_kernel_grad, where, fastmath=False))


def _compiled_backward(where: str):
    """The compiled backward driver (the products as in :func:`_compiled`)."""
    gemm = tiles.gemm(where)
    grads = winograd.point_products_tn(where)
    return jit(_k_s2_backward, where, fastmath=REGISTER_FASTMATH, slp=True,
               helpers=(_k_s2_dy, _k_s2_input, _k_s2_input_adjoint, gemm, grads))
