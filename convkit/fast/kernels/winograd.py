"""Winograd convolution F(4x4, 3x3) for stride-1 3x3 convolutions, and the companions of its
backward pass.

A 3x3 cross-correlation over a 6x6 input tile ``d`` gives a 4x4 output tile; Winograd's
minimal filtering algorithm computes it with 36 multiplies per (input, output) channel pair
instead of 144::

    Y = A^T [ (G g G^T) * (B^T d B) ] A          (* elementwise over the 6x6 points)

    U = G g G^T      kernel transform   (36, Cin, Cout)     once per call
    V = B^T d B      input transform    (36, T, Cin)        T = number of 4x4 output tiles
    M[p] = V[p] @ U[p]                  (36, T, Cout)       36 products, one per point
    Y = A^T M A      output transform   (N, H_out, W_out, Cout), bias (and ReLU) fused in

with the interpolation points 0, 1, -1, 2, -2 and infinity. The tile transforms are compiled
(numba, serial kernels run on one range of tile rows per thread, vectorised over
channels, one array written per loop; each thread multiplies its own tiles); the products
are NumPy's batched matmul on a one-thread BLAS, or the register-tile product where numba
has 512-bit vectors and the BLAS does not (:func:`_point_products`). Shapes, with zero pads
``((top, bottom), (left, right))``::

    x (N, H, W, Cin), kernel (3, 3, Cin, Cout), bias (Cout,) or None
    y (N, H_out, W_out, Cout),  H_out = H + top + bottom - 2,  W_out = W + left + right - 2

The input gradient of a stride-1 3x3 convolution is the same computation: a 3x3 correlation
of ``dy`` padded by ``(2 - top, 2 - bottom), (2 - left, 2 - right)`` with the kernel rotated
by 180 degrees and its in/out channels swapped (:func:`conv3x3_winograd_input_grad`). The
kernel gradient of any stride-1, dilation-1 convolution is a sum of ``kh*kw`` large GEMMs
over shifted flat views of the padded input (:func:`conv_stride1_kernel_grad`), with no
im2col copy.

Accuracy: F(4x4, 3x3) amplifies float32 rounding (transform entries up to 8 and 1/24). With
unit-variance inputs and Glorot-uniform kernels, at 8x56x56x64 -> 64, the largest error
relative to ``max |y|`` measured 6.8e-6 for the forward, 7.5e-6 for the input gradient and
6.0e-6 for the kernel gradient (an im2col GEMM in float32: 5.8e-7); the tests bound it by
1e-5. float64 inputs give about 1e-15.

>>> import numpy as np
>>> x = np.ones((1, 4, 4, 1), np.float32); k = np.ones((3, 3, 1, 1), np.float32)
>>> conv3x3_winograd_forward(x, k, None, ((1, 1), (1, 1)))[0, :, :, 0]   # doctest: +SKIP
array([[4., 6., 6., 4.],
       [6., 9., 9., 6.],
       [6., 9., 9., 6.],
       [4., 6., 6., 4.]], dtype=float32)
"""
from __future__ import annotations

import threading

import numpy as np

from ...errors import ShapeError
from ..runtime import backend
from ..runtime import threads as _threads
from ..runtime.backend import _run
from .checks import _pads
from . import tiles
from .tiles import _k_gemm  # noqa: F401  (its compiled form, tiles.gemm, replaces it)

__all__ = ["available", "conv3x3_winograd_forward", "conv3x3_winograd_input_grad",
           "conv3x3_winograd_kernel_grad", "conv_stride1_kernel_grad", "winograd_matrices"]


TILE = 4                         # output tile size m of F(m x m, 3 x 3)
POINTS = (TILE + 2) ** 2         # 36 transform points
# Bytes of transformed input (or output) a thread holds at once: the tile rows of a chunk
# are transformed, multiplied and transformed back while they are still in cache.
CHUNK_BYTES = 2 * 2 ** 20

_local = threading.local()


def _workspace(tiles: int, c_in: int, c_out: int, dtype):
    """This thread's reusable ``(36, T, c_in)`` and ``(36, T, c_out)`` buffers, ``T`` at least
    ``tiles`` (fresh memory would cost a page fault per 4 KiB on every call)."""
    key = (c_in, c_out, np.dtype(dtype).str)
    cached = getattr(_local, "buffers", None)
    if cached is None or cached[0] != key or cached[1].shape[1] < tiles:
        cached = (key, np.empty((POINTS, tiles, c_in), dtype),
                  np.empty((POINTS, tiles, c_out), dtype))
        _local.buffers = cached
    return cached[1], cached[2]       # (36, at least tiles, ...): callers take [:, :tiles]


