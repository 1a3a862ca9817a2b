"""Convolution layers: :class:`Conv2D` and :class:`DepthwiseConv2D`, thin wrappers over
:func:`convkit.ops.conv2d` and :func:`convkit.ops.conv2d_backward`.

Also the helpers the other image layers share (data format, rank and channel checks,
activation lookup).
"""
from __future__ import annotations

from numbers import Integral

import numpy as np

from .. import initializers, regularizers, shapes
from ..fast import dispatch as _dispatch
from ..errors import ConvkitError, ShapeError
from .base import Layer, data_format_arg, spatial_output_shape

__all__ = ["Conv2D", "DepthwiseConv2D"]

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
_LAYOUTS = {"channels_last": "(batch, height, width, channels)",
            "channels_first": "(batch, channels, height, width)"}


# ----------------------------------------------------------------------------- helpers
def positive_int(value, name: str, where: str) -> int:
    if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
        raise ConvkitError(f"{where}: {name} must be a positive int, got {value!r}")
    return int(value)


def padding_config(padding):
    """A normalised padding as JSON: the string, or ``[[top, bottom], [left, right]]``."""
    return padding if isinstance(padding, str) else [list(p) for p in padding]


def get_activation(identifier, where: str):
    """The activation object for ``identifier`` (``None`` means linear), with a clear error."""
    from ..ops import activations
    try:
        return activations.get("linear" if identifier is None else identifier)
    except (ValueError, KeyError, TypeError) as exc:
        raise ConvkitError(f"{where}: {exc}") from None


def activation_config(activation) -> str:
    return activation.name


def initializer_config(initializer, where: str):
    try:
        return initializers.serialize(initializer)
    except ConvkitError:
        name = getattr(initializer, "__name__", repr(initializer))
        raise ConvkitError(f"{where}: the initializer {name} is a plain callable and cannot "
                           f"be put in a config; use an initializers.Initializer") from None


class ImageLayer(Layer):
    """A layer on 4-D image batches with a ``data_format``."""

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = data_format_arg(data_format, type(self).__name__)

    @property
    def channel_axis(self) -> int:
        return 3 if self.data_format == "channels_last" else 1

    @property
    def layout(self) -> str:
        return _LAYOUTS[self.data_format]

    @property
    def spatial_axes(self) -> tuple[int, int]:
        """The (height, width) axes of the 4-D input."""
        return (1, 2) if self.data_format == "channels_last" else (2, 3)

    def build(self, input_shape) -> None:
        self._check_rank(input_shape)
        super().build(input_shape)

    def _check_built_shape(self, input_shape) -> None:
        self._check_rank(input_shape)

    def _check_rank(self, input_shape) -> tuple:
        input_shape = tuple(input_shape)
        if len(input_shape) != 4:
            raise ShapeError(f"{type(self).__name__}: expected a 4-D input shape {self.layout}, "
                             f"got {input_shape}")
        return input_shape

    def _check_channels(self, input_shape, expected) -> None:
        """``expected`` input channels (None: anything) against ``input_shape``."""
        got = input_shape[self.channel_axis]
        if got is None:
            raise ShapeError(f"{type(self).__name__}: the channel dimension of the input must "
                             f"be known, got input shape {tuple(input_shape)}")
        if expected is not None and got != expected:
            raise ShapeError(f"{type(self).__name__}: expected {expected} input channels, got "
                             f"{got} (input shape {tuple(input_shape)})")

    def _check_array(self, x) -> None:
        self._input(x, 4, self.layout)

    def _image(self, x, expected_channels=None) -> np.ndarray:
        x = self._input(x, 4, self.layout)
        if expected_channels is not None:
            self._check_channels(x.shape, expected_channels)
        return x

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}


