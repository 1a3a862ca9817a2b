"""Reshaping layers: :class:`Flatten`, :class:`ZeroPadding2D`, :class:`Cropping2D`,
:class:`Reshape` and :class:`Permute`."""
from __future__ import annotations

import math
from numbers import Integral

import numpy as np

from .. import shapes
from ..errors import ShapeError
from .base import Layer, data_format_arg
from .conv import ImageLayer, padding_config

__all__ = ["Flatten", "ZeroPadding2D", "Cropping2D", "Reshape", "Permute"]


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

    def _inference_step(self):
        return ("flatten",) if self._permutation(4) is None \
            and self._runs_own_forward(Flatten) else None

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

    def compute_output_shape(self, input_shape):
        out = list(self._check_rank(input_shape))
        for axis, (before, after) in zip(self.spatial_axes, self.padding):
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


def _cropping_arg(cropping, where: str):
    """``c``, ``(ch, cw)`` or ``((top, bottom), (left, right))`` -> the last form."""
    if isinstance(cropping, (tuple, list)) and len(cropping) == 2 and all(
            isinstance(c, (tuple, list)) for c in cropping):
        return tuple(shapes.to_pair(c, "cropping", where, minimum=0) for c in cropping)
    height, width = shapes.to_pair(cropping, "cropping", where, minimum=0)
    return (height, height), (width, width)


class Cropping2D(ImageLayer):
    """Cut rows and columns off the edges of images.

    ``cropping``: ``c`` (all sides), ``(ch, cw)`` (symmetric) or
    ``((top, bottom), (left, right))``. Shape ``(N, H, W, C) ->
    (N, H - top - bottom, W - left - right, C)``; no parameters. Backward pads the
    gradient back with zeros.

    >>> Cropping2D(((2, 2), (4, 4))).compute_output_shape((None, 28, 28, 3))
    (None, 24, 20, 3)
    """

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.cropping = _cropping_arg(cropping, "Cropping2D")

    def build(self, input_shape) -> None:
        self.compute_output_shape(input_shape)
        super().build(input_shape)

    def _check_built_shape(self, input_shape) -> None:
        self.compute_output_shape(input_shape)

    def _check_array(self, x) -> None:
        super()._check_array(x)
        self.compute_output_shape(np.shape(x))         # the error quotes the real shape

    def compute_output_shape(self, input_shape):
        out = list(self._check_rank(input_shape))
        for axis, (before, after) in zip(self.spatial_axes, self.cropping):
            if out[axis] is None:
                continue
            if out[axis] - before - after <= 0:
                raise ShapeError(f"Cropping2D: cropping {self.cropping} leaves nothing of the "
                                 f"input (input shape {tuple(input_shape)})")
            out[axis] -= before + after
        return tuple(out)

    def forward(self, x, training: bool = False):
        from ..ops.resize import crop2d
        x = self._image(x)
        self.compute_output_shape(x.shape)
        y = crop2d(x, self.cropping, self.data_format)
        self.cache = y.shape
        return y

    def backward(self, dy):
        from ..ops.resize import crop2d_backward
        dy = self._gradient(dy, self._cached())
        return crop2d_backward(dy, self.cropping, self.data_format)

    def get_config(self):
        return {**super().get_config(), "cropping": [list(c) for c in self.cropping]}


class Reshape(Layer):
    """Reshape each sample to ``target_shape`` (the batch axis stays), in the array's own
    (C) order; one entry may be ``-1``, inferred from the sample size.

    >>> Reshape((7, 7, -1)).compute_output_shape((None, 196))
    (None, 7, 7, 4)
    """

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        target = tuple(target_shape) if isinstance(target_shape, (tuple, list)) else None
        if target is None or not all(
                isinstance(v, Integral) and not isinstance(v, bool) and (v > 0 or v == -1)
                for v in target) or list(target).count(-1) > 1:
            raise ShapeError(f"Reshape: target_shape must be a tuple of positive ints with at "
                             f"most one -1, got {target_shape!r}")
        self.target_shape = tuple(int(v) for v in target)

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) < 2:
            raise ShapeError(f"Reshape: expected an input with a batch axis and at least one "
                             f"more, got shape {input_shape}")
        known = math.prod(v for v in self.target_shape if v != -1)
        if any(v is None for v in input_shape[1:]):
            return (input_shape[0],) + tuple(None if v == -1 else v for v in self.target_shape)
        size = math.prod(input_shape[1:])
        if (-1 in self.target_shape and size % known) or (
                -1 not in self.target_shape and size != known):
            raise ShapeError(f"Reshape: cannot reshape a sample of shape {input_shape[1:]} "
                             f"({size} values) to {self.target_shape}")
        return (input_shape[0],) + tuple(size // known if v == -1 else v
                                         for v in self.target_shape)

    def _check_built_shape(self, input_shape) -> None:
        self.compute_output_shape(input_shape)

    def forward(self, x, training: bool = False):
        x = self._input(x)
        out_shape = self.compute_output_shape(x.shape)
        self.cache = (x.shape, out_shape)
        return x.reshape(out_shape)                         # (N, *target_shape)

    def backward(self, dy):
        x_shape, out_shape = self._cached()
        return self._gradient(dy, out_shape).reshape(x_shape)

    def get_config(self):
        return {**super().get_config(), "target_shape": list(self.target_shape)}


class Permute(Layer):
    """Reorder the axes of each sample: ``dims`` is a permutation of ``1..rank-1`` (the
    batch axis 0 stays), e.g. ``Permute((2, 1))`` swaps the two axes of ``(N, a, b)``.

    >>> Permute((3, 1, 2)).compute_output_shape((None, 8, 6, 3))
    (None, 3, 8, 6)
    """

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        dims = tuple(dims) if isinstance(dims, (tuple, list)) else None
        if dims is None or sorted(dims) != list(range(1, len(dims) + 1)):
            raise ShapeError(f"Permute: dims must be a permutation of 1..n (the batch axis "
                             f"0 stays), got {dims!r}")
        self.dims = tuple(int(d) for d in dims)

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != len(self.dims) + 1:
            raise ShapeError(f"Permute: dims {self.dims} need an input of rank "
                             f"{len(self.dims) + 1}, got shape {input_shape}")
        return (input_shape[0],) + tuple(input_shape[d] for d in self.dims)

    def _check_built_shape(self, input_shape) -> None:
        self.compute_output_shape(input_shape)

    def forward(self, x, training: bool = False):
        x = self._input(x)
        self.cache = self.compute_output_shape(x.shape)
        return x.transpose((0,) + self.dims)

    def backward(self, dy):
        dy = self._gradient(dy, self._cached())
        return dy.transpose(np.argsort((0,) + self.dims))

    def get_config(self):
        return {**super().get_config(), "dims": list(self.dims)}
