"""The layer contract every convkit layer follows.

A layer owns its weights, their gradients and a cache from the last forward pass, and calls
one functional op from :mod:`convkit.ops`. The life cycle, as in Keras:

* ``Layer(...)`` stores hyper-parameters only;
* ``build(input_shape)`` validates the input shape (batch entry ``None``) and creates the
  weights; it runs once, on the first call or explicitly;
* ``layer(x, training=False)`` runs the forward pass on an array, or, given a
  :class:`SymbolicTensor` (from :func:`convkit.layers.Input`), records a node of a
  functional graph and returns a new symbolic tensor, without touching data;
* ``layer.backward(dy)`` returns the gradient for the input (a list for multi-input layers)
  and stores the weight gradients in ``layer.grads``, aligned with ``get_weights()``
  (``None`` for non-trainable weights such as batch-norm moving statistics).

Subclasses implement ``build``, ``compute_output_shape``, ``forward`` and ``backward``, and
extend ``get_config``.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from .. import config as _config
from ..errors import ShapeError
from ..random import make_rng

_name_counters: dict[str, itertools.count] = {}


def _snake(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and (not name[i - 1].isupper() or
                                   (i + 1 < len(name) and name[i + 1].islower())):
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def unique_name(prefix: str) -> str:
    """``conv2d``, ``conv2d_1``, ``conv2d_2``, ... like Keras's automatic names."""
    counter = _name_counters.setdefault(prefix, itertools.count())
    n = next(counter)
    return prefix if n == 0 else f"{prefix}_{n}"


@dataclass
class Weight:
    """One weight array of a layer. ``value`` is updated in place by optimizers."""
    name: str
    value: np.ndarray
    trainable: bool = True


class SymbolicTensor:
    """A placeholder in a functional graph: a shape (batch ``None``) and where it comes from.

    ``layer`` is the layer that produced it and ``inputs`` the symbolic tensors that layer
    was called on (empty for an ``Input``).
    """

    def __init__(self, shape, layer=None, inputs=()):
        self.shape = tuple(shape)
        self.layer = layer
        self.inputs = list(inputs)

    def __repr__(self):
        producer = f", from {self.layer.name!r}" if self.layer is not None else ""
        return f"<SymbolicTensor shape={self.shape}{producer}>"


