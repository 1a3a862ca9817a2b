"""Compiled element-wise passes: bias plus optional ReLU in place (the epilogue of the
GEMM paths) and the ReLU gradient from the output.
"""
from __future__ import annotations

import numpy as np

from ...errors import ShapeError
from ..runtime.backend import _run, jit
from .checks import _out_array


def _k_bias_act(y2, bias_span, relu, lo, hi):
    # Rows lo:hi of y2 (rows, C). bias_span is the bias repeated over whole rows (at least
    # 256 values): the loop runs over spans of that many contiguous values (the last one
    # shorter), long enough to vectorise -- a loop over C = 32 channels would run entirely
    # in the scalar remainder of a loop vectorised 64 values at a time.
    channels = y2.shape[1]
    span = bias_span.shape[0]
    flat = y2.reshape(-1)
    end = hi * channels
    for s0 in range(lo * channels, end, span):   # every span starts on a row
        seg = flat[s0:min(s0 + span, end)]
        for i in range(seg.shape[0]):
            v = seg[i] + bias_span[i]
            if relu and v < 0:
                v = 0
            seg[i] = v


#: the bias is repeated to at least this many values for :func:`_k_bias_act`
BIAS_SPAN = 256


def _bias_span(where: str, bias, channels: int, dtype) -> np.ndarray:
    """``bias`` (or zeros) repeated over whole rows to at least :data:`BIAS_SPAN` values."""
    b = np.zeros(channels, dtype) if bias is None else np.ascontiguousarray(bias, dtype)
    if b.shape != (channels,):
        raise ShapeError(f"{where}: bias must have shape ({channels},) for {channels} channels, "
                         f"got {b.shape}")
    return np.tile(b, -(-BIAS_SPAN // max(channels, 1)))


def bias_act_(y: np.ndarray, bias, relu: bool = False) -> np.ndarray:
    """In place: ``y += bias`` over the last axis, then ``max(y, 0)`` if ``relu``; returns
    ``y`` (any rank, C-contiguous, last axis = channels)."""
    where = "bias_act_"
    compiled = jit(_k_bias_act, where)
    if not (isinstance(y, np.ndarray) and y.flags.c_contiguous
            and y.dtype in (np.float32, np.float64)):
        raise ShapeError(f"{where}: y must be a C-contiguous float32/float64 array")
    channels = y.shape[-1]
    span = _bias_span(f"{where} (y shape {y.shape})", bias, channels, y.dtype)
    if y.size == 0:
        return y
    y2 = y.reshape(-1, channels)                                # (rows, C)
    _run(compiled, y2.shape[0], y2, span, bool(relu))
    return y


def bias_act_rows(bias, relu: bool, channels: int, dtype):
    """``apply(y2d)``: :func:`bias_act_` for many blocks of rows with the same bias, its
    checks and set-up done once -- ``y2d`` a C-contiguous ``(rows, channels)`` array of
    ``dtype``, worked on by the calling thread alone (an epilogue run inside a thread's
    chunk, :func:`convkit.fast.runtime.threads.matmul`)."""
    where = "bias_act_rows"
    compiled = jit(_k_bias_act, where)
    span = _bias_span(where, bias, channels, np.dtype(dtype))
    relu = bool(relu)

    def apply(y2d: np.ndarray) -> None:
        compiled(y2d, span, relu, 0, y2d.shape[0])
    return apply


def _k_relu_mask(dy, y, out, lo, hi):
    # Slices indexed from 0 and a select on values already loaded: the loop then
    # vectorises (a data-dependent branch on a random sign pattern mispredicts every other
    # element, and a runtime start index keeps the negative-index check in the loop).
    d, v, o = dy[lo:hi], y[lo:hi], out[lo:hi]
    for i in range(d.shape[0]):
        o[i] = d[i] * (v[i] > 0)


#: below this many elements the element-wise kernels run on the calling thread alone
SMALL_ELEMENTWISE = 1 << 16


def relu_backward(dy: np.ndarray, y: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Gradient through a ReLU from its output: ``dy`` where ``y > 0``, else 0 (shaped and
    typed like ``dy``, written into ``out`` when given -- a C-contiguous array of that shape
    and dtype; ``y`` is cast to ``dy``'s dtype if needed).

    >>> relu_backward(np.array([1., 2., 3.]), np.array([0., 5., 0.]))   # doctest: +SKIP
    array([0., 2., 0.])
    """
    where = "relu_backward"
    compiled = jit(_k_relu_mask, where, fastmath=False)
    dy = np.ascontiguousarray(dy)
    if dy.dtype not in (np.float32, np.float64) or np.shape(y) != dy.shape:
        raise ShapeError(f"{where}: dy (float32/float64) and y must have the same shape, got "
                         f"{dy.dtype} {dy.shape} and {np.shape(y)}")
    y = np.ascontiguousarray(y, dtype=dy.dtype)
    out = _out_array(where, out, dy.shape, dy.dtype)
    flat = (dy.reshape(-1), y.reshape(-1), out.reshape(-1))
    if dy.size < SMALL_ELEMENTWISE:
        compiled(*flat, 0, dy.size)
    else:
        _run(compiled, dy.size, *flat)
    return out
