"""Batch and layer normalization, as in Keras 3, over :mod:`convkit.ops.normalization`."""
from __future__ import annotations

from numbers import Integral, Real

import numpy as np

from .. import initializers, regularizers
from ..errors import ConvkitError, ShapeError
from ..ops.normalization import normalize, normalize_backward
from .base import Layer
from .conv import initializer_config

__all__ = ["BatchNormalization", "LayerNormalization"]


def _add_gamma_beta(layer, shape) -> None:
    """Create ``gamma`` (if ``layer.scale``) then ``beta`` (if ``layer.center``)."""
    if layer.scale:
        layer.add_weight("gamma", shape, layer.gamma_initializer,
                         regularizer=layer.gamma_regularizer)
    if layer.center:
        layer.add_weight("beta", shape, layer.beta_initializer,
                         regularizer=layer.beta_regularizer)


class BatchNormalization(Layer):
    """Normalise each channel (the ``axis`` entry) over every other axis::

        training  mean, var = batch mean and biased variance over all axes but ``axis``
                  moving_mean     = momentum * moving_mean     + (1 - momentum) * mean
                  moving_variance = momentum * moving_variance + (1 - momentum) * var
        inference mean, var = moving_mean, moving_variance
        y = gamma * (x - mean) / sqrt(var + epsilon) + beta

    Training mode is ``training=True`` on a trainable layer (a frozen layer always uses the
    moving statistics, as in Keras). The variance is the biased one (divided by the count),
    in the normalisation and in the moving average, as Keras 3 does; PyTorch's
    ``running_var`` uses the unbiased one.

    Weights, in order: ``gamma`` (if ``scale``), ``beta`` (if ``center``), ``moving_mean``,
    ``moving_variance``; the last two are non-trainable. Parameters: ``4 * C`` with both
    ``center`` and ``scale`` (``2 * C`` of them non-trainable).

    >>> bn = BatchNormalization()
    >>> bn.build((None, 13, 13, 32)); bn.count_params(), len(bn.non_trainable_weights)
    (128, 2)
    """

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 beta_regularizer=None, gamma_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(axis, Integral) or isinstance(axis, bool):
            raise ConvkitError(f"BatchNormalization: axis must be an int, got {axis!r}")
        for name, value in (("momentum", momentum), ("epsilon", epsilon)):
            if not isinstance(value, Real) or isinstance(value, bool) or not np.isfinite(value):
                raise ConvkitError(f"BatchNormalization: {name} must be a number, "
                                   f"got {value!r}")
        if not 0 <= momentum <= 1:
            raise ConvkitError(f"BatchNormalization: momentum must be in [0, 1], "
                               f"got {momentum!r}")
        if epsilon <= 0:
            raise ConvkitError(f"BatchNormalization: epsilon must be > 0, got {epsilon!r}")
        self.axis = int(axis)
        self.momentum, self.epsilon = float(momentum), float(epsilon)
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.channels = None

    # ------------------------------------------------------------------- shapes
    def _resolve_axis(self, rank: int) -> int:
        axis = self.axis + rank if self.axis < 0 else self.axis
        if not 1 <= axis < rank:
            raise ShapeError(f"BatchNormalization: axis={self.axis} is not a feature axis of "
                             f"a rank-{rank} input (the batch axis 0 cannot be normalised)")
        return axis

    def _check_shape(self, input_shape) -> tuple:
        input_shape = tuple(input_shape)
        if len(input_shape) < 2:
            raise ShapeError(f"BatchNormalization: expected an input of rank >= 2, got shape "
                             f"{input_shape}")
        axis = self._resolve_axis(len(input_shape))
        got = input_shape[axis]
        if got is None:
            raise ShapeError(f"BatchNormalization: the size of axis {self.axis} must be known, "
                             f"got input shape {input_shape}")
        if self.channels is not None and got != self.channels:
            raise ShapeError(f"BatchNormalization: expected {self.channels} channels on axis "
                             f"{self.axis}, got {got} (input shape {input_shape})")
        if self.input_shape is not None and len(self.input_shape) != len(input_shape):
            raise ShapeError(f"BatchNormalization: expected a rank-{len(self.input_shape)} "
                             f"input like {self.input_shape}, got shape {input_shape}")
        return input_shape

    def build(self, input_shape) -> None:
        input_shape = self._check_shape(input_shape)
        channels = int(input_shape[self._resolve_axis(len(input_shape))])
        shape = (channels,)
        _add_gamma_beta(self, shape)
        self.add_weight("moving_mean", shape, self.moving_mean_initializer, trainable=False)
        self.add_weight("moving_variance", shape, self.moving_variance_initializer,
                        trainable=False)
        self.channels = channels
        super().build(input_shape)

    def _check_built_shape(self, input_shape) -> None:
        self._check_shape(input_shape)

    def compute_output_shape(self, input_shape):
        return self._check_shape(input_shape)

    # ------------------------------------------------------------------- passes
    def forward(self, x, training: bool = False):
        x = self._input(x)
        self._check_shape(x.shape)
        axis = self._resolve_axis(x.ndim)
        reduce_axes = tuple(a for a in range(x.ndim) if a != axis)
        bshape = [1] * x.ndim
        bshape[axis] = self.channels                                 # broadcast (1, .., C, .., 1)
        moving_mean = self._weight("moving_mean")
        moving_var = self._weight("moving_variance")
        dtype = self._compute_dtype(x, moving_mean)
        x = x.astype(dtype, copy=False)
        batch_mode = bool(training) and self.trainable
        if batch_mode:
            mean = x.mean(axis=reduce_axes)                          # (C,)
            var = x.var(axis=reduce_axes)                            # (C,), biased
            moving_mean *= self.momentum
            moving_mean += (1.0 - self.momentum) * mean.astype(moving_mean.dtype)
            moving_var *= self.momentum
            moving_var += (1.0 - self.momentum) * var.astype(moving_var.dtype)
        else:
            mean = moving_mean.astype(dtype)
            var = moving_var.astype(dtype)
        inv_std = (1.0 / np.sqrt(var + dtype.type(self.epsilon))).astype(dtype)   # (C,)
        x_hat = (x - mean.reshape(bshape)) * inv_std.reshape(bshape)
        gamma = self._weight("gamma").astype(dtype) if self.scale else None
        y = x_hat * gamma.reshape(bshape) if self.scale else x_hat.copy()
        if self.center:
            y += self._weight("beta").astype(dtype).reshape(bshape)
        self.cache = (batch_mode, x_hat, inv_std, gamma, reduce_axes, bshape)
        return y

    def backward(self, dy):
        batch_mode, x_hat, inv_std, gamma, reduce_axes, bshape = self._cached()
        dy = self._input(dy, name="gradient dy").astype(x_hat.dtype, copy=False)
        if dy.shape != x_hat.shape:
            raise ShapeError(f"BatchNormalization: gradient dy has shape {dy.shape}, expected "
                             f"the output shape {x_hat.shape}")
        grads = []
        if self.scale:
            grads.append(np.sum(dy * x_hat, axis=reduce_axes))      # dgamma (C,)
        if self.center:
            grads.append(np.sum(dy, axis=reduce_axes))              # dbeta (C,)
        grads += [None, None]                                        # moving statistics
        self._set_grads(grads)
        dx_hat = dy * gamma.reshape(bshape) if self.scale else dy
        if not batch_mode:
            return dx_hat * inv_std.reshape(bshape)
        # the batch mean and variance depend on x too
        return normalize_backward(dx_hat, x_hat, inv_std.reshape(bshape), reduce_axes)

    def get_config(self):
        where = "BatchNormalization"
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum,
                "epsilon": self.epsilon, "center": self.center, "scale": self.scale,
                "beta_initializer": initializer_config(self.beta_initializer, where),
                "gamma_initializer": initializer_config(self.gamma_initializer, where),
                "moving_mean_initializer": initializer_config(self.moving_mean_initializer,
                                                              where),
                "moving_variance_initializer": initializer_config(
                    self.moving_variance_initializer, where),
                "beta_regularizer": regularizers.serialize(self.beta_regularizer),
                "gamma_regularizer": regularizers.serialize(self.gamma_regularizer)}


