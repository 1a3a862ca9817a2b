"""1-D convolution on sequences ``(batch, steps, channels)``: :class:`Conv1D`, and
:class:`StepsLayer`, the base of every 1-D layer.

A 1-D layer runs the 2-D op on a height-1 view of its input: ``(N, steps, C)`` is the image
``(N, 1, steps, C)`` (channels_first ``(N, C, steps)`` is ``(N, C, 1, steps)``), the
kernel ``(k, C_in // groups, filters)`` is ``(1, k, C_in // groups, filters)``, and the
sizes come from the same :mod:`convkit.shapes` functions (:func:`convkit.shapes.steps_padding`
adds ``"causal"``).
"""
from __future__ import annotations

from numbers import Integral

import numpy as np

from .. import initializers, regularizers, shapes
from ..errors import ConvkitError, ShapeError
from .base import Layer, data_format_arg, spatial_output_shape
from .conv import activation_config, get_activation, initializer_config, positive_int

__all__ = ["StepsLayer", "Conv1D", "single_int"]

_LAYOUTS = {"channels_last": "(batch, steps, channels)",
            "channels_first": "(batch, channels, steps)"}


def single_int(value, name: str, where: str) -> int:
    """``3`` or ``(3,)`` -> ``3`` (Keras writes 1-D sizes as 1-tuples)."""
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = value[0]
    if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
        raise ConvkitError(f"{where}: {name} must be a positive int or a 1-tuple, got {value!r}")
    return int(value)


