"""Activation layers with their own parameters, as in Keras 3: :class:`LeakyReLU`,
:class:`ELU`, :class:`Softmax` (fixed functions from :mod:`convkit.ops.activations`) and
:class:`PReLU` (learned negative slopes). Output shape = input shape."""
from __future__ import annotations

from numbers import Integral, Real

import numpy as np

from .. import initializers, regularizers
from ..errors import ConvkitError, ShapeError
from ..ops import activations
from .base import Layer
from .conv import initializer_config
from .core import Activation

__all__ = ["LeakyReLU", "ELU", "Softmax", "PReLU"]


def _number(value, name: str, where: str, minimum=None) -> float:
    if not isinstance(value, Real) or isinstance(value, bool) or not np.isfinite(value) \
            or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ConvkitError(f"{where}: {name} must be a finite number{bound}, got {value!r}")
    return float(value)


class _FixedActivation(Activation):
    """An :class:`Activation` layer whose function is fixed by the subclass's own
    arguments; its config holds those arguments instead of an ``activation`` entry."""

    def __init__(self, activation, **kwargs):
        Layer.__init__(self, **kwargs)
        self.activation = activation

    def get_config(self):
        return Layer.get_config(self)


class LeakyReLU(_FixedActivation):
    """``x`` if ``x > 0`` else ``negative_slope * x``; Keras's layer default slope is 0.3
    (the ``"leaky_relu"`` activation's is 0.2). ``alpha=`` is Keras 2's name for it.

    >>> LeakyReLU()(np.array([[-1.0, 2.0]]))
    array([[-0.3,  2. ]])
    """

    def __init__(self, negative_slope=0.3, alpha=None, **kwargs):
        slope = _number(negative_slope if alpha is None else alpha, "negative_slope",
                        "LeakyReLU", minimum=0)
        super().__init__(activations.get("leaky_relu", negative_slope=slope), **kwargs)
        self.negative_slope = slope

    def get_config(self):
        return {**super().get_config(), "negative_slope": self.negative_slope}


class ELU(_FixedActivation):
    """``x`` if ``x > 0`` else ``alpha * (exp(x) - 1)``.

    >>> ELU(alpha=2.0)(np.array([[0.0, 1.0]]))
    array([[0., 1.]])
    """

    def __init__(self, alpha=1.0, **kwargs):
        alpha = _number(alpha, "alpha", "ELU")
        super().__init__(activations.get("elu", alpha=alpha), **kwargs)
        self.alpha = alpha

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


class Softmax(_FixedActivation):
    """``exp(x) / sum(exp(x))`` along ``axis`` (an int or a list of ints; default the last;
    the batch axis 0 is refused).

    With ``axis=-1`` the layer fuses with a categorical cross-entropy loss like
    ``Activation("softmax")`` does.

    >>> Softmax(axis=1)(np.log(np.array([[[1.0], [3.0]]]))).ravel()
    array([0.25, 0.75])
    """

    def __init__(self, axis=-1, **kwargs):
        axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
        if not axes or not all(isinstance(a, Integral) and not isinstance(a, bool)
                               for a in axes):
            raise ConvkitError(f"Softmax: axis must be an int or a list of ints, got {axis!r}")
        self.axis = int(axes[0]) if not isinstance(axis, (list, tuple)) else [int(a)
                                                                               for a in axes]
        forward, backward, _ = activations.ACTIVATIONS["softmax"]
        # only the last axis is what a loss fused with "softmax" assumes
        name = "softmax" if self.axis == -1 else f"softmax(axis={self.axis})"
        super().__init__(activations.Activation(
            name, forward, backward, axis=tuple(axes) if len(axes) > 1 else axes[0]), **kwargs)

    def _check_axes(self, shape) -> None:
        rank = len(shape)
        for a in (self.axis if isinstance(self.axis, list) else [self.axis]):
            if not -rank <= a < rank or a % rank == 0:
                raise ShapeError(f"Softmax: axis={self.axis} is not a feature axis of an input "
                                 f"of shape {tuple(shape)}")

    def _check_array(self, x) -> None:
        super()._check_array(x)
        self._check_axes(np.shape(x))

    def compute_output_shape(self, input_shape):
        self._check_axes(input_shape)
        return tuple(input_shape)

    def forward(self, x, training: bool = False):
        x = self._input(x)
        self._check_axes(x.shape)
        return super().forward(x, training)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


