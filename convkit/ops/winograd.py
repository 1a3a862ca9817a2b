"""Winograd's F(2x2, 3x3) for the NumPy path: a 3x3 stride-1 convolution with 2.25 times
fewer multiplications than im2col, in NumPy adds and one batched matrix product.

Each output tile of 2x2 pixels reads a 4x4 input tile ``d`` (tiles start every 2 pixels,
so neighbouring input tiles overlap by 2). With ::

    B^T = [[1, 0, -1,  0],      G = [[1,    0,   0  ],      A^T = [[1, 1,  1,  0],
           [0, 1,  1,  0],           [1/2,  1/2, 1/2],             [0, 1, -1, -1]]
           [0, -1, 1,  0],           [1/2, -1/2, 1/2],
           [0, 1,  0, -1]]           [0,    0,   1  ]]

the tile's output, for each filter, is ``A^T [ sum_c (G g_c G^T) * (B^T d_c B) ] A``
(``*`` element by element, ``g_c`` the 3x3 kernel of input channel ``c``). So the kernel
becomes ``U = G g G^T`` ``(4, 4, C, F)`` once, the input ``V = B^T d B`` ``(4, 4, tiles, C)``
(adds and subtracts of rows, then of columns), the 16 positions of the tile each take one
matrix product ``(tiles, C) @ (C, F)`` -- one ``np.matmul`` over a stack of 16 -- and
``A^T M A`` gives the 2x2 outputs (adds again). Against im2col's ``9*C*F`` multiply-adds
per pixel, the products do ``16*C*F / 4 = 4*C*F``.

>>> from convkit.ops.windows import pad_for_windows
>>> from convkit.shapes import window_geometry
>>> x = np.arange(16.0).reshape(1, 4, 4, 1)
>>> y = np.empty((1, 2, 2, 1))
>>> forward(pad_for_windows(x, window_geometry((4, 4), 3, 1, "valid")), np.ones((3, 3, 1, 1)),
...         y, (0, 2))                 # the blocks whose results are not finite: none
[]
>>> y[0, :, :, 0]                      # sums of the 3x3 windows
array([[45., 54.],
       [81., 90.]])

The tiles' sums are the convolution's up to float rounding (the transforms' halves and
adds round differently from im2col's products: float32 results within ~1e-6 of the
largest output). An inf or NaN in a 4x4 input tile reaches all four outputs of its tile
through the transforms' zeros, so :func:`forward` reports a block whose result is not
finite and the caller computes it again by im2col.
"""
from __future__ import annotations

import numpy as np

from .windows import image_blocks

__all__ = ["applies", "kernel_transform", "forward", "MIN_CHANNELS"]

#: the NumPy path takes Winograd for 3x3 stride-1 convolutions with at least this many input
#: channels and filters: the transforms' passes cost in proportion to the channels (and the
#: filters), the products saved to both at once. Measured forward against im2col, two
#: threads, float32 (OpenBLAS on its Haswell kernels): 8x56x56, 64 -> 64 10.2 -> 8.7 ms,
#: 8x28x28, 128 -> 128 9.1 -> 8.0 ms; but 32x28x28, 32 -> 32 3.0 -> 3.9 ms, 8x112x112,
#: 32 -> 32 11.4 -> 13.2 ms and 128x13x13, 32 -> 64 4.5 -> 6.1 ms
MIN_CHANNELS = 64

_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


def applies(kernel_shape, strides, dilation, groups) -> bool:
    """3x3 kernel, stride 1, no dilation, one group, :data:`MIN_CHANNELS` channels and
    filters or more."""
    kh, kw, c, filters = kernel_shape
    return ((kh, kw) == (3, 3) and tuple(strides) == (1, 1) and tuple(dilation) == (1, 1)
            and groups == 1 and min(c, filters) >= MIN_CHANNELS)


def kernel_transform(kernel: np.ndarray) -> np.ndarray:
    """``U = G g G^T`` for every channel and filter: ``(16, C, F)`` from ``(3, 3, C, F)``,
    in the kernel's dtype (the halves are exact). Two small matrix products: ``G`` times the
    kernel's rows, then each of those times ``G^T`` (a three-operand ``np.einsum`` took 15-20
    times as long: 0.30 against 0.02 ms at 64 x 64, once per call on every thread)."""
    g = _G.astype(kernel.dtype)
    channels, filters = kernel.shape[2:]
    rows = (g @ kernel.reshape(3, 3 * channels * filters)).reshape(4, 3, -1)  # (G g)[r, b]
    return np.matmul(g, rows).reshape(16, channels, filters)    # sum_b G[s, b] (G g)[r, b]


