"""Merging layers: take a list of inputs, return one output; ``backward`` returns a list of
input gradients in the same order.

* :class:`Add`:         ``y = x_1 + x_2 + ...``          (equal shapes)
* :class:`Subtract`:    ``y = x_1 - x_2``                (exactly two, equal shapes)
* :class:`Multiply`:    ``y = x_1 * x_2 * ...``          (equal shapes)
* :class:`Average`:     ``y = (x_1 + ... + x_n) / n``    (equal shapes)
* :class:`Maximum`:     ``y = max(max(x_1, x_2), x_3)...`` (equal shapes)
* :class:`Minimum`:     ``y = min(min(x_1, x_2), x_3)...`` (equal shapes)
* :class:`Concatenate`: ``y = concat(x_i, axis)``        (equal shapes except on ``axis``)

and Keras's functional shortcuts :func:`add`, :func:`subtract`, :func:`multiply`,
:func:`average`, :func:`maximum`, :func:`minimum`, :func:`concatenate`, which make the layer
and call it at once, on symbolic tensors (a graph node) or on arrays (the values).
"""
from __future__ import annotations

from numbers import Integral

import numpy as np

from ..errors import ConvkitError, ShapeError
from .base import Layer

__all__ = ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate",
           "add", "subtract", "multiply", "average", "maximum", "minimum", "concatenate"]


def _compatible(a, b) -> bool:
    return a is None or b is None or a == b


class _Merge(Layer):
    n_inputs = None

    def _check_shapes(self, input_shapes) -> list:
        name = type(self).__name__
        if not isinstance(input_shapes, (list, tuple)) or not input_shapes or not all(
                isinstance(s, (list, tuple)) for s in input_shapes):
            raise ShapeError(f"{name}: expects a list of at least one input, got "
                             f"{input_shapes!r}")
        input_shapes = [tuple(s) for s in input_shapes]
        if self.input_shape is not None and len(input_shapes) != len(self.input_shape):
            raise ShapeError(f"{name}: was built for {len(self.input_shape)} inputs, got "
                             f"{len(input_shapes)} with shapes {input_shapes}")
        return input_shapes

    def _check_built_shape(self, input_shape) -> None:
        self.compute_output_shape(input_shape)

    def build(self, input_shape) -> None:
        self.compute_output_shape(input_shape)
        super().build(input_shape)

    def _arrays(self, xs) -> list:
        name = type(self).__name__
        if not isinstance(xs, (list, tuple)):
            raise ShapeError(f"{name}: expects a list of input arrays, got {type(xs).__name__}")
        arrays = [self._input(x, name=f"input {i}") for i, x in enumerate(xs)]
        self.compute_output_shape([a.shape for a in arrays])
        dtype = self._compute_dtype(*arrays)
        return [a.astype(dtype, copy=False) for a in arrays]


class _Elementwise(_Merge):
    def compute_output_shape(self, input_shape):
        shapes = self._check_shapes(input_shape)
        first = shapes[0]
        for shape in shapes[1:]:
            if len(shape) != len(first) or not all(map(_compatible, shape, first)):
                raise ShapeError(f"{type(self).__name__}: all inputs must have the same shape, "
                                 f"got {shapes}")
        return tuple(next((s for s in column if s is not None), None)
                     for column in zip(*shapes))


class Add(_Elementwise):
    """Element-wise sum of a list of equally shaped inputs.

    >>> Add()([np.ones((1, 2)), np.full((1, 2), 2.0)])
    array([[3., 3.]])
    """

    def forward(self, xs, training: bool = False):
        arrays = self._arrays(xs)
        y = arrays[0].copy()
        for a in arrays[1:]:
            y += a
        self.cache = (len(arrays), y.shape)
        return y

    def backward(self, dy):
        count, shape = self._cached()
        dy = self._gradient(dy, shape)
        return [dy.copy() for _ in range(count)]


class Multiply(_Elementwise):
    """Element-wise product of a list of equally shaped inputs; the gradient of input ``i``
    is ``dy`` times the product of the others.

    >>> Multiply()([np.full((1, 2), 2.0), np.full((1, 2), 3.0)])
    array([[6., 6.]])
    """

    def forward(self, xs, training: bool = False):
        arrays = self._arrays(xs)
        y = arrays[0].copy()
        for a in arrays[1:]:
            y *= a
        self.cache = arrays
        return y

    def backward(self, dy):
        arrays = self._cached()
        dy = self._gradient(dy, arrays[0].shape)
        grads = []
        for i in range(len(arrays)):
            grad = dy.astype(arrays[0].dtype, copy=True)
            for j, other in enumerate(arrays):
                if j != i:
                    grad *= other
            grads.append(grad)
        return grads


class Subtract(_Elementwise):
    """``x_1 - x_2`` for exactly two equally shaped inputs; gradients ``dy`` and ``-dy``.

    >>> Subtract()([np.full((1, 2), 5.0), np.ones((1, 2))])
    array([[4., 4.]])
    """

    def _check_shapes(self, input_shapes) -> list:
        shapes = super()._check_shapes(input_shapes)
        if len(shapes) != 2:
            raise ShapeError(f"Subtract: takes exactly 2 inputs, got {len(shapes)} with "
                             f"shapes {shapes}")
        return shapes

    def forward(self, xs, training: bool = False):
        first, second = self._arrays(xs)
        y = first - second
        self.cache = y.shape
        return y

    def backward(self, dy):
        dy = self._gradient(dy, self._cached())
        return [dy.copy(), -dy]