class LayerNormalization(Layer):
    """Normalise each sample over ``axis`` (an int or a list; default the last)::

        mean, var = mean and biased variance of x over ``axis``, per sample
        y = gamma * (x - mean) / sqrt(var + epsilon) + beta

    the same in training and inference. ``gamma`` (if ``scale``) and ``beta`` (if
    ``center``) have the sizes of the normalised axes, e.g. ``(C,)`` for ``axis=-1`` or
    ``(H, W, C)`` for ``axis=[1, 2, 3]``; parameters ``2 * C`` for the default.
    ``rms_scaling`` (deprecated in Keras) is accepted only as False; constraints only as None.

    >>> ln = LayerNormalization(epsilon=0.0)
    >>> ln(np.array([[1.0, 3.0], [2.0, 2.5]]))
    array([[-1.,  1.],
           [-1.,  1.]])
    """

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones", beta_regularizer=None,
                 gamma_regularizer=None, beta_constraint=None, gamma_constraint=None,
                 rms_scaling=False, **kwargs):
        super().__init__(**kwargs)
        axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
        if not axes or not all(isinstance(a, Integral) and not isinstance(a, bool)
                               for a in axes):
            raise ConvkitError(f"LayerNormalization: axis must be an int or a list of ints, "
                               f"got {axis!r}")
        if not isinstance(epsilon, Real) or isinstance(epsilon, bool) or \
                not np.isfinite(epsilon) or epsilon < 0:
            raise ConvkitError(f"LayerNormalization: epsilon must be a number >= 0, "
                               f"got {epsilon!r}")
        for name, value in (("rms_scaling", rms_scaling), ("beta_constraint", beta_constraint),
                            ("gamma_constraint", gamma_constraint)):
            if value:
                raise ConvkitError(f"LayerNormalization: {name}={value!r} is not supported")
        self.axis = [int(a) for a in axes] if isinstance(axis, (list, tuple)) else int(axis)
        self.epsilon = float(epsilon)
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)

    def _axes(self, input_shape) -> tuple:
        """The normalised axes as sorted non-negative ints, checked against the shape."""
        rank = len(input_shape)
        axes = self.axis if isinstance(self.axis, list) else [self.axis]
        if rank < 2 or any(not -rank <= a < rank or a % rank == 0 for a in axes):
            raise ShapeError(f"LayerNormalization: axis={self.axis} is not a feature axis of "
                             f"an input of shape {tuple(input_shape)} (batch first)")
        resolved = tuple(sorted({a % rank for a in axes}))
        if any(input_shape[a] is None for a in resolved):
            raise ShapeError(f"LayerNormalization: the normalised axes {self.axis} must have "
                             f"known sizes, got input shape {tuple(input_shape)}")
        return resolved

    def _check_built_shape(self, input_shape) -> None:
        if self.input_shape is not None and len(input_shape) != len(self.input_shape):
            raise ShapeError(f"LayerNormalization: expected a rank-{len(self.input_shape)} "
                             f"input like {self.input_shape}, got shape {tuple(input_shape)}")
        sizes = tuple(input_shape[a] for a in self._axes(input_shape))
        if self._weights and sizes != self._weights[0].value.shape:
            raise ShapeError(f"LayerNormalization: was built for sizes "
                             f"{self._weights[0].value.shape} on axis {self.axis}, got input "
                             f"shape {tuple(input_shape)}")

    def _check_array(self, x) -> None:
        super()._check_array(x)
        self._axes(np.shape(x))

    def build(self, input_shape) -> None:
        _add_gamma_beta(self, tuple(int(input_shape[a]) for a in self._axes(input_shape)))
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        self._axes(input_shape)
        return tuple(input_shape)

    def forward(self, x, training: bool = False):
        x = self._input(x)
        self._check_built_shape(x.shape)
        axes = self._axes(x.shape)
        dtype = self._compute_dtype(x, *(w.value for w in self._weights))
        x = x.astype(dtype, copy=False)
        bshape = [size if a in axes else 1 for a, size in enumerate(x.shape)]  # (1, .., C)
        x_hat, inv_std = normalize(x, axes, dtype.type(self.epsilon))
        gamma = self._weight("gamma").astype(dtype).reshape(bshape) if self.scale else None
        y = x_hat * gamma if self.scale else x_hat.copy()
        if self.center:
            y += self._weight("beta").astype(dtype).reshape(bshape)
        self.cache = (x_hat, inv_std, gamma, axes)
        return y

    def backward(self, dy):
        x_hat, inv_std, gamma, axes = self._cached()
        dy = self._gradient(dy, x_hat.shape, x_hat.dtype)
        sample_axes = tuple(a for a in range(dy.ndim) if a not in axes)   # batch and others
        grads = []
        if self.scale:
            grads.append(np.sum(dy * x_hat, axis=sample_axes))             # dgamma
        if self.center:
            grads.append(np.sum(dy, axis=sample_axes))                      # dbeta
        self._set_grads(grads)
        dx_hat = dy * gamma if self.scale else dy
        return normalize_backward(dx_hat, x_hat, inv_std, axes)

    def get_config(self):
        where = "LayerNormalization"
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale, "rms_scaling": False,
                "beta_initializer": initializer_config(self.beta_initializer, where),
                "gamma_initializer": initializer_config(self.gamma_initializer, where),
                "beta_regularizer": regularizers.serialize(self.beta_regularizer),
                "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
                "beta_constraint": None, "gamma_constraint": None}
