"""Core layers: :class:`InputLayer` / :func:`Input`, :class:`Dense`, :class:`Activation`,
:class:`ReLU` and :class:`Dropout`."""
from __future__ import annotations

from numbers import Integral, Real

import numpy as np

from .. import initializers, regularizers
from ..fast.runtime.threads import THREADED_PRODUCT
from ..errors import ConvkitError, ShapeError
from ..ops.activations import is_builtin
from .base import Layer, SymbolicTensor
from .conv import activation_config, get_activation, initializer_config, positive_int

__all__ = ["InputLayer", "Input", "Dense", "Activation", "ReLU", "Dropout"]


def _shape_arg(shape, where: str) -> tuple:
    if isinstance(shape, Integral) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or not all(
            s is None or (isinstance(s, Integral) and not isinstance(s, bool) and s > 0)
            for s in shape):
        raise ShapeError(f"{where}: shape must be a tuple of positive ints (or None), "
                         f"got {shape!r}")
    return tuple(None if s is None else int(s) for s in shape)


# ----------------------------------------------------------------------------- input
class InputLayer(Layer):
    """The entry point of a model: passes its input through, checking its shape.

    ``shape`` excludes the batch axis; ``batch_size`` fixes it (default ``None``, any).
    Built on construction; ``layer.output`` is the :class:`SymbolicTensor` that
    :func:`Input` returns. Usable as the first entry of a ``Sequential``.

    >>> InputLayer((28, 28, 1)).output_shape
    (None, 28, 28, 1)
    """

    def __init__(self, shape=None, batch_size=None, dtype=None, name=None, batch_shape=None,
                 input_shape=None, **kwargs):
        if batch_shape is not None:
            batch_shape = tuple(batch_shape)
            if len(batch_shape) < 1:
                raise ShapeError(f"InputLayer: batch_shape must include the batch axis, "
                                 f"got {batch_shape!r}")
            batch_size, shape = batch_shape[0], batch_shape[1:]
        if shape is None:
            shape = input_shape
        if shape is None:
            raise ShapeError("InputLayer: needs a shape, e.g. InputLayer((28, 28, 1))")
        shape = _shape_arg(shape, "InputLayer")
        if batch_size is not None:
            batch_size = positive_int(batch_size, "batch_size", "InputLayer")
        super().__init__(name=name, dtype=dtype, input_shape=shape, **kwargs)
        self.shape = shape
        self.batch_size = batch_size
        self.build((batch_size,) + shape)
        self.output = SymbolicTensor(self.output_shape, layer=self, inputs=[])

    def forward(self, x, training: bool = False):
        x = self._input(x, len(self.input_shape))
        for expected, got in zip(self.input_shape, x.shape):
            if expected is not None and expected != got:
                raise ShapeError(f"InputLayer: expected input shape {self.input_shape}, got "
                                 f"{x.shape}")
        self.cache = x.shape
        return x

    def backward(self, dy):
        return self._gradient(dy, self._cached())

    def get_config(self):
        return {"name": self.name, "batch_shape": [self.batch_size, *self.shape],
                "dtype": self.dtype}

    def extra_repr(self) -> str:
        return f"shape={self.shape}" + (f", batch_size={self.batch_size}"
                                        if self.batch_size is not None else "")


def Input(shape, batch_size=None, name=None, dtype=None) -> SymbolicTensor:
    """A symbolic input for the functional API: ``shape`` excludes the batch axis.

    Returns a :class:`SymbolicTensor` of shape ``(batch_size, *shape)`` whose ``.layer`` is
    an :class:`InputLayer`.

    >>> Input((28, 28, 1)).shape
    (None, 28, 28, 1)
    """
    return InputLayer(shape, batch_size=batch_size, dtype=dtype, name=name).output