def available() -> bool:
    """True when the compiled tile transforms can run (see :func:`convkit.fast.available`)."""
    return backend.available()


def winograd_matrices(dtype=np.float64):
    """``(B^T (6, 6), G (6, 3), A^T (4, 6))`` of F(4x4, 3x3) for the points 0, +-1, +-2, inf."""
    bt = np.array([[4, 0, -5, 0, 1, 0],
                   [0, -4, -4, 1, 1, 0],
                   [0, 4, -4, -1, 1, 0],
                   [0, -2, -1, 2, 1, 0],
                   [0, 2, -1, -2, 1, 0],
                   [0, 4, 0, -5, 0, 1]], dtype=dtype)
    g = np.array([[1 / 4, 0, 0],
                  [-1 / 6, -1 / 6, -1 / 6],
                  [-1 / 6, 1 / 6, -1 / 6],
                  [1 / 24, 1 / 12, 1 / 6],
                  [1 / 24, -1 / 12, 1 / 6],
                  [0, 0, 1]], dtype=dtype)
    at = np.array([[1, 1, 1, 1, 1, 0],
                   [0, 1, -1, 2, -2, 0],
                   [0, 1, 1, 4, 4, 0],
                   [0, 1, -1, 8, -8, 1]], dtype=dtype)
    return bt, g, at


# ================================================================= compiled tile transforms
# The transforms' loops run along the channels, each loop writing one array at fixed
# indices: a loop storing to several planes of a large array at once (v[6a + k, t] for the
# six k), or reading through (C,)-views of rows, was left scalar by LLVM (measured, one
# image of 56x56x64: the input transform 405 -> 126 us, the output transform 273 -> 82 us
# for this form against per-row views with six outputs per loop).
def _k_input_transform(x, v, r0, top, left, tiles_h, tiles_w):
    """``v[p, t, c]`` = (B^T d B)[p // 6, p % 6] of 6x6 input tiles ``d``, for the tile rows
    ``r0 ...`` (row ``r`` is tile row ``r % tiles_h`` of image ``r // tiles_h``; ``v`` holds
    ``v.shape[1] // tiles_w`` of them). Cells outside ``x`` are zero padding."""
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    n_rows = v.shape[1] // tiles_w
    d = np.empty((6, 6, channels), dtype=x.dtype)       # an edge tile, zero-padded
    tmp = np.empty((6, 6, channels), dtype=x.dtype)     # B^T d
    for rr in range(n_rows):
        n = (r0 + rr) // tiles_h
        ty = (r0 + rr) - n * tiles_h
        ih0 = ty * 4 - top
        image = x[n]
        for tx in range(tiles_w):
            t = rr * tiles_w + tx
            iw0 = tx * 4 - left
            if ih0 >= 0 and ih0 + 6 <= height and iw0 >= 0 and iw0 + 6 <= width:
                _bt_cols(image, ih0, iw0, tmp)           # interior tile: read x directly
            else:
                for a in range(6):
                    ih = ih0 + a
                    for b in range(6):
                        iw = iw0 + b
                        if ih >= 0 and ih < height and iw >= 0 and iw < width:
                            for c in range(channels):
                                d[a, b, c] = image[ih, iw, c]
                        else:
                            for c in range(channels):
                                d[a, b, c] = 0
                _bt_cols(d, 0, 0, tmp)
            _bt_points(tmp, v, t)


def _bt_cols(src, i0, j0, tmp):
    """``tmp[:, b] = B^T src[i0:i0+6, j0+b]`` for the six columns ``b`` of a 6x6 tile of
    ``src`` ``(H, W, C)`` (B^T of F(4x4, 3x3))."""
    channels = tmp.shape[2]
    for b in range(6):
        j = j0 + b
        for c in range(channels):
            a0 = src[i0, j, c]
            a1 = src[i0 + 1, j, c]
            a2 = src[i0 + 2, j, c]
            a3 = src[i0 + 3, j, c]
            a4 = src[i0 + 4, j, c]
            tmp[0, b, c] = 4 * a0 - 5 * a2 + a4
            tmp[1, b, c] = -4 * (a1 + a2) + a3 + a4
            tmp[2, b, c] = 4 * (a1 - a2) - a3 + a4
            tmp[3, b, c] = 2 * (a3 - a1) - a2 + a4
            tmp[4, b, c] = 2 * (a1 - a3) - a2 + a4
            tmp[5, b, c] = 4 * a1 - 5 * a3 + src[i0 + 5, j, c]


