"""1-D pooling and upsampling on sequences ``(batch, steps, channels)``:
:class:`MaxPooling1D`, :class:`AveragePooling1D`, :class:`GlobalAveragePooling1D`,
:class:`GlobalMaxPooling1D` and :class:`UpSampling1D`, each the 2-D op on the height-1 view
(see :mod:`convkit.layers.conv1d`).

Shape (channels_last; channels_first is ``(N, C, steps)``)::

    input     (N, steps, C)
    output    (N, steps_out, C)
    steps_out valid: floor((steps - k) / s) + 1     same: ceil(steps / s)

``strides=None`` means ``strides = pool_size``; padded cells never count (-inf for max,
left out of the average), as in Keras.
"""
from __future__ import annotations

from .. import shapes
from ..errors import ShapeError
from .base import spatial_output_shape
from .conv1d import StepsLayer, single_int

__all__ = ["MaxPooling1D", "AveragePooling1D", "GlobalAveragePooling1D",
           "GlobalMaxPooling1D", "UpSampling1D"]


class _Pooling1D(StepsLayer):
    _op = _op_backward = ""

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None,
                 **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        where = type(self).__name__
        self.pool_size = single_int(pool_size, "pool_size", where)
        self.strides = self.pool_size if strides is None else \
            single_int(strides, "strides", where)
        self.padding = padding.lower() if isinstance(padding, str) else padding
        if self.padding not in ("valid", "same"):
            raise ShapeError(f"{where}: padding must be 'valid' or 'same', got {padding!r}")

    def _is_default(self, key, value, default) -> bool:
        if key == "strides" and default is None:
            return list(value) == [self.pool_size]
        return super()._is_default(key, value, default)

    def _image_output_shape(self, image_shape):
        return spatial_output_shape(
            image_shape, self.data_format,
            lambda shape: shapes.pool_output_shape(
                shape, (1, self.pool_size), (1, self.strides), self.padding, 1, False,
                self.data_format, where=type(self).__name__))

    def _args(self):
        return ((1, self.pool_size), (1, self.strides), self.padding)

    def _image_forward(self, image):
        from .. import ops
        return getattr(ops, self._op)(image, *self._args(), data_format=self.data_format)

    def _image_backward(self, dy, image):
        from .. import ops
        return getattr(ops, self._op_backward)(dy, image, *self._args(),
                                               data_format=self.data_format)

    def get_config(self):
        return {**super().get_config(), "pool_size": [self.pool_size],
                "strides": [self.strides], "padding": self.padding}


class MaxPooling1D(_Pooling1D):
    """Maximum over each ``pool_size`` window of steps; backward sends each gradient to
    its window's first maximum.

    >>> MaxPooling1D(2).compute_output_shape((None, 9, 4))
    (None, 4, 4)
    """
    _op, _op_backward = "max_pool2d", "max_pool2d_backward"


class AveragePooling1D(_Pooling1D):
    """Mean over each ``pool_size`` window of steps (padded steps left out).

    >>> AveragePooling1D(3, strides=2, padding="same").compute_output_shape((None, 9, 4))
    (None, 5, 4)
    """
    _op, _op_backward = "avg_pool2d", "avg_pool2d_backward"


class _GlobalPooling1D(StepsLayer):
    """Reduce the steps: ``(N, steps, C) -> (N, C)``, or ``(N, 1, C)`` with ``keepdims``
    (``(N, C, 1)`` for channels_first)."""
    _op = _op_backward = ""

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.keepdims = bool(keepdims)

    def compute_output_shape(self, input_shape):
        input_shape = self._check_rank(input_shape)
        channels = input_shape[self.channel_axis]
        if not self.keepdims:
            return (input_shape[0], channels)
        return (input_shape[0], 1, channels) if self.data_format == "channels_last" else \
            (input_shape[0], channels, 1)

    def forward(self, x, training: bool = False):
        from .. import ops
        image = self._as_image(self._steps(x))                     # (N, 1, steps, C)
        y = getattr(ops, self._op)(image, keepdims=self.keepdims, data_format=self.data_format)
        self.cache = image
        return self._as_steps(y) if self.keepdims else y           # (N, 1, C) or (N, C)

    def backward(self, dy):
        from .. import ops
        image = self._cached()
        expected = self.compute_output_shape(self._as_steps(image).shape)
        dy = self._gradient(dy, expected, image.dtype)
        if self.keepdims:
            dy = self._as_image(dy)                                # (N, 1, 1, C)
        dx = getattr(ops, self._op_backward)(dy, image, keepdims=self.keepdims,
                                             data_format=self.data_format)
        return self._as_steps(dx)

    def get_config(self):
        return {**super().get_config(), "keepdims": self.keepdims}


class GlobalAveragePooling1D(_GlobalPooling1D):
    """Mean over the steps: ``(N, steps, C) -> (N, C)``.

    >>> GlobalAveragePooling1D().compute_output_shape((None, 50, 8))
    (None, 8)
    """
    _op, _op_backward = "global_avg_pool2d", "global_avg_pool2d_backward"


class GlobalMaxPooling1D(_GlobalPooling1D):
    """Maximum over the steps: ``(N, steps, C) -> (N, C)``; backward sends each gradient
    to the first maximum.

    >>> GlobalMaxPooling1D(keepdims=True).compute_output_shape((None, 50, 8))
    (None, 1, 8)
    """
    _op, _op_backward = "global_max_pool2d", "global_max_pool2d_backward"


class UpSampling1D(StepsLayer):
    """Repeat each step ``size`` times: ``(N, steps, C) -> (N, steps * size, C)``.

    >>> UpSampling1D(3).compute_output_shape((None, 4, 2))
    (None, 12, 2)
    """

    def __init__(self, size=2, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.size = single_int(size, "size", "UpSampling1D")

    def _image_output_shape(self, image_shape):
        out = list(image_shape)
        axis = 2 if self.data_format == "channels_last" else 3
        out[axis] = None if out[axis] is None else out[axis] * self.size
        return tuple(out)

    def _size(self, image):
        return (1, image.shape[2 if self.data_format == "channels_last" else 3] * self.size)

    def _image_forward(self, image):
        from ..ops.resize import resize2d
        return resize2d(image, self._size(image), "nearest", self.data_format)

    def _image_backward(self, dy, image):
        from ..ops.resize import resize2d_backward
        return resize2d_backward(dy, image, self._size(image), "nearest", self.data_format)

    def get_config(self):
        return {**super().get_config(), "size": self.size}