# ----------------------------------------------------------------------------- convolutions
class _Conv(ImageLayer):
    """Shared machinery: the kernel as the op wants it, the op call, backward."""

    def __init__(self, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, activation=None, use_bias=True, bias_initializer="zeros",
                 bias_regularizer=None, padding_mode="zeros", **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        where = type(self).__name__
        self.kernel_size = shapes.to_pair(kernel_size, "kernel_size", where)
        self.strides = shapes.to_pair(strides, "strides", where)
        self.dilation_rate = shapes.to_pair(dilation_rate, "dilation_rate", where)
        self.padding = shapes.normalize_padding(padding, where)
        if not isinstance(padding_mode, str) or padding_mode.lower() not in PADDING_MODES:
            raise ConvkitError(f"{where}: padding_mode must be one of {PADDING_MODES}, "
                               f"got {padding_mode!r}")
        self.padding_mode = padding_mode.lower()
        self.activation = get_activation(activation, where)
        self.use_bias = bool(use_bias)
        self.bias_initializer = initializers.get(bias_initializer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.in_channels = None

    # -- what subclasses define
    @property
    def out_channels(self) -> int:
        raise NotImplementedError

    @property
    def groups_for_op(self) -> int:
        raise NotImplementedError

    def _op_kernel(self, kernel):
        """The stored kernel in the op's HWIO layout."""
        return kernel

    def _kernel_grad(self, dkernel):
        """The op's kernel gradient back in the stored layout."""
        return dkernel

    def _check_in_channels(self, channels, input_shape) -> None:
        """Subclass hook for divisibility checks."""

    # -- shapes
    def build(self, input_shape) -> None:
        input_shape = self._check_rank(input_shape)
        self._check_channels(input_shape, None)
        channels = int(input_shape[self.channel_axis])
        self._check_in_channels(channels, input_shape)
        self.in_channels = channels
        self.compute_output_shape(input_shape)      # kernel must fit before weights exist
        self._make_weights(channels)
        super().build(input_shape)

    def _check_built_shape(self, input_shape) -> None:
        self._check_channels(self._check_rank(input_shape), self.in_channels)

    def compute_output_shape(self, input_shape):
        input_shape = self._check_rank(input_shape)
        self._check_channels(input_shape, self.in_channels)
        filters = self._filters_for(input_shape)
        return spatial_output_shape(input_shape, self.data_format,
                                    lambda shape: self._map_shape(shape, filters))

    def _filters_for(self, input_shape) -> int:
        """The output channels for an input of ``input_shape`` (checked)."""
        return self.out_channels

    def _map_shape(self, shape, filters: int) -> tuple:
        """The output shape for a 4-D input ``shape`` in ``data_format``: the convolution's
        (a transposed convolution has its own)."""
        return shapes.conv_output_shape(shape, filters, self.kernel_size, self.strides,
                                        self.padding, self.dilation_rate, self.data_format,
                                        where=type(self).__name__)

    def _add_bias(self, units: int) -> None:
        """The ``(units,)`` bias weight, when the layer uses one."""
        if self.use_bias:
            self.add_weight("bias", (units,), self.bias_initializer,
                            regularizer=self.bias_regularizer)

    # -- passes
    def _op_kwargs(self) -> dict:
        return {"strides": self.strides, "padding": self.padding,
                "dilation_rate": self.dilation_rate, "groups": self.groups_for_op,
                "padding_mode": self.padding_mode, "data_format": self.data_format}

    def forward(self, x, training: bool = False):
        if not training and type(x) is np.ndarray:
            y = self._prepared_forward(x)
            if y is not None:
                return y
        from .. import ops
        x = self._image(x, self.in_channels)
        kernel = self._weight("kernel")
        dtype = self._compute_dtype(x, kernel)
        x = x.astype(dtype, copy=False)
        op_kernel = self._op_kernel(kernel).astype(dtype, copy=False)
        bias = self._weight("bias").astype(dtype, copy=False) if self.use_bias else None
        if self._fused_relu():
            # ReLU applied inside the convolution's last pass; since z > 0 exactly where
            # y > 0, y stands in for z in the cache
            y = ops.conv.conv2d_relu(x, op_kernel, bias, **self._op_kwargs())
            self.cache = (x, op_kernel, y, y)
            return y
        z = self._op(x, op_kernel, bias)
        y = self.activation.forward(z)
        self.cache = (x, op_kernel, z, y)
        return y

    def _prepared_forward(self, x: np.ndarray):
        """Inference through the fast path's prepared form
        (:func:`convkit.fast.dispatch.prepare`): the layer's and the op's checks and the
        plan's set-up run once per input shape, not on every call (a batch-1 ``predict``
        spent more time in them than in the arithmetic). ``None`` when there is no
        prepared form (the usual path then runs); the same numbers either way."""
        if type(self)._op is not _Conv._op or not x.flags.c_contiguous:
            return None
        kernel = self._op_kernel(self._weight("kernel"))
        if x.dtype != kernel.dtype:
            return None
        relu = self._fused_relu()
        self._check_once((x.shape, x.dtype, kernel.shape),
                         lambda: self._image(x, self.in_channels))
        run = _dispatch.prepare("conv2d", "forward", x.shape, x.dtype, kernel.shape,
                               self.strides, self.padding, self.dilation_rate,
                               self.groups_for_op, self.padding_mode, self.data_format, relu)
        if run is None:
            return None
        bias = self._weight("bias").astype(x.dtype, copy=False) if self.use_bias else None
        z = run(x, kernel, bias)
        y = z if relu else self.activation.forward(z)
        self.cache = (x, kernel, z, y)
        return y

    def _inference_step(self):
        if type(self)._op is not _Conv._op or not self._runs_own_forward(_Conv) \
                or self.data_format != "channels_last" \
                or self.padding_mode != "zeros" \
                or self.activation.name not in ("relu", "linear") or self.activation.params:
            return None
        kernel = self._op_kernel(self._weight("kernel"))
        return ("conv2d", kernel.shape, self.strides, self.padding, self.dilation_rate,
                self.groups_for_op, self._fused_relu())

    def _step_weights(self):
        return (self._op_kernel(self._weight("kernel")),
                self._weight("bias") if self.use_bias else None)

    def _op(self, x, kernel, bias):
        """The layer's op: ``conv2d`` here (a subclass may put another op in its place)."""
        from .. import ops
        return ops.conv2d(x, kernel, bias, **self._op_kwargs())

    def _op_backward(self, dz, x, kernel):
        """``(dx, dkernel, dbias)`` of :meth:`_op`."""
        from .. import ops
        return ops.conv2d_backward(dz, x, kernel, input_grad=self.input_gradient,
                                   **self._op_kwargs())

    def _fused_relu(self) -> bool:
        return self.activation.name == "relu" and not self.activation.params

    def backward(self, dy, skip_activation: bool = False):
        from .. import ops
        x, op_kernel, z, y = self._cached()
        dy = self._gradient(dy, y.shape, z.dtype)
        input_grad = self.input_gradient
        if not skip_activation and self._fused_relu():
            # the mask dy * (y > 0) runs inside the gradient's first pass where it can
            dx, dkernel, dbias = ops.conv.conv2d_relu_backward(
                dy, x, op_kernel, y, input_grad=input_grad, **self._op_kwargs())
        else:
            dz = dy if skip_activation else self.activation.backward(dy, z, y)
            dx, dkernel, dbias = self._op_backward(dz, x, op_kernel)
        grads = [self._kernel_grad(dkernel)]
        if self.use_bias:
            grads.append(dbias)
        self._set_grads(grads)
        return dx

    def get_config(self):
        where = type(self).__name__
        return {**super().get_config(),
                "kernel_size": list(self.kernel_size), "strides": list(self.strides),
                "padding": padding_config(self.padding),
                "dilation_rate": list(self.dilation_rate),
                "activation": activation_config(self.activation), "use_bias": self.use_bias,
                "bias_initializer": initializer_config(self.bias_initializer, where),
                "bias_regularizer": regularizers.serialize(self.bias_regularizer),
                "padding_mode": self.padding_mode}


class Conv2D(_Conv):
    """2-D convolution (cross-correlation) layer: ``y = activation(conv2d(x, kernel) + bias)``.

    Shape::

        input   (N, H, W, C_in)        channels_first: (N, C_in, H, W)
        kernel  (kh, kw, C_in // groups, filters)      bias (filters,)
        output  (N, H_out, W_out, filters)
        H_out   valid: floor((H - d*(kh-1) - 1) / s) + 1;  same: ceil(H / s);
                explicit pads: floor((H + top + bottom - d*(kh-1) - 1) / s) + 1

    Parameters: ``kh * kw * (C_in / groups) * filters + filters`` (no ``+ filters`` without
    bias). The kernel starts ``glorot_uniform`` with ``fan_in = kh*kw*C_in/groups`` and
    ``fan_out = kh*kw*filters``; the bias starts at 0.

    ``padding`` is ``"valid"``, ``"same"`` (any case), an int, ``(ph, pw)`` or
    ``((top, bottom), (left, right))``; ``padding_mode`` is ``"zeros"``, ``"reflect"``,
    ``"replicate"`` or ``"circular"``. ``groups`` must divide ``C_in`` and ``filters``.

    >>> conv = Conv2D(32, 3, activation="relu")
    >>> conv.build((None, 28, 28, 1)); conv.output_shape, conv.count_params()
    ((None, 26, 26, 32), 320)
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, padding_mode="zeros",
                 **kwargs):
        super().__init__(kernel_size, strides, padding, data_format, dilation_rate,
                         activation, use_bias, bias_initializer, bias_regularizer,
                         padding_mode, **kwargs)
        self.filters = positive_int(filters, "filters", "Conv2D")
        self.groups = positive_int(groups, "groups", "Conv2D")
        if self.filters % self.groups:
            raise ConvkitError(f"Conv2D: filters={self.filters} is not divisible by "
                               f"groups={self.groups}")
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)

    @property
    def out_channels(self) -> int:
        return self.filters

    @property
    def groups_for_op(self) -> int:
        return self.groups

    def _check_in_channels(self, channels, input_shape) -> None:
        if channels % self.groups:
            raise ShapeError(f"Conv2D: input channels {channels} are not divisible by "
                             f"groups={self.groups} (input shape {tuple(input_shape)})")

    def _make_weights(self, channels: int) -> None:
        kh, kw = self.kernel_size
        per_group = channels // self.groups
        self.add_weight("kernel", (kh, kw, per_group, self.filters), self.kernel_initializer,
                        fan_in=kh * kw * per_group, fan_out=kh * kw * self.filters,
                        regularizer=self.kernel_regularizer)
        self._add_bias(self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "groups": self.groups,
                "kernel_initializer": initializer_config(self.kernel_initializer, "Conv2D"),
                "kernel_regularizer": regularizers.serialize(self.kernel_regularizer)}


class DepthwiseConv2D(_Conv):
    """Depthwise 2-D convolution: each input channel convolved with its own
    ``depth_multiplier`` kernels (no mixing across channels).

    Shape::

        input   (N, H, W, C)                 channels_first: (N, C, H, W)
        kernel  (kh, kw, C, depth_multiplier)  (Keras's layout)      bias (C * dm,)
        output  (N, H_out, W_out, C * dm), output channel c*dm + m from channel c, kernel m
        H_out   as for Conv2D

    It calls :func:`convkit.ops.conv2d` with ``groups=C`` and the kernel viewed as
    ``(kh, kw, 1, C*dm)``. Parameters: ``kh * kw * C * dm + C * dm``. Like Keras, the kernel
    initializer's fans come from the kernel shape: ``fan_in = kh*kw*C``, ``fan_out = kh*kw*dm``.

    >>> layer = DepthwiseConv2D(3, depth_multiplier=2)
    >>> layer.build((None, 8, 8, 4)); layer.output_shape, layer.count_params()
    ((None, 6, 6, 8), 80)
    """

    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier=1,
                 data_format=None, dilation_rate=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", bias_initializer="zeros",
                 depthwise_regularizer=None, bias_regularizer=None, padding_mode="zeros",
                 **kwargs):
        super().__init__(kernel_size, strides, padding, data_format, dilation_rate,
                         activation, use_bias, bias_initializer, bias_regularizer,
                         padding_mode, **kwargs)
        self.depth_multiplier = positive_int(depth_multiplier, "depth_multiplier",
                                             "DepthwiseConv2D")
        self.depthwise_initializer = initializers.get(depthwise_initializer)
        self.depthwise_regularizer = regularizers.get(depthwise_regularizer)

    @property
    def out_channels(self):
        return None if self.in_channels is None else self.in_channels * self.depth_multiplier

    @property
    def groups_for_op(self) -> int:
        return self.in_channels

    def _filters_for(self, input_shape) -> int:
        return input_shape[self.channel_axis] * self.depth_multiplier

    def _make_weights(self, channels: int) -> None:
        kh, kw = self.kernel_size
        self.add_weight("kernel", (kh, kw, channels, self.depth_multiplier),
                        self.depthwise_initializer, regularizer=self.depthwise_regularizer)
        self._add_bias(channels * self.depth_multiplier)

    def _op_kernel(self, kernel):
        kh, kw, channels, multiplier = kernel.shape
        return kernel.reshape(kh, kw, 1, channels * multiplier)    # (kh, kw, 1, C*dm)

    def _kernel_grad(self, dkernel):
        return dkernel.reshape(self._weight("kernel").shape)       # (kh, kw, C, dm)

    def get_config(self):
        where = "DepthwiseConv2D"
        return {**super().get_config(), "depth_multiplier": self.depth_multiplier,
                "depthwise_initializer": initializer_config(self.depthwise_initializer, where),
                "depthwise_regularizer": regularizers.serialize(self.depthwise_regularizer)}
