"""Convolutions with few input taps -- ``kh*kw*C_in`` small, e.g. the first layer on grey or
RGB images -- as one matrix product per block of images over *tap-major* columns.

im2col puts one pixel's ``kh*kw*C_in`` window in a row; with 9 taps that row is 36 bytes
and the copy is a gather of tiny pieces. Tap-major columns are the transpose: row ``t`` of
``cols (T, B, H_out, W_out)`` is the whole shifted (and strided) image plane that tap ``t``
multiplies, one plain strided NumPy copy per tap::

    cols[(a*kw + b)*C_in + c, n, i, j] = x_pad[n, i*sh + a*dh, j*sw + b*dw, c]
    y (B*H_out*W_out, F) = cols.reshape(T, -1).T @ kernel.reshape(T, F)     (one GEMM)
    dkernel (T, F)       = cols.reshape(T, -1) @ dz,  dbias = sum_rows dz,  dz = dy * (y > 0)

Each thread takes a range of images, a block of ~4 MiB at a time (the product reads the
columns transposed, which BLAS does without a copy), and adds the bias and ReLU to its
block of ``y`` while it is in cache. For the MNIST convnet's first layer (28x28x1 -> 32,
3x3, batch 128) this is ~0.9 ms against ~1.8 ms for the wide-grid direct kernel, whose
final planar-to-NHWC transpose of 32 channels does not vectorise.

Shapes: ``x (N, H, W, C_in)``, ``kernel (kh, kw, C_in, F)``, ``bias (F,)`` or None,
``y``/``dy (N, H_out, W_out, F)``; ``geo`` the :class:`~convkit.shapes.Geometry` with zero
pads (any stride and dilation).
"""
from __future__ import annotations

import numpy as np

from ...shapes import Geometry
from ..runtime import threads as _threads
from . import elementwise
from ...ops.padding import pad_nhwc
from ..runtime.backend import _chunk_slots

__all__ = ["taps_forward", "taps_kernel_grad", "MAX_TAPS", "MAX_CHANNELS", "MIN_FILTERS"]

#: the plan applies to ungrouped convolutions with at most this many taps ...
MAX_TAPS = 32
#: ... and input channels ...
MAX_CHANNELS = 4
#: ... and at least this many filters (fewer: the wide-grid kernel is faster)
MIN_FILTERS = 16
#: bytes of columns (or of the output block, whichever is larger) per block of images
BLOCK_BYTES = 4 << 20


def _padded(x: np.ndarray, geo: Geometry) -> np.ndarray:
    return pad_nhwc(x, geo.pads)                 # no copy without padding


def _fill_columns(xp: np.ndarray, n0: int, n1: int, geo: Geometry, cols: np.ndarray) -> None:
    """``cols (T, n1 - n0, H_out, W_out)``: tap-major columns of images ``n0:n1`` of the
    zero-padded ``xp``."""
    (kh, kw), (sh, sw), (dh, dw) = geo.kernel, geo.strides, geo.dilation
    h_out, w_out = geo.out_hw
    channels = xp.shape[3]
    t = 0
    for a in range(kh):
        for b in range(kw):
            r0, c0 = a * dh, b * dw
            plane = xp[n0:n1, r0:r0 + (h_out - 1) * sh + 1:sh,
                       c0:c0 + (w_out - 1) * sw + 1:sw]               # (B, H_out, W_out, C)
            for c in range(channels):
                cols[t] = plane[..., c]
                t += 1


def _prepare(x: np.ndarray, kernel_shape, geo: Geometry):
    """``(xp, taps, rows, step)``: the zero-padded input, ``kh*kw*C_in``, output pixels per
    image and images per block."""
    kh, kw, c_in, filters = kernel_shape
    taps = kh * kw * c_in
    rows = geo.out_hw[0] * geo.out_hw[1]
    step = max(1, BLOCK_BYTES // (rows * max(taps, filters) * x.dtype.itemsize))
    return _padded(np.ascontiguousarray(x), geo), taps, rows, step


def _column_blocks(xp: np.ndarray, geo: Geometry, taps: int, step: int, lo: int, hi: int):
    """Images ``lo:hi`` a block at a time: ``(n0, n1, columns (T, (n1-n0)*H_out*W_out))``,
    all blocks written into one buffer."""
    cols = np.empty((taps, min(step, hi - lo), *geo.out_hw), dtype=xp.dtype)
    for n0 in range(lo, hi, step):
        n1 = min(hi, n0 + step)
        block = cols[:, :n1 - n0]
        _fill_columns(xp, n0, n1, geo, block)
        yield n0, n1, block.reshape(taps, -1)


def taps_forward(x: np.ndarray, kernel: np.ndarray, bias, geo: Geometry,
                 relu: bool = False) -> np.ndarray:
    """``y (N, H_out, W_out, F)`` = conv2d(x, kernel) + bias (then ReLU) through tap-major
    columns (see the module docstring)."""
    n, filters = x.shape[0], kernel.shape[3]
    xp, taps, rows, step = _prepare(x, kernel.shape, geo)
    k2 = np.ascontiguousarray(kernel.reshape(taps, filters), dtype=x.dtype)   # (T, F)
    y = np.empty((n, *geo.out_hw, filters), dtype=x.dtype)
    y2 = y.reshape(n * rows, filters)
    epilogue = elementwise.bias_act_rows(bias, relu, filters, x.dtype) if bias is not None or relu \
        else None

    def work(lo, hi):
        for n0, n1, cols in _column_blocks(xp, geo, taps, step, lo, hi):
            y_block = y2[n0 * rows:n1 * rows]                        # (B*H_out*W_out, F)
            np.matmul(cols.T, k2, out=y_block)
            if epilogue is not None:
                epilogue(y_block)
    _threads.run_chunks(work, n)
    return y


def taps_kernel_grad(x: np.ndarray, dy: np.ndarray, relu_y, kernel_shape,
                     geo: Geometry):
    """``(dkernel (kh, kw, C_in, F), dbias (F,))`` of :func:`taps_forward`; with ``relu_y``
    (the output of a fused ReLU) ``dy`` is masked by ``relu_y > 0`` first, a block at a
    time. The partial sums per thread are added in float64."""
    n, filters = x.shape[0], kernel_shape[3]
    xp, taps, rows, step = _prepare(x, kernel_shape, geo)
    dy2 = np.ascontiguousarray(dy, dtype=x.dtype).reshape(n * rows, filters)
    y2 = None if relu_y is None else \
        np.ascontiguousarray(relu_y, dtype=x.dtype).reshape(n * rows, filters)
    chunks, slot = _chunk_slots(n)
    dks = np.zeros((len(chunks), taps, filters), np.float64)
    dbs = np.zeros((len(chunks), filters), np.float64)

    def work(lo, hi):
        q = slot[lo]
        masked = None if y2 is None else \
            np.empty((min(step, hi - lo) * rows, filters), dtype=x.dtype)
        for n0, n1, cols in _column_blocks(xp, geo, taps, step, lo, hi):
            g = dy2[n0 * rows:n1 * rows]                             # (B*H_out*W_out, F)
            if y2 is not None:
                g = elementwise.relu_backward(g, y2[n0 * rows:n1 * rows],
                                        out=masked[:(n1 - n0) * rows])
            dks[q] += cols @ g                                       # (T, F)
            dbs[q] += _threads.column_sums(g)
    _threads.run_chunks(work, n)
    dkernel = dks.sum(axis=0).astype(x.dtype).reshape(kernel_shape)
    return dkernel, dbs.sum(axis=0).astype(x.dtype)