# ----------------------------------------------------------------------------- dense
class Dense(Layer):
    """Fully connected layer on the last axis: ``y = activation(x @ kernel + bias)``.

    Shape: input ``(N, ..., in)``, kernel ``(in, units)``, bias ``(units,)``, output
    ``(N, ..., units)``. Parameters ``in * units + units``. The kernel starts
    ``glorot_uniform`` (``fan_in = in``, ``fan_out = units``), the bias at 0.

    >>> dense = Dense(10, activation="softmax")
    >>> dense.build((None, 1600)); dense.output_shape, dense.count_params()
    ((None, 10), 16010)
    """

    def __init__(self, units, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.units = positive_int(units, "units", "Dense")
        self.activation = get_activation(activation, "Dense")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.in_features = None

    def _check_shape(self, input_shape) -> tuple:
        input_shape = tuple(input_shape)
        if len(input_shape) < 2:
            raise ShapeError(f"Dense: expected an input of rank >= 2 (batch, ..., features), "
                             f"got shape {input_shape}")
        if input_shape[-1] is None:
            raise ShapeError(f"Dense: the last dimension of the input must be known, got "
                             f"input shape {input_shape}")
        if self.in_features is not None and input_shape[-1] != self.in_features:
            raise ShapeError(f"Dense: expected {self.in_features} input features, got "
                             f"{input_shape[-1]} (input shape {input_shape})")
        return input_shape

    def build(self, input_shape) -> None:
        input_shape = self._check_shape(input_shape)
        self.in_features = int(input_shape[-1])
        self.add_weight("kernel", (self.in_features, self.units), self.kernel_initializer,
                        fan_in=self.in_features, fan_out=self.units,
                        regularizer=self.kernel_regularizer)
        if self.use_bias:
            self.add_weight("bias", (self.units,), self.bias_initializer,
                            regularizer=self.bias_regularizer)
        super().build(input_shape)

    def _check_built_shape(self, input_shape) -> None:
        self._check_shape(input_shape)

    def compute_output_shape(self, input_shape):
        input_shape = self._check_shape(input_shape)
        return input_shape[:-1] + (self.units,)

    def _inference_step(self):
        if not is_builtin(self.activation) or not self._runs_own_forward(Dense):
            return None
        return ("dense", self._weight("kernel").shape, self.activation.name)

    def _step_weights(self):
        return self._weight("kernel"), self._weight("bias") if self.use_bias else None

    def forward(self, x, training: bool = False):
        if not training and type(x) is np.ndarray and x.ndim == 2:
            y = self._small_forward(x)
            if y is not None:
                return y
        from .. import ops
        x = self._input(x)
        self._check_shape(x.shape)
        kernel = self._weight("kernel")
        dtype = self._compute_dtype(x, kernel)
        x, kernel = x.astype(dtype, copy=False), kernel.astype(dtype, copy=False)
        bias = self._weight("bias").astype(dtype, copy=False) if self.use_bias else None
        z = ops.dense(x, kernel, bias)
        y = self.activation.forward(z)
        self.cache = (x, kernel, z, y)
        return y

    def _small_forward(self, x: np.ndarray):
        """Inference on a few rows (a ``predict`` of one image or a few dozen): one plain
        product, the checks run once per input shape. ``None`` for a product big enough for
        the threaded one (the usual path then runs); the same numbers either way."""
        kernel = self._weight("kernel")
        if x.dtype != kernel.dtype or x.shape[0] * kernel.size >= THREADED_PRODUCT:
            return None
        self._check_once((x.shape, x.dtype), lambda: self._check_shape(self._input(x).shape))
        z = x @ kernel
        if self.use_bias:
            z += self._weight("bias")
        y = self.activation.forward(z)
        self.cache = (x, kernel, z, y)
        return y

    def backward(self, dy, skip_activation: bool = False):
        from .. import ops
        x, kernel, z, y = self._cached()
        dy = self._gradient(dy, y.shape, z.dtype)
        dz = dy if skip_activation else self.activation.backward(dy, z, y)
        dx, dkernel, dbias = ops.dense_backward(dz, x, kernel, input_grad=self.input_gradient)
        self._set_grads([dkernel, dbias] if self.use_bias else [dkernel])
        return dx

    def get_config(self):
        return {**super().get_config(), "units": self.units,
                "activation": activation_config(self.activation), "use_bias": self.use_bias,
                "kernel_initializer": initializer_config(self.kernel_initializer, "Dense"),
                "bias_initializer": initializer_config(self.bias_initializer, "Dense"),
                "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": regularizers.serialize(self.bias_regularizer)}


# ----------------------------------------------------------------------------- activations
class Activation(Layer):
    """Applies an activation element-wise (``softmax`` on the last axis); any input shape.

    >>> Activation("relu")(np.array([[-1.0, 2.0]]))
    array([[0., 2.]])
    """

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = get_activation(activation, "Activation")

    def forward(self, x, training: bool = False):
        x = self._input(x)
        y = self.activation.forward(x)
        self.cache = (x, y)
        return y

    def backward(self, dy, skip_activation: bool = False):
        x, y = self._cached()
        dy = self._gradient(dy, y.shape, y.dtype)
        return dy if skip_activation else self.activation.backward(dy, x, y)

    def get_config(self):
        return {**super().get_config(), "activation": activation_config(self.activation)}


def _non_negative(value, name: str, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if not isinstance(value, Real) or isinstance(value, bool) or not np.isfinite(value) \
            or value < 0:
        raise ConvkitError(f"ReLU: {name} must be a number >= 0, got {value!r}")
    return float(value)


class ReLU(Layer):
    """Keras's parameterised ReLU::

        f(x) = max_value                         if x >= max_value
        f(x) = x                                 if threshold <= x < max_value
        f(x) = negative_slope * (x - threshold)  otherwise

    >>> ReLU(max_value=6.0)(np.array([[-1.0, 3.0, 8.0]]))
    array([[0., 3., 6.]])
    """

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__(**kwargs)
        self.max_value = _non_negative(max_value, "max_value", allow_none=True)
        self.negative_slope = _non_negative(negative_slope, "negative_slope")
        self.threshold = _non_negative(threshold, "threshold")

    def forward(self, x, training: bool = False):
        x = self._input(x)
        below = x < self.threshold
        negative = self.negative_slope * (x - self.threshold) if self.negative_slope else 0.0
        y = np.where(below, negative, x).astype(x.dtype)
        if self.max_value is not None:
            y = np.minimum(y, np.asarray(self.max_value, dtype=x.dtype))
        self.cache = x
        return y

    def backward(self, dy):
        x = self._cached()
        dy = self._gradient(dy, x.shape, x.dtype)
        slope = np.where(x < self.threshold, self.negative_slope, 1.0)
        if self.max_value is not None:
            slope = np.where(x >= self.max_value, 0.0, slope)
        return (dy * slope).astype(x.dtype, copy=False)

    def get_config(self):
        return {**super().get_config(), "max_value": self.max_value,
                "negative_slope": self.negative_slope, "threshold": self.threshold}


# ----------------------------------------------------------------------------- dropout
class Dropout(Layer):
    """Randomly zeroes a fraction ``rate`` of the units in training and scales the kept ones
    by ``1 / (1 - rate)``; the identity at inference (``training=False``).

    ``noise_shape`` (batch axis included, ``None`` entries taken from the input) shares one
    mask value along axes of size 1, e.g. ``(None, 1, 1, C)`` drops whole channels. The mask
    comes from the layer's own generator (``seed=``), is kept in ``layer.mask`` and reused
    by ``backward``.

    >>> Dropout(0.5)(np.ones((2, 3)))           # inference: unchanged
    array([[1., 1., 1.],
           [1., 1., 1.]])
    """

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if not isinstance(rate, Real) or isinstance(rate, bool) or not 0 <= rate <= 1:
            raise ConvkitError(f"Dropout: rate must be a number in [0, 1], got {rate!r}")
        self.rate = float(rate)
        self.noise_shape = None if noise_shape is None else tuple(noise_shape)
        self.mask = None

    def _mask_shape(self, shape) -> tuple:
        if self.noise_shape is None:
            return shape
        if len(self.noise_shape) != len(shape) or any(
                n is not None and n != 1 and n != s for n, s in zip(self.noise_shape, shape)):
            raise ShapeError(f"Dropout: noise_shape {self.noise_shape} does not fit input shape "
                             f"{shape}: each entry must be None, 1 or the input's size")
        return tuple(s if n is None else n for n, s in zip(self.noise_shape, shape))

    def _inference_step(self):
        return ("identity",) if self._runs_own_forward(Dropout) else None

    def forward(self, x, training: bool = False):
        x = self._input(x)
        if not training or self.rate == 0.0:
            self.cache = ("identity", x.shape)
            return x
        # uniform draws in float32 (half the random bits and memory of float64)
        keep = self.rng.random(self._mask_shape(x.shape), dtype=np.float32) >= self.rate
        self.mask = keep
        scale = 0.0 if self.rate == 1.0 else 1.0 / (1.0 - self.rate)
        multiplier = np.multiply(keep, x.dtype.type(scale), dtype=x.dtype)  # broadcastable
        self.cache = ("mask", multiplier)
        return x * multiplier

    def backward(self, dy):
        kind, value = self._cached()
        dy = self._input(dy, name="gradient dy")
        if kind == "identity":
            if dy.shape != value:
                raise ShapeError(f"Dropout: gradient dy has shape {dy.shape}, expected {value}")
            return dy
        if np.broadcast_shapes(dy.shape, value.shape) != dy.shape:
            raise ShapeError(f"Dropout: gradient dy has shape {dy.shape}, which does not match "
                             f"the mask shape {value.shape}")
        return dy * value.astype(dy.dtype, copy=False)

    def get_config(self):
        cfg = {**super().get_config(), "rate": self.rate,
               "noise_shape": None if self.noise_shape is None else list(self.noise_shape)}
        cfg.setdefault("seed", None)
        return cfg