class Average(Add):
    """Element-wise mean of a list of equally shaped inputs; each gets ``dy / n``.

    >>> Average()([np.ones((1, 2)), np.full((1, 2), 4.0)])
    array([[2.5, 2.5]])
    """

    def forward(self, xs, training: bool = False):
        y = super().forward(xs, training)
        y /= self.cache[0]
        return y

    def backward(self, dy):
        count = self._cached()[0]
        return [g / count for g in super().backward(dy)]


class _Extremum(_Elementwise):
    """Pairwise running extremum ``m_1 = x_1``, ``m_k = pick(m_{k-1}, x_k)``, as Keras
    reduces its inputs. Backward walks the pairs from the last: each gradient goes to the
    winner of its pair and is split in halves on a tie (JAX's rule, so with three tied
    inputs they get ``dy/4, dy/4, dy/2``)."""

    pick = staticmethod(np.maximum)
    beats = staticmethod(np.greater)

    def forward(self, xs, training: bool = False):
        arrays = self._arrays(xs)
        running = [arrays[0]]                       # m_1, ..., m_n
        for a in arrays[1:]:
            running.append(self.pick(running[-1], a))
        self.cache = (arrays, running)
        return running[-1].copy()

    def backward(self, dy):
        arrays, running = self._cached()
        grad = self._gradient(dy, running[-1].shape, running[-1].dtype)
        grads = [None] * len(arrays)
        for k in range(len(arrays) - 1, 0, -1):
            previous, current = running[k - 1], arrays[k]
            share = np.where(self.beats(previous, current), 1.0,
                             np.where(previous == current, 0.5, 0.0)).astype(grad.dtype)
            grads[k] = grad * (1 - share)           # the part x_k won
            grad = grad * share                      # the part m_{k-1} won
        grads[0] = grad
        return grads


class Maximum(_Extremum):
    """Element-wise maximum of a list of equally shaped inputs; the gradient goes to the
    largest input (split on ties, see :class:`_Extremum`).

    >>> Maximum()([np.array([[1.0, 5.0]]), np.array([[3.0, 2.0]])])
    array([[3., 5.]])
    """


class Minimum(_Extremum):
    """Element-wise minimum of a list of equally shaped inputs; the gradient goes to the
    smallest input (split on ties, see :class:`_Extremum`).

    >>> Minimum()([np.array([[1.0, 5.0]]), np.array([[3.0, 2.0]])])
    array([[1., 2.]])
    """

    pick = staticmethod(np.minimum)
    beats = staticmethod(np.less)


class Concatenate(_Merge):
    """Join inputs along ``axis`` (default the last, the channels of channels_last images).

    >>> Concatenate()([np.zeros((2, 4, 4, 3)), np.zeros((2, 4, 4, 5))]).shape
    (2, 4, 4, 8)
    """

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(axis, Integral) or isinstance(axis, bool):
            raise ConvkitError(f"Concatenate: axis must be an int, got {axis!r}")
        self.axis = int(axis)

    def _resolve_axis(self, rank: int, shapes) -> int:
        axis = self.axis + rank if self.axis < 0 else self.axis
        if not 1 <= axis < rank:
            raise ShapeError(f"Concatenate: axis={self.axis} is not a feature axis of inputs "
                             f"with shapes {shapes} (the batch axis 0 cannot be joined)")
        return axis

    def compute_output_shape(self, input_shape):
        shapes = self._check_shapes(input_shape)
        rank = len(shapes[0])
        if any(len(s) != rank for s in shapes):
            raise ShapeError(f"Concatenate: all inputs must have the same rank, got {shapes}")
        axis = self._resolve_axis(rank, shapes)
        out = []
        for index, column in enumerate(zip(*shapes)):
            if index == axis:
                out.append(None if any(c is None for c in column) else sum(column))
                continue
            known = {c for c in column if c is not None}
            if len(known) > 1:
                raise ShapeError(f"Concatenate: inputs must match on every axis but "
                                 f"axis={self.axis}, got shapes {shapes}")
            out.append(known.pop() if known else None)
        return tuple(out)

    def forward(self, xs, training: bool = False):
        arrays = self._arrays(xs)
        axis = self._resolve_axis(arrays[0].ndim, [a.shape for a in arrays])
        y = np.concatenate(arrays, axis=axis)
        self.cache = (axis, [a.shape[axis] for a in arrays], y.shape)
        return y

    def backward(self, dy):
        axis, sizes, shape = self._cached()
        dy = self._gradient(dy, shape)
        bounds = np.cumsum(sizes)[:-1]
        return [np.ascontiguousarray(part) for part in np.split(dy, bounds, axis=axis)]

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


# ----------------------------------------------------------------------------- shortcuts
def _shortcut(cls):
    """Keras's functional form of a merging layer: ``name(inputs, **kwargs)`` makes
    ``cls(**kwargs)`` and calls it on ``inputs``."""
    def merge(inputs, **kwargs):
        return cls(**kwargs)(inputs)
    merge.__name__ = merge.__qualname__ = cls.__name__.lower()
    merge.__doc__ = (f"``{cls.__name__}(**kwargs)(inputs)``: on symbolic tensors a graph "
                     f"node, on arrays the values.")
    return merge


add = _shortcut(Add)
subtract = _shortcut(Subtract)
multiply = _shortcut(Multiply)
average = _shortcut(Average)
maximum = _shortcut(Maximum)
minimum = _shortcut(Minimum)


def concatenate(inputs, axis=-1, **kwargs):
    """``Concatenate(axis, **kwargs)(inputs)``.

    >>> concatenate([np.zeros((2, 3)), np.ones((2, 1))]).shape
    (2, 4)
    """
    return Concatenate(axis=axis, **kwargs)(inputs)
