""":class:`Lambda`: a Python function as a layer, in memory only."""
from __future__ import annotations

import numpy as np

from ..errors import ConvkitError, ShapeError
from .base import Layer

__all__ = ["Lambda"]


class Lambda(Layer):
    """Wrap ``function(x, **arguments)`` (NumPy in, NumPy out) as a layer; ``x`` is one
    array, or a list when the layer is called on a list.

    * ``output_shape``: the output shape without the batch axis (a tuple), or a function of
      the input shape; by default it is found by running ``function`` on zeros.
    * Gradients: a plain function has none. Training works while no trainable layer comes
      before the Lambda (e.g. preprocessing right after the input: the model never asks
      for that gradient); otherwise ``backward`` raises an error naming the layer. A
      function with a ``.backward(dy, x, y)`` attribute supplies its own gradient.
    * Saving: like Keras's safe mode, a function is never written to or run from a file:
      ``get_config`` raises, so saving a model with a Lambda fails with an error naming the
      layer, and ``from_config`` refuses too. Write a :class:`Layer` subclass and
      :func:`convkit.layers.register` it instead.

    >>> double = Lambda(lambda x: 2 * x)
    >>> double(np.array([[1.0, 2.0]])), double.compute_output_shape((None, 2))
    (array([[2., 4.]]), (None, 2))
    """

    def __init__(self, function, output_shape=None, mask=None, arguments=None, **kwargs):
        super().__init__(**kwargs)
        if not callable(function):
            raise ConvkitError(f"Lambda: function must be callable, got {function!r}")
        if mask is not None:
            raise ConvkitError("Lambda: mask is not supported (convkit has no masking)")
        if output_shape is not None and not callable(output_shape) and not isinstance(
                output_shape, (tuple, list)):
            raise ConvkitError(f"Lambda: output_shape must be a tuple (without the batch "
                               f"axis) or a function of the input shape, got "
                               f"{output_shape!r}")
        self.function = function
        self.output_shape_arg = output_shape
        self.arguments = dict(arguments or {})

    def __call__(self, x, training: bool = False):
        # one input or a list of them, whatever this call gets
        self.n_inputs = None if isinstance(x, (list, tuple)) else 1
        return super().__call__(x, training)

    def _run(self, x):
        try:
            return self.function(x, **self.arguments)
        except Exception as exc:
            raise ConvkitError(f"Lambda {self.name!r}: the function raised "
                               f"{type(exc).__name__}: {exc}") from exc

    def compute_output_shape(self, input_shape):
        several = isinstance(input_shape, list) and input_shape and isinstance(
            input_shape[0], (tuple, list))
        if callable(self.output_shape_arg):
            return tuple(self.output_shape_arg(input_shape))
        if self.output_shape_arg is not None:
            return (None,) + tuple(self.output_shape_arg)
        shapes = input_shape if several else [input_shape]
        # a stand-in of batch 2 (1 for other unknown sizes)
        zeros = [np.zeros([2] + [1 if s is None else s for s in shape[1:]], np.float32)
                 for shape in shapes]
        out = np.asarray(self._run(zeros if several else zeros[0]))
        if out.ndim == 0 or out.shape[0] != 2:
            raise ShapeError(f"Lambda {self.name!r}: could not infer the output shape (the "
                             f"function returned shape {out.shape} for inputs {shapes}); "
                             f"pass output_shape=")
        return (None,) + out.shape[1:]

    def forward(self, x, training: bool = False):
        if isinstance(x, (list, tuple)):
            x = [self._input(v, name=f"input {i}") for i, v in enumerate(x)]
        else:
            x = self._input(x)
        y = np.asarray(self._run(x))
        self.cache = (x, y)
        return y

    def backward(self, dy):
        x, y = self._cached()
        if not self.input_gradient:
            return None
        user_backward = getattr(self.function, "backward", None)
        if callable(user_backward):
            return user_backward(self._gradient(dy, y.shape), x, y)
        raise ConvkitError(
            f"Lambda {self.name!r}: a plain function has no gradient, and training needs "
            f"the gradient through this layer (a trainable layer comes before it). Move it "
            f"before every trainable layer, give the function a .backward(dy, x, y), or write "
            f"a Layer subclass with a backward")

    def get_config(self):
        name = getattr(self.function, "__name__", type(self.function).__name__)
        raise ConvkitError(
            f"Lambda {self.name!r}: its function {name} is Python code, which convkit never "
            f"saves or loads (Keras's safe mode); write a Layer subclass with get_config and "
            f"register it with convkit.layers.register")

    @classmethod
    def from_config(cls, config: dict):
        raise ConvkitError(f"Lambda {config.get('name', '')!r}: a function is never loaded "
                           f"from a config or file (it would run code the file names); "
                           f"register a Layer subclass instead")

    def extra_repr(self) -> str:
        return f"function={getattr(self.function, '__name__', self.function)!r}"