def _input_transform(padded: np.ndarray, t0: int, t1: int, tiles_w: int) -> np.ndarray:
    """``V = B^T d B`` for the tile rows ``t0:t1`` of every image: ``(16, images*rows*tiles_w,
    C)``; ``padded`` reaches row ``2*t1 + 1`` and column ``2*tiles_w + 1``."""
    n, _, _, c = padded.shape
    rows, width = t1 - t0, 2 * tiles_w + 2
    d = [padded[:, 2 * t0 + r:2 * t1 + r:2, :width] for r in range(4)]   # input rows 2i + r
    t = np.empty((4, n, rows, width, c), dtype=padded.dtype)              # B^T d: along rows
    np.subtract(d[0], d[2], out=t[0])
    np.add(d[1], d[2], out=t[1])
    np.subtract(d[2], d[1], out=t[2])
    np.subtract(d[1], d[3], out=t[3])
    v = np.empty((4, 4, n, rows, tiles_w, c), dtype=padded.dtype)        # (B^T d) B: columns
    for r in range(4):
        e = [t[r][:, :, s:s + 2 * tiles_w:2] for s in range(4)]           # columns 2j + s
        np.subtract(e[0], e[2], out=v[r, 0])
        np.add(e[1], e[2], out=v[r, 1])
        np.subtract(e[2], e[1], out=v[r, 2])
        np.subtract(e[1], e[3], out=v[r, 3])
    return v.reshape(16, n * rows * tiles_w, c)


def _output_transform(m: np.ndarray, y: np.ndarray, t0: int, t1: int, lo: int, hi: int) -> None:
    """``A^T M A`` of the products ``m`` ``(4, 4, images, rows, tiles_w, F)`` written into the
    output rows ``lo:hi`` (within tile rows ``t0:t1``) of ``y`` ``(images, H_out, W_out, F)``."""
    w_out = y.shape[2]
    q = np.empty((2, *m.shape[1:]), dtype=m.dtype)                         # A^T M: along rows
    np.add(m[0], m[1], out=q[0])
    q[0] += m[2]
    np.subtract(m[1], m[2], out=q[1])
    q[1] -= m[3]
    for u in range(2):
        first = 2 * t0 + u                      # output row of the first tile row's u-th row
        skip = max(0, -(-(lo - first) // 2))    # tile rows whose u-th row is before lo
        stop = min(t1 - t0, -(-(hi - first) // 2))
        if stop <= skip:
            continue
        rows = slice(first + 2 * skip, first + 2 * stop - 1, 2)
        qu = q[u][:, :, skip:stop]                  # (4 columns, images, rows, tiles_w, F)
        for v in range(2):                                                 # (A^T M) A: columns
            cols = -(-(w_out - v) // 2)         # output columns 2j + v inside the row
            out = y[:, rows, v::2]
            if v == 0:
                np.add(qu[1, ..., :cols, :], qu[2, ..., :cols, :], out=out)
                out += qu[0, ..., :cols, :]
            else:
                np.subtract(qu[1, ..., :cols, :], qu[2, ..., :cols, :], out=out)
                out -= qu[3, ..., :cols, :]


def forward(padded: np.ndarray, kernel: np.ndarray, y: np.ndarray, rows: tuple[int, int],
            block_bytes: int = 1 << 21) -> list:
    """The convolution of ``padded`` ``(N, Hp, Wp, C)`` (already padded as the layer says:
    ``Hp = H_out + 2``, ``Wp = W_out + 2``) with the 3x3 ``kernel`` ``(3, 3, C, F)``, written
    into the output rows ``rows`` of ``y`` ``(N, H_out, W_out, F)``. Goes through blocks of
    whole images, or of tile rows of one image, whose ``V`` holds about ``block_bytes``
    (:func:`~convkit.ops.windows.image_blocks`); returns the blocks ``(image0, image1, row0,
    row1)`` whose results are not all finite."""
    n, (h_out, w_out), c = y.shape[0], y.shape[1:3], padded.shape[3]
    start, stop = rows
    if not y.size or start >= stop:
        return []
    u = kernel_transform(kernel)
    tiles_w = -(-w_out // 2)
    t_first, t_last = start // 2, -(-stop // 2)
    # a last tile row or column past the input reads one more row or column of zeros
    extra_h = max(0, 2 * t_last + 2 - padded.shape[1])
    extra_w = max(0, 2 * tiles_w + 2 - padded.shape[2])
    if extra_h or extra_w:
        padded = np.pad(padded, ((0, 0), (0, extra_h), (0, extra_w), (0, 0)))
    row_bytes = 16 * tiles_w * c * padded.itemsize           # V of one tile row of one image
    bad = []
    for i0, i1, t0, t1 in image_blocks(n, (t_first, t_last), row_bytes, block_bytes):
        v = _input_transform(padded[i0:i1], t0, t1, tiles_w)           # (16, tiles, C)
        with np.errstate(invalid="ignore"):                            # inf - inf: see below
            m = np.matmul(v, u)                                        # (16, tiles, F)
            m = m.reshape(4, 4, i1 - i0, t1 - t0, tiles_w, -1)
            lo, hi = max(start, 2 * t0), min(stop, 2 * t1, h_out)
            _output_transform(m, y[i0:i1], t0, t1, lo, hi)
        if not np.isfinite(y[i0:i1, lo:hi]).all():
            bad.append((i0, i1, lo, hi))
    return bad
