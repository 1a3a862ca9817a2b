"""Fully connected layer maths: ``y = x @ kernel + bias``, forward and backward.

Shapes::

    x       (N, in) or (..., in)
    kernel  (in, units)
    bias    (units,)
    y       (N, units) or (..., units)
"""
from __future__ import annotations

import numpy as np

from .._validate import as_float_array, result_float_dtype
from ..errors import ShapeError
from ..fast import dispatch

__all__ = ["dense", "dense_backward"]


def _setup(where, x, kernel):
    x = as_float_array(x, where, "input")
    kernel = as_float_array(kernel, where, "kernel", ndim=2, layout="(in_features, units)")
    if x.ndim < 1 or x.shape[-1] != kernel.shape[0]:
        raise ShapeError(f"{where}: input shape {x.shape} has {x.shape[-1] if x.ndim else 0} "
                         f"features but kernel shape {kernel.shape} expects {kernel.shape[0]}")
    dtype = result_float_dtype(x, kernel)
    return x.astype(dtype, copy=False), kernel.astype(dtype, copy=False)


def dense(x, kernel, bias=None) -> np.ndarray:
    """``x @ kernel + bias`` over the last axis of ``x``.

    Shapes: ``x`` ``(..., in)``, ``kernel`` ``(in, units)``, ``bias`` ``(units,)`` or None;
    result ``(..., units)``.

    >>> dense(np.array([[1.0, 2.0]]), np.array([[1.0], [10.0]]), np.array([0.5]))
    array([[21.5]])
    """
    x, kernel = _setup("dense", x, kernel)
    fast = dispatch.lookup("dense", "forward", x, kernel)
    if fast is not None:
        y = fast(x, kernel)                                           # (..., units)
    else:
        y = x @ kernel
    if bias is not None:
        bias = as_float_array(bias, "dense", "bias")
        if bias.shape != (kernel.shape[1],):
            raise ShapeError(f"dense: bias shape {bias.shape} does not match the "
                             f"{kernel.shape[1]} units of kernel shape {kernel.shape}")
        y += bias.astype(y.dtype, copy=False)
    return y


def dense_backward(dy, x, kernel, input_grad=True):
    """Gradients of :func:`dense`: returns ``(dx, dkernel, dbias)`` (``dx`` is ``None``
    with ``input_grad=False``)::

        dx      = dy @ kernel^T                 shaped like x
        dkernel = x^T @ dy (over all rows)      (in, units)
        dbias   = dy summed over all rows       (units,)

    >>> dx, dk, db = dense_backward(np.ones((1, 1)), np.array([[1.0, 2.0]]),
    ...                             np.array([[1.0], [10.0]]))
    >>> dx, dk.ravel(), db
    (array([[ 1., 10.]]), array([1., 2.]), array([1.]))
    """
    where = "dense_backward"
    x, kernel = _setup(where, x, kernel)
    dy = as_float_array(dy, where, "dy").astype(x.dtype, copy=False)
    expected = x.shape[:-1] + (kernel.shape[1],)
    if dy.shape != expected:
        raise ShapeError(f"{where}: dy has shape {dy.shape} but the output for input shape "
                         f"{x.shape} and kernel shape {kernel.shape} has shape {expected}")
    x2d = x.reshape(-1, kernel.shape[0])                # (rows, in)
    dy2d = dy.reshape(-1, kernel.shape[1])              # (rows, units)
    fast = dispatch.lookup("dense", "backward", dy2d, x2d, kernel, input_grad)
    if fast is not None:     # rows split over threads for large products (same numbers)
        dx2d, dkernel = fast(dy2d, x2d, kernel, input_grad)
        dx = dx2d.reshape(x.shape) if input_grad else None
    else:
        dx = dy @ kernel.T if input_grad else None
        dkernel = x2d.T @ dy2d
    dbias = dy2d.sum(axis=0)
    return dx, dkernel, dbias
