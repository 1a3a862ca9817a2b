"""Weight penalties added to the loss, Keras style.

A regularizer is called on a weight array and returns a scalar penalty; ``gradient(w)``
returns its derivative with respect to ``w`` (same shape)::

    L1(l1)       penalty = l1 * sum(|w|)          gradient = l1 * sign(w)
    L2(l2)       penalty = l2 * sum(w ** 2)       gradient = 2 * l2 * w
    L1L2(l1, l2) the sum of both

The strings ``"l1"``, ``"l2"`` and ``"l1_l2"`` give a factor of 0.01, Keras's default.
Layers attach regularizers to weights (``kernel_regularizer=``, ``bias_regularizer=``);
see :meth:`convkit.layers.Layer.regularization_losses` for how a model collects them.

>>> import numpy as np
>>> L2(0.1)(np.array([1.0, -2.0]))
0.5
"""
from __future__ import annotations

import numpy as np

from ._configurable import Configurable

from .errors import ConvkitError

__all__ = ["Regularizer", "L1", "L2", "L1L2", "get", "serialize", "deserialize"]


def _factor(value, where: str, name: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConvkitError(f"{where}: {name} must be a number, got {value!r}") from None
    if not np.isfinite(value) or value < 0:
        raise ConvkitError(f"{where}: {name} must be a finite number >= 0, got {value!r}")
    return value


class Regularizer(Configurable):
    """Base class: ``penalty = reg(w)`` and ``dpenalty/dw = reg.gradient(w)``."""

    def __call__(self, w) -> float:
        raise NotImplementedError

    def gradient(self, w) -> np.ndarray:
        raise NotImplementedError



class L1(Regularizer):
    """``l1 * sum(|w|)``; the gradient at 0 is taken as 0."""

    def __init__(self, l1: float = 0.01):
        self.l1 = _factor(l1, "L1", "l1")

    def __call__(self, w) -> float:
        return self.l1 * float(np.sum(np.abs(w)))

    def gradient(self, w):
        w = np.asarray(w)
        return (self.l1 * np.sign(w)).astype(w.dtype, copy=False)

    def get_config(self):
        return {"l1": self.l1}


class L2(Regularizer):
    """``l2 * sum(w ** 2)`` (no factor 1/2, as Keras)."""

    def __init__(self, l2: float = 0.01):
        self.l2 = _factor(l2, "L2", "l2")

    def __call__(self, w) -> float:
        return self.l2 * float(np.sum(np.square(w)))

    def gradient(self, w):
        w = np.asarray(w)
        return (2.0 * self.l2 * w).astype(w.dtype, copy=False)

    def get_config(self):
        return {"l2": self.l2}


class L1L2(Regularizer):
    """``l1 * sum(|w|) + l2 * sum(w ** 2)``."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0):
        self.l1 = _factor(l1, "L1L2", "l1")
        self.l2 = _factor(l2, "L1L2", "l2")

    def __call__(self, w) -> float:
        return self.l1 * float(np.sum(np.abs(w))) + self.l2 * float(np.sum(np.square(w)))

    def gradient(self, w):
        w = np.asarray(w)
        return (self.l1 * np.sign(w) + 2.0 * self.l2 * w).astype(w.dtype, copy=False)

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


_CLASSES = {"L1": L1, "L2": L2, "L1L2": L1L2}
_NAMES = {"l1": lambda: L1(0.01), "l2": lambda: L2(0.01),
          "l1_l2": lambda: L1L2(0.01, 0.01), "l1l2": lambda: L1L2(0.01, 0.01)}


def get(identifier):
    """``None``, a name (``"l1"``, ``"l2"``, ``"l1_l2"``), a config dict or a
    :class:`Regularizer` -> a :class:`Regularizer` (or ``None``)."""
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, str):
        make = _NAMES.get(identifier.lower())
        if make is None:
            if identifier in _CLASSES:
                return _CLASSES[identifier]()
            raise ConvkitError(f"regularizers.get: unknown regularizer {identifier!r}; "
                               f"known: {', '.join(sorted(_NAMES))}")
        return make()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    raise ConvkitError(f"regularizers.get: expected None, a name, a config dict or a "
                       f"Regularizer, got {identifier!r}")


def serialize(regularizer):
    """``None`` stays ``None``; otherwise ``{"class_name": ..., "config": ...}``."""
    if regularizer is None:
        return None
    if not isinstance(regularizer, Regularizer):
        raise ConvkitError(f"regularizers.serialize: not a Regularizer: {regularizer!r}")
    return {"class_name": type(regularizer).__name__, "config": regularizer.get_config()}


def deserialize(config):
    """Inverse of :func:`serialize`."""
    if config is None:
        return None
    if not isinstance(config, dict) or config.get("class_name") not in _CLASSES:
        raise ConvkitError(f"regularizers.deserialize: expected {{'class_name': one of "
                           f"{sorted(_CLASSES)}, 'config': ...}}, got {config!r}")
    return _CLASSES[config["class_name"]].from_config(dict(config.get("config") or {}))
