"""Winograd convolution F(4x4, 3x3) for stride-1 3x3 convolutions, and the companions of its
backward pass.

A 3x3 cross-correlation over a 6x6 input tile ``d`` gives a 4x4 output tile; Winograd's
minimal filtering algorithm computes it with 36 multiplies per (input, output) channel pair
instead of 144::

    Y = A^T [ (G g G^T) * (B^T d B) ] A          (* elementwise over the 6x6 points)

    U = G g G^T      kernel transform   (36, Cin, Cout)     once per call
    V = B^T d B      input transform    (36, T, Cin)        T = number of 4x4 output tiles
    M[p] = V[p] @ U[p]                  (36, T, Cout)       one batched matmul over 36 points
    Y = A^T M A      output transform   (N, H_out, W_out, Cout), bias (and ReLU) fused in

with the interpolation points 0, 1, -1, 2, -2 and infinity. The tile transforms are compiled
(numba, serial kernels run on one range of tile rows per thread, vectorised over
channels; each thread multiplies its own tiles with a one-thread BLAS); the products are
NumPy's batched matmul. Shapes, with zero pads ``((top, bottom), (left, right))``::

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

__all__ = ["available", "conv3x3_winograd_forward", "conv3x3_winograd_input_grad",
           "conv3x3_winograd_kernel_grad", "conv_stride1_kernel_grad", "winograd_matrices"]


TILE = 4                         # output tile size m of F(m x m, 3 x 3)
POINTS = (TILE + 2) ** 2         # 36 transform points
# Bytes of transformed input (or output) a thread holds at once: the tile rows of a chunk
# are transformed, multiplied and transformed back while they are still in cache.
CHUNK_BYTES = 2 * 2 ** 20

_local = threading.local()


def _workspace(tiles: int, c_in: int, c_out: int, dtype):
    """This thread's reusable ``(36, tiles, c_in)`` and ``(36, tiles, c_out)`` buffers (fresh
    memory would cost a page fault per 4 KiB on every call)."""
    key = (c_in, c_out, np.dtype(dtype).str)
    cached = getattr(_local, "buffers", None)
    if cached is None or cached[0] != key or cached[1].shape[1] < tiles:
        cached = (key, np.empty((POINTS, tiles, c_in), dtype),
                  np.empty((POINTS, tiles, c_out), dtype))
        _local.buffers = cached
    return cached[1][:, :tiles], cached[2][:, :tiles]


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
def _k_input_transform(x, v, r0, top, left, tiles_h, tiles_w):
    """``v[p, t, c]`` = (B^T d B)[p // 6, p % 6] of 6x6 input tiles ``d``, for the tile rows
    ``r0 ...`` (row ``r`` is tile row ``r % tiles_h`` of image ``r // tiles_h``; ``v`` holds
    ``v.shape[1] // tiles_w`` of them). Cells outside ``x`` are zero padding."""
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    n_rows = v.shape[1] // tiles_w
    for rr in range(n_rows):
        n = (r0 + rr) // tiles_h
        ty = (r0 + rr) - n * tiles_h
        d = np.empty((6, 6, channels), dtype=x.dtype)
        tmp = np.empty((6, 6, channels), dtype=x.dtype)
        ih0 = ty * 4 - top
        for tx in range(tiles_w):
            t = rr * tiles_w + tx
            iw0 = tx * 4 - left
            if ih0 >= 0 and ih0 + 6 <= height and iw0 >= 0 and iw0 + 6 <= width:
                for b in range(6):                   # interior tile: read x directly
                    _bt_rows(x[n, ih0, iw0 + b], x[n, ih0 + 1, iw0 + b],
                             x[n, ih0 + 2, iw0 + b], x[n, ih0 + 3, iw0 + b],
                             x[n, ih0 + 4, iw0 + b], x[n, ih0 + 5, iw0 + b],
                             tmp[0, b], tmp[1, b], tmp[2, b], tmp[3, b], tmp[4, b], tmp[5, b])
            else:
                for a in range(6):                   # edge tile: copy with zero padding
                    ih = ih0 + a
                    for b in range(6):
                        iw = iw0 + b
                        dst = d[a, b]                # (C,) views: inner loops index by c
                        if ih >= 0 and ih < height and iw >= 0 and iw < width:
                            src = x[n, ih, iw]
                            for c in range(channels):
                                dst[c] = src[c]
                        else:
                            for c in range(channels):
                                dst[c] = 0
                for b in range(6):                   # tmp = B^T d, column by column
                    _bt_rows(d[0, b], d[1, b], d[2, b], d[3, b], d[4, b], d[5, b],
                             tmp[0, b], tmp[1, b], tmp[2, b], tmp[3, b], tmp[4, b], tmp[5, b])
            for a in range(6):                       # v = tmp B, row by row
                _bt_rows(tmp[a, 0], tmp[a, 1], tmp[a, 2], tmp[a, 3], tmp[a, 4], tmp[a, 5],
                         v[a * 6, t], v[a * 6 + 1, t], v[a * 6 + 2, t], v[a * 6 + 3, t],
                         v[a * 6 + 4, t], v[a * 6 + 5, t])


def _bt_rows(d0, d1, d2, d3, d4, d5, r0, r1, r2, r3, r4, r5):
    """``r = B^T d`` for six (C,) vectors ``d`` (B^T of F(4x4, 3x3))."""
    for c in range(d0.shape[0]):
        a0 = d0[c]
        a1 = d1[c]
        a2 = d2[c]
        a3 = d3[c]
        a4 = d4[c]
        r0[c] = 4 * a0 - 5 * a2 + a4
        r1[c] = -4 * (a1 + a2) + a3 + a4
        r2[c] = 4 * (a1 - a2) - a3 + a4
        r3[c] = 2 * (a3 - a1) - a2 + a4
        r4[c] = 2 * (a1 - a3) - a2 + a4
        r5[c] = 4 * a1 - 5 * a3 + d5[c]


def _at_rows(m0, m1, m2, m3, m4, m5, o0, o1, o2, o3, bias):
    """``o = A^T m + bias`` for six (C,) vectors ``m`` (A^T of F(4x4, 3x3))."""
    for c in range(m0.shape[0]):
        a1 = m1[c]
        a2 = m2[c]
        a3 = m3[c]
        a4 = m4[c]
        s12 = a1 + a2
        d12 = a1 - a2
        s34 = a3 + a4
        d34 = a3 - a4
        bc = bias[c]
        o0[c] = m0[c] + s12 + s34 + bc
        o1[c] = d12 + 2 * d34 + bc
        o2[c] = s12 + 4 * s34 + bc
        o3[c] = d12 + 8 * d34 + m5[c] + bc


def _k_output_transform(m, bias, y, r0, tiles_h, tiles_w, relu):
    """``y`` tiles = A^T m A + bias (then ReLU) for the tile rows ``r0 ...`` (as in
    :func:`_k_input_transform`), clipped at the bottom/right edges."""
    h_out, w_out, c_out = y.shape[1], y.shape[2], y.shape[3]
    n_rows = m.shape[1] // tiles_w
    zero = np.zeros(c_out, dtype=y.dtype)
    for rr in range(n_rows):
        n = (r0 + rr) // tiles_h
        ty = (r0 + rr) - n * tiles_h
        tmp = np.empty((4, 6, c_out), dtype=y.dtype)
        out = np.empty((4, c_out), dtype=y.dtype)
        for tx in range(tiles_w):
            t = rr * tiles_w + tx
            for b in range(6):                       # tmp = A^T m, column by column
                _at_rows(m[b, t], m[6 + b, t], m[12 + b, t], m[18 + b, t], m[24 + b, t],
                         m[30 + b, t], tmp[0, b], tmp[1, b], tmp[2, b], tmp[3, b], zero)
            for i in range(4):                       # row i of the tile = tmp[i] A + bias
                oh = ty * 4 + i
                if oh >= h_out:
                    break
                _at_rows(tmp[i, 0], tmp[i, 1], tmp[i, 2], tmp[i, 3], tmp[i, 4], tmp[i, 5],
                         out[0], out[1], out[2], out[3], bias)
                for j in range(4):
                    ow = tx * 4 + j
                    if ow >= w_out:
                        break
                    src = out[j]
                    dst = y[n, oh, ow]
                    if relu:
                        for c in range(c_out):
                            dst[c] = max(src[c], 0)
                    else:
                        for c in range(c_out):
                            dst[c] = src[c]


def _a_rows(g0, g1, g2, g3, r0, r1, r2, r3, r4, r5):
    """``r = A g`` for four (C,) vectors ``g`` (A = (A^T)^T of F(4x4, 3x3), 6x4)."""
    for c in range(g0.shape[0]):
        a0 = g0[c]
        a1 = g1[c]
        a2 = g2[c]
        a3 = g3[c]
        s02 = a0 + a2
        s13 = a1 + a3
        t02 = a0 + 4 * a2
        t13 = 2 * a1 + 8 * a3
        r0[c] = a0
        r1[c] = s02 + s13
        r2[c] = s02 - s13
        r3[c] = t02 + t13
        r4[c] = t02 - t13
        r5[c] = a3


def _k_output_adjoint(dy, dm, r0, tiles_h, tiles_w):
    """``dm[p, t, c]`` = (A dY A^T)[p // 6, p % 6] of the 4x4 tiles ``dY`` of ``dy`` (zero past
    its edges), for the tile rows ``r0 ...`` as in :func:`_k_input_transform`: the adjoint
    of the output transform, which the kernel gradient needs."""
    h_out, w_out, c_out = dy.shape[1], dy.shape[2], dy.shape[3]
    n_rows = dm.shape[1] // tiles_w
    for rr in range(n_rows):
        n = (r0 + rr) // tiles_h
        ty = (r0 + rr) - n * tiles_h
        g = np.empty((4, 4, c_out), dtype=dy.dtype)
        tmp = np.empty((6, 4, c_out), dtype=dy.dtype)
        for tx in range(tiles_w):
            t = rr * tiles_w + tx
            for i in range(4):
                oh = ty * 4 + i
                for j in range(4):
                    ow = tx * 4 + j
                    dst = g[i, j]
                    if oh < h_out and ow < w_out:
                        src = dy[n, oh, ow]
                        for c in range(c_out):
                            dst[c] = src[c]
                    else:
                        for c in range(c_out):
                            dst[c] = 0
            for j in range(4):                       # tmp = A g, column by column
                _a_rows(g[0, j], g[1, j], g[2, j], g[3, j],
                        tmp[0, j], tmp[1, j], tmp[2, j], tmp[3, j], tmp[4, j], tmp[5, j])
            for a in range(6):                       # dm = tmp A^T, row by row
                _a_rows(tmp[a, 0], tmp[a, 1], tmp[a, 2], tmp[a, 3],
                        dm[a * 6, t], dm[a * 6 + 1, t], dm[a * 6 + 2, t], dm[a * 6 + 3, t],
                        dm[a * 6 + 4, t], dm[a * 6 + 5, t])


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
    in_transform = backend.jit(_k_input_transform, where, helpers=(_bt_rows,))
    out_transform = backend.jit(_k_output_transform, where, helpers=(_at_rows,))

    def work(start, stop):
        """Tile rows ``start:stop`` of the whole batch, a chunk at a time."""
        v_buf, m_buf = _workspace(min(rows_per_chunk, stop - start) * tiles_w, c_in, c_out,
                                  dtype)
        for r0 in range(start, stop, rows_per_chunk):
            tiles = (min(r0 + rows_per_chunk, stop) - r0) * tiles_w
            v, m = v_buf[:, :tiles], m_buf[:, :tiles]            # (36, T, Cin), (36, T, Cout)
            in_transform(x, v, r0, top, left, tiles_h, tiles_w)
            np.matmul(v, u, out=m)                               # 36 x (T, Cin) @ (Cin, Cout)
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
    in_transform = backend.jit(_k_input_transform, where, helpers=(_bt_rows,))
    out_adjoint = backend.jit(_k_output_adjoint, where, helpers=(_a_rows,))
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
            np.matmul(v.transpose(0, 2, 1), m, out=product[q])   # 36 x (Cin, T) @ (T, Cout)
            partials[q] += product[q]

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
