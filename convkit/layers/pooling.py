"""Pooling layers over :mod:`convkit.ops` pooling: max, average and their global forms.

Shape (channels_last; channels_first is ``(N, C, H, W)``)::

    input   (N, H, W, C)
    output  (N, H_out, W_out, C)
    H_out   valid: floor((H - k) / s) + 1     same: ceil(H / s)
            explicit pads (at most half the window): floor((H + top + bottom - k) / s) + 1
            ceil_mode=True: ceil instead of floor (a window starting in the right padding
            is dropped)

``strides=None`` means ``strides = pool_size``. Padded cells never count: -inf for max
pooling, left out of the divisor for average pooling unless ``count_include_pad=True``.
"""
from __future__ import annotations

import numpy as np

from .. import shapes
from ..fast import dispatch as _dispatch
from ..errors import ShapeError
from .base import spatial_output_shape
from .conv import ImageLayer, padding_config

__all__ = ["MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D",
           "GlobalMaxPooling2D"]


class _Pooling2D(ImageLayer):
    """Shared by max and average pooling: arguments, shapes, the dy check."""

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None,
                 ceil_mode=False, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        where = type(self).__name__
        self.pool_size = shapes.to_pair(pool_size, "pool_size", where)
        self.strides = self.pool_size if strides is None else \
            shapes.to_pair(strides, "strides", where)
        self.padding = shapes.normalize_padding(padding, where)
        if not isinstance(self.padding, str):
            for (before, after), k in zip(self.padding, self.pool_size):
                if max(before, after) > k // 2:
                    raise ShapeError(f"{where}: padding {padding!r} is more than half the "
                                     f"pool window {self.pool_size}")
        self.ceil_mode = bool(ceil_mode)

    def _dilation(self):
        return 1

    def _is_default(self, key, value, default) -> bool:
        if key == "strides" and default is None:
            return list(value) == list(self.pool_size)
        return super()._is_default(key, value, default)

    def build(self, input_shape) -> None:
        input_shape = self._check_rank(input_shape)
        self._check_channels(input_shape, None)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        input_shape = self._check_rank(input_shape)
        return spatial_output_shape(
            input_shape, self.data_format,
            lambda shape: shapes.pool_output_shape(
                shape, self.pool_size, self.strides, self.padding, self._dilation(),
                self.ceil_mode, self.data_format, where=type(self).__name__))

    def _channels(self):
        return None if self.input_shape is None else self.input_shape[self.channel_axis]

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size),
                "strides": list(self.strides), "padding": padding_config(self.padding),
                "ceil_mode": self.ceil_mode}


class MaxPooling2D(_Pooling2D):
    """Maximum over each ``pool_size`` window (see the module docstring for shapes).

    Backward sends each gradient to its window's maximum (the first one on a tie); a NaN
    in a window gives NaN and takes the gradient (the last NaN, as in PyTorch).
    ``dilation_rate`` spreads the window's cells apart (PyTorch's ``dilation``).

    >>> pool = MaxPooling2D(2)
    >>> pool.build((None, 26, 26, 32)); pool.output_shape
    (None, 13, 13, 32)
    """

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None,
                 ceil_mode=False, dilation_rate=1, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, ceil_mode, **kwargs)
        self.dilation_rate = shapes.to_pair(dilation_rate, "dilation_rate", "MaxPooling2D")

    def _dilation(self):
        return self.dilation_rate

    def _kwargs(self):
        return {"dilation_rate": self.dilation_rate, "ceil_mode": self.ceil_mode,
                "data_format": self.data_format}

    def forward(self, x, training: bool = False):
        if not training and type(x) is np.ndarray and x.flags.c_contiguous:
            y = self._prepared_forward(x)
            if y is not None:
                return y
        from .. import ops
        x = self._image(x, self._channels())
        if not training:
            # inference: no argmax to write (a backward after it finds the winners from x)
            y = ops.max_pool2d(x, self.pool_size, self.strides, self.padding,
                               **self._kwargs())
            self.cache = (x, y.shape, None)
            return y
        # training: the compiled kernels also give each maximum's position, kept for backward
        y, argmax = ops.pool.max_pool2d_with_argmax(x, self.pool_size, self.strides,
                                                    self.padding, **self._kwargs())
        self.cache = (x, y.shape, argmax)
        return y

    def _inference_step(self):
        if self.data_format != "channels_last" or not self._runs_own_forward(MaxPooling2D):
            return None
        return ("max_pool2d", self.pool_size, self.strides, self.padding, self.dilation_rate,
                self.ceil_mode)

    def _prepared_forward(self, x: np.ndarray):
        """Inference through the prepared fast path (:func:`convkit.fast.dispatch.prepare`),
        the checks run once per input shape; ``None`` when there is none."""
        self._check_once((x.shape, x.dtype), lambda: self._image(x, self._channels()))
        run = _dispatch.prepare("max_pool2d", "forward", x.shape, x.dtype, self.pool_size,
                               self.strides, self.padding, self.dilation_rate, self.ceil_mode,
                               self.data_format)
        if run is None:
            return None
        y = run(x)
        self.cache = (x, y.shape, None)
        return y

    def backward(self, dy):
        from .. import ops
        x, y_shape, argmax = self._cached()
        dy = self._gradient(dy, y_shape, x.dtype)
        return ops.max_pool2d_backward(dy, x, self.pool_size, self.strides, self.padding,
                                       argmax=argmax, **self._kwargs())

    def get_config(self):
        return {**super().get_config(), "dilation_rate": list(self.dilation_rate)}