def _bt_points(tmp, v, t):
    """``v[6a + k, t] = (tmp[a] B)[k]``, the 36 points of tile ``t``, one loop per point."""
    channels = tmp.shape[2]
    for a in range(6):
        p = 6 * a
        for c in range(channels):
            v[p, t, c] = 4 * tmp[a, 0, c] - 5 * tmp[a, 2, c] + tmp[a, 4, c]
        for c in range(channels):
            v[p + 1, t, c] = -4 * (tmp[a, 1, c] + tmp[a, 2, c]) + tmp[a, 3, c] + tmp[a, 4, c]
        for c in range(channels):
            v[p + 2, t, c] = 4 * (tmp[a, 1, c] - tmp[a, 2, c]) - tmp[a, 3, c] + tmp[a, 4, c]
        for c in range(channels):
            v[p + 3, t, c] = 2 * (tmp[a, 3, c] - tmp[a, 1, c]) - tmp[a, 2, c] + tmp[a, 4, c]
        for c in range(channels):
            v[p + 4, t, c] = 2 * (tmp[a, 1, c] - tmp[a, 3, c]) - tmp[a, 2, c] + tmp[a, 4, c]
        for c in range(channels):
            v[p + 5, t, c] = 4 * tmp[a, 1, c] - 5 * tmp[a, 3, c] + tmp[a, 5, c]


def _k_output_transform(m, bias, y, r0, tiles_h, tiles_w, relu):
    """``y`` tiles = A^T m A + bias (then ReLU) for the tile rows ``r0 ...`` (as in
    :func:`_k_input_transform`), clipped at the bottom/right edges."""
    h_out, w_out, c_out = y.shape[1], y.shape[2], y.shape[3]
    n_rows = m.shape[1] // tiles_w
    tmp = np.empty((4, 6, c_out), dtype=y.dtype)        # A^T m
    for rr in range(n_rows):
        n = (r0 + rr) // tiles_h
        ty = (r0 + rr) - n * tiles_h
        for tx in range(tiles_w):
            t = rr * tiles_w + tx
            _at_cols(m, t, tmp)
            for i in range(min(4, h_out - ty * 4)):
                _at_row(tmp, i, bias, y, n, ty * 4 + i, tx * 4, min(4, w_out - tx * 4), relu)


def _at_cols(m, t, tmp):
    """``tmp[:, b] = A^T m[b::6, t]`` for the six columns ``b`` of tile ``t``'s products
    (A^T of F(4x4, 3x3))."""
    channels = tmp.shape[2]
    for b in range(6):
        for c in range(channels):
            a1 = m[6 + b, t, c]
            a2 = m[12 + b, t, c]
            a3 = m[18 + b, t, c]
            a4 = m[24 + b, t, c]
            s12 = a1 + a2
            d12 = a1 - a2
            s34 = a3 + a4
            d34 = a3 - a4
            tmp[0, b, c] = m[b, t, c] + s12 + s34
            tmp[1, b, c] = d12 + 2 * d34
            tmp[2, b, c] = s12 + 4 * s34
            tmp[3, b, c] = d12 + 8 * d34 + m[30 + b, t, c]


def _at_row(tmp, i, bias, y, n, oh, ow0, count, relu):
    """Pixels ``ow0 : ow0 + count`` of output row ``oh``: ``(tmp[i] A)[j] + bias``, then the
    ReLU; one loop per pixel."""
    channels = tmp.shape[2]
    for j in range(count):
        ow = ow0 + j
        if j == 0:
            for c in range(channels):
                y[n, oh, ow, c] = (tmp[i, 0, c] + (tmp[i, 1, c] + tmp[i, 2, c])
                                   + (tmp[i, 3, c] + tmp[i, 4, c]) + bias[c])
        elif j == 1:
            for c in range(channels):
                y[n, oh, ow, c] = (tmp[i, 1, c] - tmp[i, 2, c]
                                   + 2 * (tmp[i, 3, c] - tmp[i, 4, c]) + bias[c])
        elif j == 2:
            for c in range(channels):
                y[n, oh, ow, c] = (tmp[i, 1, c] + tmp[i, 2, c]
                                   + 4 * (tmp[i, 3, c] + tmp[i, 4, c]) + bias[c])
        else:
            for c in range(channels):
                y[n, oh, ow, c] = (tmp[i, 1, c] - tmp[i, 2, c]
                                   + 8 * (tmp[i, 3, c] - tmp[i, 4, c]) + tmp[i, 5, c]
                                   + bias[c])
        if relu:
            for c in range(channels):
                y[n, oh, ow, c] = max(y[n, oh, ow, c], 0)


