"""Reshaping layers: :class:`Flatten` and :class:`ZeroPadding2D`."""
from __future__ import annotations

import math

import numpy as np

from .. import shapes
from ..errors import ShapeError
from .base import Layer, data_format_arg
from .conv import ImageLayer, padding_config

__all__ = ["Flatten", "ZeroPadding2D"]


class Flatten(Layer):
    """``(N, d1, d2, ...) -> (N, d1 * d2 * ...)``, in the array's own (C) order: for a
    channels_last image that is (H, W, C).

    As in Keras, an explicit ``data_format="channels_first"`` first moves the channel axis
    last, so the features come out in (H, W, C) order whatever the layout (weights stay
    interchangeable between layouts); the default (``None``) never reorders.

    >>> Flatten().compute_output_shape((None, 5, 5, 64))
    (None, 1600)
    """

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = data_format_arg(data_format, "Flatten")

    def _check_shape(self, input_shape) -> tuple:
        input_shape = tuple(input_shape)
        if len(input_shape) < 2:
            raise ShapeError(f"Flatten: expected an input with a batch axis and at least one "
                             f"more, got shape {input_shape}")
        if self.input_shape is not None and len(input_shape) != len(self.input_shape):
            raise ShapeError(f"Flatten: expected a rank-{len(self.input_shape)} input like "
                             f"{self.input_shape}, got shape {input_shape}")
        return input_shape

    def _check_built_shape(self, input_shape) -> None:
        self._check_shape(input_shape)

    def compute_output_shape(self, input_shape):
        input_shape = self._check_shape(input_shape)
        rest = input_shape[1:]
        size = None if any(s is None for s in rest) else math.prod(rest)
        return (input_shape[0], size)

    def _permutation(self, ndim: int):
        if self.data_format == "channels_first" and ndim > 2:
            return (0, *range(2, ndim), 1)
        return None

    def forward(self, x, training: bool = False):
        x = self._input(x)
        self._check_shape(x.shape)
        perm = self._permutation(x.ndim)
        moved = x.transpose(perm) if perm else x                    # (N, H, W, C) if moved
        self.cache = (x.shape, moved.shape, perm)
        return moved.reshape(x.shape[0], -1)                        # (N, features)

    def backward(self, dy):
        x_shape, moved_shape, perm = self._cached()
        dy = self._input(dy, name="gradient dy")
        if dy.shape != (x_shape[0], math.prod(x_shape[1:])):
            raise ShapeError(f"Flatten: gradient dy has shape {dy.shape}, expected "
                             f"{(x_shape[0], math.prod(x_shape[1:]))}")
        dx = dy.reshape(moved_shape)
        return np.ascontiguousarray(dx.transpose(np.argsort(perm))) if perm else dx

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}


class ZeroPadding2D(ImageLayer):
    """Pad height and width with zeros.

    ``padding``: ``p`` (all sides), ``(ph, pw)`` (symmetric) or
    ``((top, bottom), (left, right))``. Shape ``(N, H, W, C) ->
    (N, H + top + bottom, W + left + right, C)``.

    >>> ZeroPadding2D(((1, 2), (3, 4))).compute_output_shape((None, 10, 10, 3))
    (None, 13, 17, 3)
    """

    def __init__(self, padding=1, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        if isinstance(padding, str):
            raise ShapeError(f"ZeroPadding2D: padding must be an int, (ph, pw) or "
                             f"((top, bottom), (left, right)), got {padding!r}")
        self.padding = shapes.normalize_padding(padding, "ZeroPadding2D")

    def build(self, input_shape) -> None:
        self._check_rank(input_shape)
        super().build(input_shape)

    def _check_built_shape(self, input_shape) -> None:
        self._check_rank(input_shape)

    def compute_output_shape(self, input_shape):
        out = list(self._check_rank(input_shape))
        axes = (1, 2) if self.data_format == "channels_last" else (2, 3)
        for axis, (before, after) in zip(axes, self.padding):
            if out[axis] is not None:
                out[axis] = out[axis] + before + after
        return tuple(out)

    def forward(self, x, training: bool = False):
        from .. import ops
        x = self._image(x)
        y = ops.pad2d(x, self.padding, "zeros", data_format=self.data_format)
        self.cache = y.shape
        return y

    def backward(self, dy):
        from .. import ops
        y_shape = self._cached()
        dy = self._input(dy, name="gradient dy")
        if dy.shape != y_shape:
            raise ShapeError(f"ZeroPadding2D: gradient dy has shape {dy.shape}, expected the "
                             f"output shape {y_shape}")
        return ops.pad2d_backward(dy, self.padding, "zeros", data_format=self.data_format)

    def get_config(self):
        return {**super().get_config(), "padding": padding_config(self.padding)}