class StepsLayer(Layer):
    """A layer on 3-D sequence batches with a ``data_format``, computed by 2-D ops on the
    height-1 view (see the module docstring). Subclasses give ``_image_output_shape``
    (the 2-D layer's output shape for the 4-D view)."""

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = data_format_arg(data_format, type(self).__name__)

    @property
    def channel_axis(self) -> int:
        return 2 if self.data_format == "channels_last" else 1

    @property
    def _height_axis(self) -> int:
        return 1 if self.data_format == "channels_last" else 2

    def _check_rank(self, input_shape) -> tuple:
        input_shape = tuple(input_shape)
        if len(input_shape) != 3:
            raise ShapeError(f"{type(self).__name__}: expected a 3-D input shape "
                             f"{_LAYOUTS[self.data_format]}, got {input_shape}")
        return input_shape

    def _check_array(self, x) -> None:
        self._steps(x)

    def _check_built_shape(self, input_shape) -> None:
        self.compute_output_shape(input_shape)

    def _steps(self, x) -> np.ndarray:
        return self._input(x, 3, _LAYOUTS[self.data_format])

    def _as_image(self, x: np.ndarray) -> np.ndarray:
        return np.expand_dims(x, self._height_axis)        # (N, 1, steps, C) / (N, C, 1, steps)

    def _as_steps(self, y: np.ndarray) -> np.ndarray:
        return np.squeeze(y, axis=self._height_axis)       # (N, steps, C) / (N, C, steps)

    def compute_output_shape(self, input_shape):
        image_shape = shapes.steps_as_image_shape(self._check_rank(input_shape),
                                                  self.data_format)
        return shapes.image_as_steps_shape(self._image_output_shape(image_shape),
                                           self.data_format)

    def _image_output_shape(self, image_shape) -> tuple:
        return image_shape

    def build(self, input_shape) -> None:
        self.compute_output_shape(input_shape)
        super().build(input_shape)

    # -- layers without weights: the 2-D op and its backward on the height-1 views
    def _image_forward(self, image: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _image_backward(self, dy: np.ndarray, image: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def forward(self, x, training: bool = False):
        image = self._as_image(self._steps(x))                     # (N, 1, steps, C)
        y = self._image_forward(image)                             # (N, 1, steps_out, C)
        self.cache = (image, y.shape)
        return self._as_steps(y)

    def backward(self, dy):
        image, y_shape = self._cached()
        dy = self._gradient(dy, shapes.image_as_steps_shape(y_shape, self.data_format),
                            image.dtype)
        return self._as_steps(self._image_backward(self._as_image(dy), image))

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}


class Conv1D(StepsLayer):
    """1-D convolution (cross-correlation) over the steps of a sequence:
    ``y = activation(conv1d(x, kernel) + bias)``.

    Shape::

        input   (N, steps, C_in)           channels_first: (N, C_in, steps)
        kernel  (k, C_in // groups, filters)    (Keras's layout)      bias (filters,)
        output  (N, steps_out, filters)
        steps_out  valid: floor((steps - d*(k-1) - 1) / s) + 1;  same: ceil(steps / s);
                   causal: floor((steps - 1) / s) + 1 (d*(k-1) zeros before the steps)

    Parameters: ``k * (C_in / groups) * filters + filters``; the kernel starts
    ``glorot_uniform`` with ``fan_in = k*C_in/groups``, ``fan_out = k*filters``.

    >>> conv = Conv1D(16, 5, padding="causal", dilation_rate=2)
    >>> conv.build((None, 100, 8)); conv.output_shape, conv.count_params()
    ((None, 100, 16), 656)
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        where = "Conv1D"
        self.filters = positive_int(filters, "filters", where)
        self.kernel_size = single_int(kernel_size, "kernel_size", where)
        self.strides = single_int(strides, "strides", where)
        self.dilation_rate = single_int(dilation_rate, "dilation_rate", where)
        self.groups = positive_int(groups, "groups", where)
        if self.filters % self.groups:
            raise ConvkitError(f"{where}: filters={self.filters} is not divisible by "
                               f"groups={self.groups}")
        self._padding_2d = shapes.steps_padding(padding, self.kernel_size, self.dilation_rate,
                                                where)
        self.padding = padding.lower() if isinstance(padding, str) else \
            int(padding) if isinstance(padding, Integral) else tuple(int(p) for p in padding)
        self.activation = get_activation(activation, where)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.in_channels = None

    def _op_kwargs(self) -> dict:
        return {"strides": (1, self.strides), "padding": self._padding_2d,
                "dilation_rate": (1, self.dilation_rate), "groups": self.groups,
                "data_format": self.data_format}

    def _image_output_shape(self, image_shape):
        channels = image_shape[3 if self.data_format == "channels_last" else 1]
        input_shape = shapes.image_as_steps_shape(image_shape, self.data_format)
        if channels is None:
            raise ShapeError(f"Conv1D: the channel dimension of the input must be known, got "
                             f"input shape {input_shape}")
        if self.in_channels is not None and channels != self.in_channels:
            raise ShapeError(f"Conv1D: expected {self.in_channels} input channels, got "
                             f"{channels} (input shape {input_shape})")
        if channels % self.groups:
            raise ShapeError(f"Conv1D: input channels {channels} are not divisible by "
                             f"groups={self.groups}")
        op = self._op_kwargs()
        return spatial_output_shape(
            image_shape, self.data_format,
            lambda shape: shapes.conv_output_shape(
                shape, self.filters, (1, self.kernel_size), op["strides"], op["padding"],
                op["dilation_rate"], self.data_format, where="Conv1D"))

    def build(self, input_shape) -> None:
        self.compute_output_shape(input_shape)
        channels = int(self._check_rank(input_shape)[self.channel_axis])
        per_group = channels // self.groups
        k = self.kernel_size
        self.add_weight("kernel", (k, per_group, self.filters), self.kernel_initializer,
                        fan_in=k * per_group, fan_out=k * self.filters,
                        regularizer=self.kernel_regularizer)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer,
                            regularizer=self.bias_regularizer)
        self.in_channels = channels
        super().build(input_shape)

    def forward(self, x, training: bool = False):
        from .. import ops
        x = self._steps(x)
        self.compute_output_shape((None,) + x.shape[1:])
        kernel = self._weight("kernel")
        dtype = self._compute_dtype(x, kernel)
        image = self._as_image(x.astype(dtype, copy=False))
        kernel = kernel.astype(dtype, copy=False)[None]            # (1, k, C_in/groups, F)
        bias = self._weight("bias").astype(dtype, copy=False) if self.use_bias else None
        z = ops.conv2d(image, kernel, bias, **self._op_kwargs())    # (N, 1, steps_out, F)
        y = self.activation.forward(z)
        self.cache = (image, kernel, z, y)
        return self._as_steps(y)

    def backward(self, dy, skip_activation: bool = False):
        from .. import ops
        image, kernel, z, y = self._cached()
        dy = self._as_image(self._gradient(dy, self._as_steps(y).shape, z.dtype))
        dz = dy if skip_activation else self.activation.backward(dy, z, y)
        dx, dkernel, dbias = ops.conv2d_backward(dz, image, kernel,
                                                 input_grad=self.input_gradient,
                                                 **self._op_kwargs())
        self._set_grads([dkernel[0], dbias] if self.use_bias else [dkernel[0]])
        return None if dx is None else self._as_steps(dx)

    def get_config(self):
        where = "Conv1D"
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": [self.kernel_size], "strides": [self.strides],
                "padding": self.padding if isinstance(self.padding, (str, int))
                else list(self.padding),
                "dilation_rate": [self.dilation_rate], "groups": self.groups,
                "activation": activation_config(self.activation), "use_bias": self.use_bias,
                "kernel_initializer": initializer_config(self.kernel_initializer, where),
                "bias_initializer": initializer_config(self.bias_initializer, where),
                "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": regularizers.serialize(self.bias_regularizer)}