def _k_output_adjoint(dy, dm, r0, tiles_h, tiles_w):
    """``dm[p, t, c]`` = (A dY A^T)[p // 6, p % 6] of the 4x4 tiles ``dY`` of ``dy`` (zero past
    its edges), for the tile rows ``r0 ...`` as in :func:`_k_input_transform`: the adjoint
    of the output transform, which the kernel gradient needs."""
    h_out, w_out, c_out = dy.shape[1], dy.shape[2], dy.shape[3]
    n_rows = dm.shape[1] // tiles_w
    g = np.empty((4, 4, c_out), dtype=dy.dtype)          # the tile, zero past the edges
    tmp = np.empty((6, 4, c_out), dtype=dy.dtype)        # A g
    for rr in range(n_rows):
        n = (r0 + rr) // tiles_h
        ty = (r0 + rr) - n * tiles_h
        for tx in range(tiles_w):
            t = rr * tiles_w + tx
            for i in range(4):
                oh = ty * 4 + i
                for j in range(4):
                    ow = tx * 4 + j
                    if oh < h_out and ow < w_out:
                        for c in range(c_out):
                            g[i, j, c] = dy[n, oh, ow, c]
                    else:
                        for c in range(c_out):
                            g[i, j, c] = 0
            _a_cols(g, tmp)
            _a_points(tmp, dm, t)


def _a_cols(g, tmp):
    """``tmp[:, j] = A g[:, j]`` for the four columns of a 4x4 tile (A = (A^T)^T, 6x4)."""
    channels = g.shape[2]
    for j in range(4):
        for c in range(channels):
            a0 = g[0, j, c]
            a1 = g[1, j, c]
            a2 = g[2, j, c]
            a3 = g[3, j, c]
            s02 = a0 + a2
            s13 = a1 + a3
            t02 = a0 + 4 * a2
            t13 = 2 * a1 + 8 * a3
            tmp[0, j, c] = a0
            tmp[1, j, c] = s02 + s13
            tmp[2, j, c] = s02 - s13
            tmp[3, j, c] = t02 + t13
            tmp[4, j, c] = t02 - t13
            tmp[5, j, c] = a3


def _a_points(tmp, dm, t):
    """``dm[6a + k, t] = (tmp[a] A^T)[k]``, the 36 points of tile ``t``, one loop per point."""
    channels = tmp.shape[2]
    for a in range(6):
        p = 6 * a
        for c in range(channels):
            dm[p, t, c] = tmp[a, 0, c]
        for c in range(channels):
            dm[p + 1, t, c] = (tmp[a, 0, c] + tmp[a, 2, c]) + (tmp[a, 1, c] + tmp[a, 3, c])
        for c in range(channels):
            dm[p + 2, t, c] = (tmp[a, 0, c] + tmp[a, 2, c]) - (tmp[a, 1, c] + tmp[a, 3, c])
        for c in range(channels):
            dm[p + 3, t, c] = ((tmp[a, 0, c] + 4 * tmp[a, 2, c])
                               + (2 * tmp[a, 1, c] + 8 * tmp[a, 3, c]))
        for c in range(channels):
            dm[p + 4, t, c] = ((tmp[a, 0, c] + 4 * tmp[a, 2, c])
                               - (2 * tmp[a, 1, c] + 8 * tmp[a, 3, c]))
        for c in range(channels):
            dm[p + 5, t, c] = tmp[a, 3, c]


def _k_pad_copy(x, xp, top, left, lo, hi):
    """Rows ``lo:hi`` (over ``N*Hp``) of ``xp``: NHWC ``x`` placed at ``(top, left)``, zeros
    elsewhere."""
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    hp, wp = xp.shape[1], xp.shape[2]
    for r in range(lo, hi):
        n = r // hp
        row = r - n * hp
        ih = row - top
        for col in range(wp):
            iw = col - left
            dst = xp[n, row, col]
            if ih >= 0 and ih < height and iw >= 0 and iw < width:
                src = x[n, ih, iw]
                for c in range(channels):
                    dst[c] = src[c]
            else:
                for c in range(channels):
                    dst[c] = 0


