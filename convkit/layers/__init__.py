"""Keras-style layers: they own weights and gradients and call :mod:`convkit.ops`.

Every layer follows the contract in :mod:`convkit.layers.base` (``build``, ``forward``,
``backward``, ``get_weights``/``set_weights``, ``grads``, ``get_config``/``from_config``).
The registry below maps Keras class names to classes, for saving and loading models::

    >>> layer = deserialize(serialize(Conv2D(8, 3, name="c")))
    >>> type(layer).__name__, layer.filters, layer.kernel_size
    ('Conv2D', 8, (3, 3))
"""
from __future__ import annotations

from ..errors import ConvkitError
from .base import Layer, SymbolicTensor, Weight
from .conv import Conv2D, DepthwiseConv2D
from .core import Activation, Dense, Dropout, Input, InputLayer, ReLU
from .merging import Add, Concatenate, Multiply
from .normalization import BatchNormalization
from .pooling import (AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D,
                      MaxPooling2D)
from .reshaping import Cropping2D, Flatten, Permute, Reshape, ZeroPadding2D
from .conv_transpose import Conv2DTranspose
from .resampling import Rescaling, Resizing, UpSampling2D
from .separable import SeparableConv2D
from .conv1d import Conv1D
from .pooling1d import (AveragePooling1D, GlobalAveragePooling1D, GlobalMaxPooling1D,
                        MaxPooling1D, UpSampling1D)

__all__ = [
    "Layer", "SymbolicTensor", "Weight", "Input", "InputLayer", "Conv2D", "DepthwiseConv2D",
    "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D",
    "ZeroPadding2D", "Flatten", "Dense", "Activation", "ReLU", "Dropout",
    "BatchNormalization", "Add", "Multiply", "Concatenate", "get", "serialize",
    "deserialize", "register", "names",
]
# resampling, separable, reshaping and 1-D layers
_MORE_LAYERS = (Conv2DTranspose, SeparableConv2D, UpSampling2D, Resizing, Rescaling, Cropping2D,
                Reshape, Permute, Conv1D, MaxPooling1D, AveragePooling1D, GlobalAveragePooling1D,
                GlobalMaxPooling1D, UpSampling1D)
__all__ += [cls.__name__ for cls in _MORE_LAYERS]

_REGISTRY: dict[str, type] = {}
# Keras's other spellings of the same layers
_ALIASES = {"MaxPool2D": "MaxPooling2D", "AvgPool2D": "AveragePooling2D",
            "GlobalAvgPool2D": "GlobalAveragePooling2D", "GlobalMaxPool2D": "GlobalMaxPooling2D",
            "Convolution2D": "Conv2D", "Convolution2DTranspose": "Conv2DTranspose",
            "SeparableConvolution2D": "SeparableConv2D", "Convolution1D": "Conv1D",
            "MaxPool1D": "MaxPooling1D", "AvgPool1D": "AveragePooling1D",
            "GlobalAvgPool1D": "GlobalAveragePooling1D", "GlobalMaxPool1D": "GlobalMaxPooling1D"}


def register(cls: type) -> type:
    """Add a :class:`Layer` subclass to the registry under its class name (usable as a
    decorator for custom layers)."""
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise ConvkitError(f"layers.register: expected a Layer subclass, got {cls!r}")
    _REGISTRY[cls.__name__] = cls
    return cls


for _cls in (InputLayer, Conv2D, DepthwiseConv2D, MaxPooling2D, AveragePooling2D,
             GlobalAveragePooling2D, GlobalMaxPooling2D, ZeroPadding2D, Flatten, Dense,
             Activation, ReLU, Dropout, BatchNormalization, Add, Multiply, Concatenate):
    register(_cls)
for _cls in _MORE_LAYERS:
    register(_cls)


def names() -> list[str]:
    """Registered class names, sorted."""
    return sorted(_REGISTRY)


def get(name: str) -> type:
    """The layer class for a Keras class name (``"Conv2D"``, ``"MaxPool2D"``, ...)."""
    if isinstance(name, str):
        key = _ALIASES.get(name, name)
        if key in _REGISTRY:
            return _REGISTRY[key]
        lowered = {k.lower(): v for k, v in _REGISTRY.items()}
        if key.lower() in lowered:
            return lowered[key.lower()]
    raise ConvkitError(f"layers.get: unknown layer class {name!r}; known: {', '.join(names())}")


def serialize(layer: Layer) -> dict:
    """``{"class_name": "Conv2D", "config": {...}}``, JSON-serialisable."""
    if not isinstance(layer, Layer):
        raise ConvkitError(f"layers.serialize: expected a Layer, got {layer!r}")
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


def deserialize(config: dict) -> Layer:
    """A new, unbuilt (``InputLayer``: built) layer from :func:`serialize`'s output."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise ConvkitError(f"layers.deserialize: expected {{'class_name': ..., 'config': ...}}, "
                           f"got {config!r}")
    return get(config["class_name"]).from_config(dict(config.get("config") or {}))