class Layer:
    """Base class of all layers; see the module docstring for the contract."""

    #: number of inputs the layer takes: 1, or ``None`` for "a list" (merging layers)
    n_inputs = 1

    def __init__(self, name: str | None = None, trainable: bool = True, input_shape=None,
                 dtype=None, seed: int | None = None, **kwargs):
        if kwargs.get("batch_input_shape") is not None:
            input_shape = tuple(kwargs.pop("batch_input_shape"))[1:]
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected argument(s) "
                            f"{', '.join(sorted(kwargs))}")
        self.name = name or unique_name(_snake(type(self).__name__))
        self.trainable = trainable
        self.dtype = np.dtype(dtype or _config.floatx()).name
        self.seed = seed
        self.rng = make_rng(seed)
        self._input_shape_arg = tuple(input_shape) if input_shape is not None else None
        self.built = False
        self.input_shape = None
        self.output_shape = None
        self._weights: list[Weight] = []
        self.grads: list = []
        self.cache = None

    # ----------------------------------------------------------- weights
    def add_weight(self, name: str, shape, initializer, trainable: bool = True,
                   fan_in: int | None = None, fan_out: int | None = None) -> np.ndarray:
        """Create a weight from an initializer (name or callable) and register it."""
        from .. import initializers
        init = initializers.get(initializer)
        value = np.asarray(init(tuple(shape), rng=self.rng, dtype=self.dtype,
                                fan_in=fan_in, fan_out=fan_out), dtype=self.dtype)
        self._weights.append(Weight(name, value, trainable))
        self.grads.append(None)
        return value

    def _weight(self, name: str) -> np.ndarray:
        for w in self._weights:
            if w.name == name:
                return w.value
        raise KeyError(f"{self.name}: no weight named {name!r}")

    @property
    def weights(self) -> list[Weight]:
        return list(self._weights)

    @property
    def trainable_weights(self) -> list[Weight]:
        return [w for w in self._weights if w.trainable and self.trainable]

    @property
    def non_trainable_weights(self) -> list[Weight]:
        return [w for w in self._weights if not (w.trainable and self.trainable)]

    def get_weights(self) -> list[np.ndarray]:
        """Copies of the weights, in the layer's fixed order (e.g. ``[kernel, bias]``)."""
        return [w.value.copy() for w in self._weights]

    def set_weights(self, weights) -> None:
        """Replace the weights (copied into the existing arrays), checking count and shapes."""
        weights = list(weights)
        if not self.built:
            raise ShapeError(f"{self.name}: set_weights called before the layer was built; "
                             f"call build(input_shape) or run it on data first")
        if len(weights) != len(self._weights):
            raise ShapeError(
                f"{self.name}: set_weights expected {len(self._weights)} arrays "
                f"({', '.join(w.name + str(w.value.shape) for w in self._weights)}), "
                f"got {len(weights)}")
        for w, new in zip(self._weights, weights):
            try:
                new = np.asarray(new, dtype=w.value.dtype)
            except (TypeError, ValueError):
                raise ShapeError(f"{self.name}: weight {w.name!r} must be numeric") from None
            if new.shape != w.value.shape:
                raise ShapeError(f"{self.name}: weight {w.name!r} must have shape "
                                 f"{w.value.shape}, got {new.shape}")
        for w, new in zip(self._weights, weights):
            w.value[...] = np.asarray(new, dtype=w.value.dtype)

    def count_params(self) -> int:
        return int(sum(w.value.size for w in self._weights))

    # ----------------------------------------------------------- life cycle
    def build(self, input_shape) -> None:
        """Validate ``input_shape`` (batch first, may be None) and create the weights."""
        self.input_shape = tuple(input_shape) if not _is_shape_list(input_shape) \
            else [tuple(s) for s in input_shape]
        self.output_shape = self.compute_output_shape(input_shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, x, training: bool = False):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError(f"{type(self).__name__} has no backward pass")

    def __call__(self, x, training: bool = False):
        if _is_symbolic(x):
            return self._call_symbolic(x)
        if self.n_inputs is None:
            if not isinstance(x, (list, tuple)):
                raise ShapeError(f"{self.name}: expects a list of inputs, got {type(x).__name__}")
            shapes = [tuple(np.shape(v)) for v in x]
            if not self.built:
                self.build([(None,) + s[1:] for s in shapes])
        else:
            if not self.built:
                self.build((None,) + tuple(np.shape(x))[1:])
        return self.forward(x, training=training)

    def _call_symbolic(self, x):
        inputs = list(x) if isinstance(x, (list, tuple)) else [x]
        shapes = [t.shape for t in inputs]
        shape_arg = shapes if self.n_inputs is None else shapes[0]
        if not self.built:
            self.build(shape_arg)
        out_shape = self.compute_output_shape(shape_arg)
        return SymbolicTensor(out_shape, layer=self, inputs=inputs)

    # ----------------------------------------------------------- config and repr
    def get_config(self) -> dict:
        cfg = {"name": self.name, "trainable": self.trainable, "dtype": self.dtype}
        if self._input_shape_arg is not None:
            cfg["input_shape"] = list(self._input_shape_arg)
        if self.seed is not None:
            cfg["seed"] = self.seed
        return cfg

    @classmethod
    def from_config(cls, config: dict):
        cfg = dict(config)
        if "input_shape" in cfg and cfg["input_shape"] is not None:
            cfg["input_shape"] = tuple(cfg["input_shape"])
        return cls(**cfg)

    def extra_repr(self) -> str:
        """The arguments that differ from their defaults, for ``repr``."""
        return ""

    def __repr__(self):
        extra = self.extra_repr()
        shape = f", output_shape={self.output_shape}" if self.built else ""
        return f"{type(self).__name__}({extra + ', ' if extra else ''}name={self.name!r}{shape})"


def _is_symbolic(x) -> bool:
    if isinstance(x, SymbolicTensor):
        return True
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(
        isinstance(v, SymbolicTensor) for v in x)


def _is_shape_list(shape) -> bool:
    return isinstance(shape, list) and len(shape) > 0 and all(
        isinstance(s, (tuple, list)) for s in shape)
