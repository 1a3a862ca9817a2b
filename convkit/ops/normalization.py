"""Normalisation over a set of axes, forward and backward: the arithmetic shared by
:class:`~convkit.layers.BatchNormalization` (statistics over the batch and the spatial axes)
and :class:`~convkit.layers.LayerNormalization` (statistics over each sample's features).

For the axes ``A`` (``n`` values per group)::

    mean = mean_A(x),  var = mean_A((x - mean)^2)            (biased, as Keras)
    x_hat = (x - mean) / sqrt(var + epsilon)
    dx = (dx_hat - mean_A(dx_hat) - x_hat * mean_A(dx_hat * x_hat)) / sqrt(var + epsilon)

>>> x_hat, inv_std = normalize(np.array([[1.0, 3.0]]), axes=(1,), epsilon=0.0)
>>> x_hat, inv_std
(array([[-1.,  1.]]), array([[1.]]))
"""
from __future__ import annotations

import numpy as np

__all__ = ["normalize", "normalize_backward"]


def normalize(x, axes: tuple, epsilon: float):
    """``(x_hat, inv_std)``: ``x`` standardised over ``axes``; ``inv_std`` keeps those axes
    as size 1, so it broadcasts against ``x``."""
    mean = x.mean(axis=axes, keepdims=True)
    centred = x - mean
    var = np.mean(centred * centred, axis=axes, keepdims=True)
    inv_std = (1.0 / np.sqrt(var + epsilon)).astype(x.dtype, copy=False)
    return centred * inv_std, inv_std


def normalize_backward(dx_hat, x_hat, inv_std, axes: tuple):
    """The gradient for ``x`` given the one for ``x_hat``, when the mean and variance were
    computed from ``x`` over ``axes`` (``inv_std`` broadcastable against ``x``)."""
    mean_dx_hat = dx_hat.mean(axis=axes, keepdims=True)
    mean_dx_hat_x_hat = (dx_hat * x_hat).mean(axis=axes, keepdims=True)
    return inv_std * (dx_hat - mean_dx_hat - x_hat * mean_dx_hat_x_hat)