# ============================================================================ public API
def _check_input(where, x, kernel):
    x = np.asarray(x)
    if x.ndim != 4 or x.dtype not in (np.float32, np.float64):
        raise ShapeError(f"{where}: expected a float32/float64 (batch, height, width, channels) "
                         f"input, got {x.dtype} {x.shape}")
    kernel = np.asarray(kernel)
    if kernel.shape[:3] != (3, 3, x.shape[3]) or kernel.ndim != 4:
        raise ShapeError(f"{where}: kernel must be (3, 3, {x.shape[3]}, filters) for input "
                         f"shape {x.shape}, got {kernel.shape}")
    return np.ascontiguousarray(x), kernel


_G64 = winograd_matrices()[1]      # (6, 3)


def _sandwich(left, core, right_t):
    """``out[a, b] = sum_{i, j} left[a, i] * core[i, j] * right_t[b, j]`` over the first two
    axes of ``core (I, J, C, F)``: two plain matrix products (``einsum`` with
    ``optimize=True`` spends longer finding its path than computing on these sizes)."""
    i, j, c, f = core.shape
    t = (left @ core.reshape(i, j * c * f)).reshape(left.shape[0], j, c * f)  # (A, J, C*F)
    out = right_t @ t                                      # (A, B, C*F): right_t (B, J)
    return out.reshape(left.shape[0], right_t.shape[0], c, f)


def _kernel_transform(kernel, dtype):
    """``U[p] = (G g G^T)[p // 6, p % 6]``: ``(36, Cin, Cout)``, computed in float64."""
    u = _sandwich(_G64, kernel.astype(np.float64), _G64)          # (6, 6, Cin, Cout)
    return np.ascontiguousarray(u.reshape(POINTS, kernel.shape[2], kernel.shape[3]),
                                dtype=dtype)                     # (36, Cin, Cout)


def _k_point_products(v, u, zero, m, rows):
    """``m[p, :rows] = v[p, :rows] @ u[p]`` for every transform point ``p``, by the
    register-tile product (:func:`convkit.fast.kernels.tiles._k_gemm`)."""
    for p in range(v.shape[0]):
        _k_gemm(v[p], u[p], zero, m[p], False, 0, rows)


def _k_point_products_tn(v, m, out, rows):
    """``out[min(p, S - 1)] += v[p, :rows]^T @ m[p, :rows]`` for every transform point
    ``p``, ``out`` holding ``S`` sums (one per point here; the stride-2 form's last points
    share one), by :func:`_tn_point`."""
    k_dim, filters = v.shape[2], m.shape[2]
    vt = np.empty((k_dim, rows), dtype=v.dtype)
    product = np.empty((k_dim, filters), dtype=v.dtype)
    zero = np.zeros(filters, dtype=v.dtype)
    last = out.shape[0] - 1
    for p in range(v.shape[0]):
        _tn_point(v[p], m[p], out[min(p, last)], rows, vt, product, zero)


def _tn_point(a, b, out, rows, vt, product, zero):
    """``out += a[:rows]^T @ b[:rows]``: ``a`` copied transposed into ``vt (K, rows)``, then
    the register-tile product into ``product (K, N)`` (``zero``: ``N`` zeros), whose rows of
    ``out`` stay in registers over the whole sum. The transposed-A register kernel
    (``_k_gemm_tn_regs``) ran at half that rate: 9 x (192, 196) @ (196, 128) 700 against
    456 us with the copy, one thread."""
    k_dim, filters = a.shape[1], b.shape[1]
    for i in range(rows):
        for j in range(k_dim):
            vt[j, i] = a[i, j]
    _k_gemm(vt, b, zero, product, False, 0, k_dim)
    for i in range(k_dim):
        for f in range(filters):
            out[i, f] += product[i, f]


def point_products_tn(where: str):
    """:func:`_k_point_products_tn`, compiled with :func:`_tn_point` and its product (here
    and for the stride-2 backward)."""
    return backend.jit(_k_point_products_tn, where, helpers=(
        backend.jit(_tn_point, where, helpers=(tiles.gemm(where),)),))