class PReLU(Layer):
    """Parametric ReLU with learned slopes: ``x`` if ``x > 0`` else ``alpha * x``.

    ``alpha`` has the input's shape without the batch axis, with size 1 on each of
    ``shared_axes`` (1-based like the input's axes: ``shared_axes=[1, 2]`` on images gives
    one slope per channel, ``(1, 1, C)``). Its gradient sums ``dy * x`` over the batch, the
    shared axes and the positions where ``x <= 0``. Starts at ``alpha_initializer``
    (Keras's ``"Zeros"``: a plain ReLU).

    >>> layer = PReLU(alpha_initializer=initializers.Constant(0.5), shared_axes=[1, 2])
    >>> layer(np.array([[[[-2.0]], [[4.0]]]])).ravel(), layer.get_weights()[0].shape
    (array([-1.,  4.]), (1, 1, 1))
    """

    def __init__(self, alpha_initializer="Zeros", alpha_regularizer=None,
                 alpha_constraint=None, shared_axes=None, **kwargs):
        super().__init__(**kwargs)
        if alpha_constraint is not None:
            raise ConvkitError(f"PReLU: weight constraints are not supported, got "
                               f"alpha_constraint={alpha_constraint!r}")
        if shared_axes is not None:
            shared_axes = list(shared_axes) if isinstance(shared_axes, (list, tuple)) \
                else [shared_axes]
            if not all(isinstance(a, Integral) and not isinstance(a, bool) and a >= 1
                       for a in shared_axes):
                raise ConvkitError(f"PReLU: shared_axes must be ints >= 1 (axis 0 is the "
                                   f"batch), got {shared_axes!r}")
            shared_axes = [int(a) for a in shared_axes]
        self.shared_axes = shared_axes
        self.alpha_initializer = initializers.get(alpha_initializer)
        self.alpha_regularizer = regularizers.get(alpha_regularizer)

    def _alpha_shape(self, input_shape) -> tuple:
        input_shape = tuple(input_shape)
        shared = set(self.shared_axes or ())
        if len(input_shape) < 2 or any(a >= len(input_shape) for a in shared):
            raise ShapeError(f"PReLU: shared_axes={self.shared_axes} do not fit an input of "
                             f"shape {input_shape} (rank >= 2, batch first)")
        shape = tuple(1 if axis in shared else size
                      for axis, size in enumerate(input_shape) if axis > 0)
        if None in shape:
            raise ShapeError(f"PReLU: every axis not in shared_axes must have a known size, "
                             f"got input shape {input_shape} with shared_axes="
                             f"{self.shared_axes}")
        return shape

    def _check_built_shape(self, input_shape) -> None:
        expected = self._weight("alpha").shape
        shape = tuple(input_shape)
        if len(shape) != len(expected) + 1 or any(
                a != 1 and s is not None and s != a for a, s in zip(expected, shape[1:])):
            raise ShapeError(f"PReLU: was built with alpha of shape {expected} (shared_axes="
                             f"{self.shared_axes}), which does not fit input shape {shape}")

    def build(self, input_shape) -> None:
        self.add_weight("alpha", self._alpha_shape(input_shape), self.alpha_initializer,
                        regularizer=self.alpha_regularizer)
        super().build(input_shape)

    def forward(self, x, training: bool = False):
        x = self._input(x)
        self._check_built_shape(x.shape)
        alpha = self._weight("alpha")
        dtype = self._compute_dtype(x, alpha)
        x, alpha = x.astype(dtype, copy=False), alpha.astype(dtype, copy=False)
        self.cache = (x, alpha)
        return activations.prelu(x, alpha)

    def backward(self, dy):
        x, alpha = self._cached()
        dy = self._gradient(dy, x.shape, x.dtype)
        dx, dalpha = activations.prelu_backward(dy, x, alpha)
        # sum over the batch and the shared axes: (N, ...) -> alpha's shape
        broadcast = (0,) + tuple(axis + 1 for axis, size in enumerate(alpha.shape)
                                 if size == 1 and x.shape[axis + 1] != 1)
        self._set_grads([dalpha.sum(axis=broadcast, keepdims=True)[0]])
        return dx

    def get_config(self):
        return {**super().get_config(),
                "alpha_initializer": initializer_config(self.alpha_initializer, "PReLU"),
                "alpha_regularizer": regularizers.serialize(self.alpha_regularizer),
                "alpha_constraint": None,
                "shared_axes": self.shared_axes}