class AveragePooling2D(_Pooling2D):
    """Mean over each ``pool_size`` window (see the module docstring for shapes).

    With the default ``count_include_pad=False`` (Keras) a window is divided by its number
    of real cells; ``True`` (PyTorch) counts explicit padding in the divisor.

    >>> pool = AveragePooling2D(3, strides=2, padding="same")
    >>> pool.build((None, 7, 7, 4)); pool.output_shape
    (None, 4, 4, 4)
    """

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None,
                 ceil_mode=False, count_include_pad=False, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, ceil_mode, **kwargs)
        self.count_include_pad = bool(count_include_pad)

    def _kwargs(self):
        return {"ceil_mode": self.ceil_mode, "count_include_pad": self.count_include_pad,
                "data_format": self.data_format}

    def forward(self, x, training: bool = False):
        from .. import ops
        x = self._image(x, self._channels())
        y = ops.avg_pool2d(x, self.pool_size, self.strides, self.padding, **self._kwargs())
        self.cache = (x, y.shape)
        return y

    def backward(self, dy):
        from .. import ops
        x, y_shape = self._cached()
        dy = self._gradient(dy, y_shape)
        return ops.avg_pool2d_backward(dy, x, self.pool_size, self.strides, self.padding,
                                       **self._kwargs())

    def get_config(self):
        return {**super().get_config(), "count_include_pad": self.count_include_pad}


class _GlobalPooling2D(ImageLayer):
    """Reduce the two spatial axes: ``(N, H, W, C) -> (N, C)``, or ``(N, 1, 1, C)`` with
    ``keepdims=True`` (``(N, C, 1, 1)`` for channels_first)."""

    _op = _op_backward = ""

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.keepdims = bool(keepdims)

    def build(self, input_shape) -> None:
        input_shape = self._check_rank(input_shape)
        self._check_channels(input_shape, None)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        input_shape = self._check_rank(input_shape)
        channels = input_shape[self.channel_axis]
        if not self.keepdims:
            return (input_shape[0], channels)
        if self.data_format == "channels_last":
            return (input_shape[0], 1, 1, channels)
        return (input_shape[0], channels, 1, 1)

    def forward(self, x, training: bool = False):
        from .. import ops
        channels = None if self.input_shape is None else self.input_shape[self.channel_axis]
        x = self._image(x, channels)
        y = getattr(ops, self._op)(x, keepdims=self.keepdims, data_format=self.data_format)
        self.cache = (x, y.shape)
        return y

    def backward(self, dy):
        from .. import ops
        x, y_shape = self._cached()
        dy = self._gradient(dy, y_shape)
        return getattr(ops, self._op_backward)(dy, x, keepdims=self.keepdims,
                                               data_format=self.data_format)

    def get_config(self):
        return {**super().get_config(), "keepdims": self.keepdims}


class GlobalAveragePooling2D(_GlobalPooling2D):
    """Mean over height and width: ``(N, H, W, C) -> (N, C)``.

    >>> GlobalAveragePooling2D().compute_output_shape((None, 5, 5, 3))
    (None, 3)
    """
    _op, _op_backward = "global_avg_pool2d", "global_avg_pool2d_backward"


class GlobalMaxPooling2D(_GlobalPooling2D):
    """Maximum over height and width: ``(N, H, W, C) -> (N, C)``; backward sends each
    gradient to the first maximum.

    >>> GlobalMaxPooling2D(keepdims=True).compute_output_shape((None, 7, 7, 16))
    (None, 1, 1, 16)
    """
    _op, _op_backward = "global_max_pool2d", "global_max_pool2d_backward"