def _point_products(where: str, c_out: int, transposed: bool = False):
    """The compiled :func:`_k_point_products` (with ``transposed``, the kernel gradient's
    :func:`_k_point_products_tn`) where it beats NumPy's batched matmul, else None: the
    filters are a multiple of the register tile's width (``tiles.LANES``; the tile product
    leaves the rest of the columns to its caller), and numba compiles with 512-bit vectors
    while NumPy's BLAS does not (OpenBLAS on its AVX2 kernels on an AVX-512 CPU). Measured
    there (Zen 5, ``OPENBLAS_CORETYPE=Haswell``, one thread): 36 x (56, 64) @ (64, 64) 183
    -> 74 us, 36 x (196, 64) @ (64, 64) 524 -> 256 us, 36 x (98, 128) @ (128, 128) 1081 ->
    551 us. Against OpenBLAS's AVX-512 kernels the register tiles were slower (an Intel
    AVX-512 CPU: 138 against 100 us for the first shape), so the BLAS keeps those."""
    if c_out % tiles.LANES or not backend.wide_registers() or _threads.blas_wide_kernels():
        return None
    if transposed:
        return point_products_tn(where)
    return backend.jit(_k_point_products, where, helpers=(tiles.gemm(where),))


def conv3x3_winograd_forward(x: np.ndarray, kernel: np.ndarray, bias, pads,
                             relu: bool = False) -> np.ndarray:
    """Stride-1, dilation-1, ungrouped 3x3 convolution by Winograd F(4x4, 3x3).

    ``x (N, H, W, Cin)``, ``kernel (3, 3, Cin, Cout)``, ``bias (Cout,)`` or None, zero
    ``pads ((top, bottom), (left, right))`` -> ``y (N, H + top + bottom - 2,
    W + left + right - 2, Cout)`` in the dtype of ``x``; ``relu=True`` applies
    ``max(y, 0)`` in the output transform. Same numbers as the direct sum up to rounding.
    """
    where = "conv3x3_winograd_forward"
    backend.jit(_k_pad_copy, where)      # raises a clear error when numba is unavailable
    x, kernel = _check_input(where, x, kernel)
    top, bottom, left, right = _pads(where, pads)
    n_batch, height, width, c_in = x.shape
    c_out = kernel.shape[3]
    h_out, w_out = height + top + bottom - 2, width + left + right - 2
    if h_out <= 0 or w_out <= 0:
        raise ShapeError(f"{where}: output size would be {h_out}x{w_out} for input shape "
                         f"{x.shape} and pads {pads!r}")
    dtype = x.dtype
    b = np.zeros(c_out, dtype) if bias is None else np.ascontiguousarray(bias, dtype)
    if b.shape != (c_out,):
        raise ShapeError(f"{where}: bias must have shape ({c_out},), got {b.shape}")
    u = _kernel_transform(kernel, dtype)                         # (36, Cin, Cout)
    tiles_h, tiles_w = -(-h_out // TILE), -(-w_out // TILE)
    y = np.empty((n_batch, h_out, w_out, c_out), dtype)
    row_bytes = POINTS * tiles_w * max(c_in, c_out) * dtype.itemsize
    rows_per_chunk = int(max(1, CHUNK_BYTES // row_bytes))
    in_transform = backend.jit(_k_input_transform, where, helpers=(_bt_cols, _bt_points))
    out_transform = backend.jit(_k_output_transform, where, helpers=(_at_cols, _at_row))
    products = _point_products(where, c_out)
    zero = np.zeros(c_out, dtype)

    def work(start, stop):
        """Tile rows ``start:stop`` of the whole batch, a chunk at a time."""
        v_buf, m_buf = _workspace(min(rows_per_chunk, stop - start) * tiles_w, c_in, c_out,
                                  dtype)
        for r0 in range(start, stop, rows_per_chunk):
            tiles = (min(r0 + rows_per_chunk, stop) - r0) * tiles_w
            v, m = v_buf[:, :tiles], m_buf[:, :tiles]            # (36, T, Cin), (36, T, Cout)
            in_transform(x, v, r0, top, left, tiles_h, tiles_w)
            if products is None:
                np.matmul(v, u, out=m)                           # 36 x (T, Cin) @ (Cin, Cout)
            else:
                products(v_buf, u, zero, m_buf, tiles)
            out_transform(m, b, y, r0, tiles_h, tiles_w, bool(relu))

    # One range of tile rows per thread, each with one-thread BLAS; without a way to limit
    # the BLAS threads, one thread and the BLAS's own threading.
    threads = _threads.num_threads() if _threads.can_limit_blas() else 1
    _threads.run_chunks(work, n_batch * tiles_h, threads)
    return y


def conv3x3_winograd_input_grad(dy: np.ndarray, kernel: np.ndarray, pads,
                                x_hw) -> np.ndarray:
    """``dx (N, H, W, Cin)`` of a stride-1 3x3 convolution with zero ``pads`` on an input of
    spatial size ``x_hw``, given ``dy (N, H_out, W_out, Cout)``::

        dx = corr3x3(pad(dy, (2 - top, 2 - bottom), (2 - left, 2 - right)),
                     kernel[::-1, ::-1].transpose(0, 1, 3, 2))

    (a negative pad crops ``dy``: those output rows only saw padding).
    """
    where = "conv3x3_winograd_input_grad"
    dy = np.asarray(dy)
    kernel = np.asarray(kernel)
    top, bottom, left, right = _pads(where, pads)
    height, width = (int(v) for v in x_hw)
    if dy.ndim != 4 or kernel.ndim != 4 or kernel.shape[:2] != (3, 3) \
            or kernel.shape[3] != dy.shape[3] \
            or dy.shape[1:3] != (height + top + bottom - 2, width + left + right - 2):
        raise ShapeError(f"{where}: dy shape {dy.shape} does not fit kernel shape "
                         f"{kernel.shape}, pads {pads!r} and input size {tuple(x_hw)}")
    flipped = np.ascontiguousarray(kernel[::-1, ::-1].transpose(0, 1, 3, 2))  # (3, 3, Co, Ci)
    pad_t, pad_b, pad_l, pad_r = 2 - top, 2 - bottom, 2 - left, 2 - right
    if min(pad_t, pad_b, pad_l, pad_r) < 0:
        rows = slice(max(-pad_t, 0), dy.shape[1] - max(-pad_b, 0))
        cols = slice(max(-pad_l, 0), dy.shape[2] - max(-pad_r, 0))
        dy = dy[:, rows, cols]
        pad_t, pad_b, pad_l, pad_r = (max(p, 0) for p in (pad_t, pad_b, pad_l, pad_r))
    return conv3x3_winograd_forward(dy, flipped, None, ((pad_t, pad_b), (pad_l, pad_r)))


def conv3x3_winograd_kernel_grad(x: np.ndarray, dy: np.ndarray, pads) -> np.ndarray:
    """``dkernel (3, 3, Cin, Cout)`` of :func:`conv3x3_winograd_forward` (any stride-1 3x3
    convolution with zero ``pads``), through the Winograd domain::

        dU[p] = sum_tiles V[p]^T @ (A dY A^T)[p]      36 x (Cin, T) @ (T, Cout)
        dkernel = G^T dU G

    the exact adjoint of the forward's ``Y = A^T [(G g G^T) * V] A``: a quarter of the
    multiplies of ``columns^T @ dy``. ``x (N, H, W, Cin)``, ``dy (N, H_out, W_out, Cout)``.
    """
    where = "conv3x3_winograd_kernel_grad"
    in_transform = backend.jit(_k_input_transform, where, helpers=(_bt_cols, _bt_points))
    out_adjoint = backend.jit(_k_output_adjoint, where, helpers=(_a_cols, _a_points))
    x = np.asarray(x)
    dy = np.asarray(dy)
    top, bottom, left, right = _pads(where, pads)
    if x.ndim != 4 or dy.ndim != 4 or x.dtype not in (np.float32, np.float64):
        raise ShapeError(f"{where}: expected float32/float64 4-D x and dy, got "
                         f"{x.dtype} {x.shape} and {dy.shape}")
    n_batch, height, width, c_in = x.shape
    h_out, w_out = height + top + bottom - 2, width + left + right - 2
    if dy.shape[:3] != (n_batch, h_out, w_out):
        raise ShapeError(f"{where}: dy shape {dy.shape} does not fit input shape {x.shape} "
                         f"and pads {pads!r} (expected ({n_batch}, {h_out}, {w_out}, filters))")
    dtype = x.dtype
    c_out = dy.shape[3]
    x = np.ascontiguousarray(x)
    dy = np.ascontiguousarray(dy, dtype=dtype)
    tiles_h, tiles_w = -(-h_out // TILE), -(-w_out // TILE)
    row_bytes = POINTS * tiles_w * max(c_in, c_out) * dtype.itemsize
    rows_per_chunk = int(max(1, CHUNK_BYTES // row_bytes))
    threads = _threads.num_threads() if _threads.can_limit_blas() else 1
    chunks = _threads.split(n_batch * tiles_h, threads)
    products = _point_products(where, c_out, transposed=True)
    partials = np.zeros((len(chunks), POINTS, c_in, c_out), dtype)   # (chunks, 36, Ci, Co)
    slot = {start: q for q, (start, _) in enumerate(chunks)}
    product = np.empty((len(chunks), POINTS, c_in, c_out), dtype)

    def work(start, stop):
        q = slot[start]
        v_buf, m_buf = _workspace(min(rows_per_chunk, stop - start) * tiles_w, c_in, c_out,
                                  dtype)
        for r0 in range(start, stop, rows_per_chunk):
            tiles = (min(r0 + rows_per_chunk, stop) - r0) * tiles_w
            v, m = v_buf[:, :tiles], m_buf[:, :tiles]            # (36, T, Cin), (36, T, Cout)
            in_transform(x, v, r0, top, left, tiles_h, tiles_w)
            out_adjoint(dy, m, r0, tiles_h, tiles_w)
            if products is None:
                np.matmul(v.transpose(0, 2, 1), m, out=product[q])  # 36 x (Cin, T) @ (T, Cout)
                partials[q] += product[q]
            else:
                products(v_buf, m_buf, partials[q], tiles)

    _threads.run_chunks(work, n_batch * tiles_h, threads)
    du = partials.sum(axis=0, dtype=np.float64).reshape(6, 6, c_in, c_out)
    dk = _sandwich(_G64.T, du, _G64.T)                             # G^T dU G: (3, 3, Ci, Co)
    return np.ascontiguousarray(dk, dtype=dtype)


def conv_stride1_kernel_grad(x: np.ndarray, dy: np.ndarray, kernel_hw, pads) -> np.ndarray:
    """``dkernel (kh, kw, Cin, Cout)`` of a stride-1, dilation-1, ungrouped convolution with
    zero ``pads``: ``dkernel[a, b] = sum_{n,i,j} x_pad[n, i + a, j + b, :]^T dy[n, i, j, :]``.

    ``x`` is zero-padded once to ``(N, Hp, Wp, Cin)`` and ``dy`` widened to ``(N, Hp, Wp,
    Cout)`` with zeros past its last row/column; flattened over ``(n, row, col)``, offset
    ``(a, b)`` is then the contiguous slice starting at ``a*Wp + b``, so each of the
    ``kh*kw`` terms is one large GEMM ``(Cin, L) @ (L, Cout)`` with no im2col copy (about
    ``Wp/W_out`` times the minimal work).
    """
    where = "conv_stride1_kernel_grad"
    pad_copy = backend.jit(_k_pad_copy, where)
    x = np.asarray(x)
    dy = np.asarray(dy)
    top, bottom, left, right = _pads(where, pads)
    kh, kw = (int(v) for v in kernel_hw)
    if x.ndim != 4 or dy.ndim != 4 or x.dtype not in (np.float32, np.float64):
        raise ShapeError(f"{where}: expected float32/float64 4-D x and dy, got "
                         f"{x.dtype} {x.shape} and {dy.shape}")
    n_batch, height, width, c_in = x.shape
    hp, wp = height + top + bottom, width + left + right
    h_out, w_out = hp - kh + 1, wp - kw + 1
    if dy.shape[:3] != (n_batch, h_out, w_out):
        raise ShapeError(f"{where}: dy shape {dy.shape} does not fit input shape {x.shape}, "
                         f"kernel {kh}x{kw} and pads {pads!r} (expected "
                         f"({n_batch}, {h_out}, {w_out}, filters))")
    c_out = dy.shape[3]
    x = np.ascontiguousarray(x)
    dy = np.ascontiguousarray(dy, dtype=x.dtype)
    xp = np.empty((n_batch, hp, wp, c_in), x.dtype)               # (N, Hp, Wp, Cin)
    _run(pad_copy, n_batch * hp, x, xp, top, left)
    dyw = np.empty((n_batch, hp, wp, c_out), x.dtype)             # (N, Hp, Wp, Cout)
    _run(pad_copy, n_batch * hp, dy, dyw, 0, 0)
    x_flat = xp.reshape(-1, c_in)                                 # (N*Hp*Wp, Cin)
    dy_flat = dyw.reshape(-1, c_out)                              # (N*Hp*Wp, Cout)
    length = x_flat.shape[0] - (kh - 1) * wp - (kw - 1)
    dk = np.empty((kh, kw, c_in, c_out), x.dtype)
    dy_used = dy_flat[:length]
    offsets = [(a, b) for a in range(kh) for b in range(kw)]

    def work(first, last):   # kernel offsets first:last, one GEMM each
        for a, b in offsets[first:last]:
            start = a * wp + b
            np.matmul(x_flat[start:start + length].T, dy_used, out=dk[a, b])

    _threads.run_chunks(work, len(offsets),
                        _threads.num_threads() if _threads.can_limit_blas() else 1)
    return dk
