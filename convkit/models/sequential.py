"""A plain stack of layers, each reading the previous one's output.

    model = ck.Sequential([
        ck.layers.Input((28, 28, 1)),                         # (None, 28, 28, 1)
        ck.layers.Conv2D(32, 3, activation="relu"),           # (None, 26, 26, 32)   320
        ck.layers.MaxPooling2D(2),                            # (None, 13, 13, 32)
        ck.layers.Flatten(),                                  # (None, 5408)
        ck.layers.Dense(10, activation="softmax"),            # (None, 10)        54,090
    ])

The input shape comes from an ``Input`` (or ``InputLayer``) first entry, or from
``input_shape=`` on the first layer; the model is then built at once, shapes flowing from
layer to layer through ``compute_output_shape`` without touching data. Without an input
shape the model builds itself on its first call (or ``fit``), or on ``build(input_shape)``.
"""
from __future__ import annotations

import numpy as np

from ..errors import ConvkitError, ShapeError
from ..layers.base import SymbolicTensor, unique_name
from .graph import (Model, _check_input, _check_unique_names, _input_from_config, _shape_text,
                    deserialize_layer, has_trainable_weights, serialize_layer)

__all__ = ["Sequential"]


class Sequential(Model):
    """``Sequential(layers=None, name=None)``; ``add(layer)`` appends a layer.

    ``model.layers`` excludes the input layer, as in Keras 3. A Sequential model can itself
    be a layer of another model (``outer.add(inner)`` or ``inner(symbolic_tensor)``).
    """

    #: a Sequential model takes one input
    n_inputs = 1

    def __init__(self, layers=None, name: str | None = None, trainable: bool = True):
        self._init_common(name or unique_name("sequential"), trainable)
        self._layers = []
        self._input_layer = None
        self._build_input_shape = None   # (None, H, W, C) once known
        self._built = False
        for layer in layers or []:
            self.add(layer)

    # ----------------------------------------------------------------------- building
    def add(self, layer) -> None:
        """Append a layer (or, first, an ``Input``/``InputLayer`` fixing the input shape)."""
        where = f"Sequential {self.name!r}: add"
        if isinstance(layer, SymbolicTensor):
            if layer.inputs or (layer.layer is not None and
                                type(layer.layer).__name__ != "InputLayer"):
                raise ConvkitError(f"{where}: only an Input(...) tensor can be added, got the "
                                   f"output of layer {layer.layer.name!r}")
            self._set_input(layer.layer, (None,) + tuple(layer.shape[1:]), where)
            return
        if type(layer).__name__ == "InputLayer":
            self._set_input(layer, _input_layer_shape(layer), where)
            return
        if not hasattr(layer, "backward") or not hasattr(layer, "compute_output_shape"):
            raise ConvkitError(f"{where}: expected a convkit layer, got {type(layer).__name__}")
        if getattr(layer, "n_inputs", 1) is None:
            raise ConvkitError(f"{where}: {type(layer).__name__} {layer.name!r} merges several "
                               f"inputs; use the functional ck.Model for it")
        if any(existing is layer for existing in self._layers):
            raise ConvkitError(f"{where}: layer {layer.name!r} is already in the model")
        _check_unique_names(self._layers + [layer] +
                            ([self._input_layer] if self._input_layer else []), where)
        if not self._layers and self._build_input_shape is None and \
                getattr(layer, "_input_shape_arg", None) is not None:
            self._build_input_shape = (None,) + tuple(layer._input_shape_arg)
        self._layers.append(layer)
        if self._build_input_shape is not None:
            self._build_layers(self._build_input_shape)

    def pop(self):
        """Remove and return the last layer (the output shape goes back one layer)."""
        if not self._layers:
            raise ConvkitError(f"Sequential {self.name!r}: pop on a model with no layers")
        layer = self._layers.pop()
        if self._build_input_shape is not None and self._layers:
            self._build_layers(self._build_input_shape)
        else:
            self._built = False
        return layer

    def _set_input(self, input_layer, shape, where: str) -> None:
        if self._layers or self._build_input_shape is not None:
            raise ConvkitError(f"{where}: an Input must be the first entry of a Sequential "
                               f"model")
        self._input_layer = input_layer
        self._build_input_shape = tuple(shape)

    def build(self, input_shape=None) -> None:
        """Build every layer for ``input_shape`` = ``(None, H, W, C)`` (batch entry first)."""
        if input_shape is None:
            input_shape = self._build_input_shape
        if input_shape is None:
            raise ConvkitError(f"Sequential {self.name!r}: build needs an input shape, e.g. "
                               f"model.build((None, 28, 28, 1))")
        input_shape = (None,) + tuple(input_shape)[1:]
        if self._build_input_shape is not None and self._built and \
                tuple(self._build_input_shape) != input_shape:
            raise ShapeError(f"Sequential {self.name!r}: already built for input shape "
                             f"{_shape_text(self._build_input_shape)}, cannot rebuild for "
                             f"{_shape_text(input_shape)}")
        self._build_input_shape = input_shape
        self._build_layers(input_shape)

    def _build_layers(self, input_shape) -> None:
        """Propagate the shape through the layers (no data), building those not built."""
        shape = tuple(input_shape)
        for layer in self._layers:
            if not layer.built:
                layer.build(shape)
            elif layer.input_shape is not None and tuple(layer.input_shape[1:]) != shape[1:]:
                raise ShapeError(f"Sequential {self.name!r}: layer {layer.name!r} was built for "
                                 f"input shape {_shape_text(layer.input_shape)} but receives "
                                 f"{_shape_text(shape)}")
            shape = tuple(layer.compute_output_shape(shape))
        self._output_shape = shape
        self._built = bool(self._layers)

    @property
    def built(self) -> bool:
        return self._built

    # ----------------------------------------------------------------------- as a layer
    def _output_shapes_for_call(self, inputs, where: str) -> list:
        if len(inputs) != 1:
            raise ShapeError(f"{where}: takes one input, got {len(inputs)}")
        if not self._built:
            self.build((None,) + tuple(inputs[0].shape)[1:])
        return super()._output_shapes_for_call(inputs, where)

    def compute_output_shape(self, input_shape):
        if not self._built:
            self.build(input_shape)
        return super().compute_output_shape(input_shape)

    # ----------------------------------------------------------------------- shapes
    @property
    def layers(self) -> list:
        return list(self._layers)

    @property
    def input_shape(self):
        self._require_built("input_shape")
        return tuple(self._build_input_shape)

    @property
    def output_shape(self):
        self._require_built("output_shape")
        return tuple(self._output_shape)

    def _input_shapes(self) -> list:
        return [tuple(self._build_input_shape)]

    def _output_shapes(self) -> list:
        self._require_built("output_shape")
        return [tuple(self._output_shape)]

    # ----------------------------------------------------------------------- forward / backward
    def _prepare_inputs(self, x, where: str) -> list:
        if isinstance(x, (list, tuple)) and len(x) == 1 and hasattr(x[0], "shape"):
            x = x[0]
        if not self._layers:
            raise ConvkitError(f"{where}: the model has no layers; add some first")
        if not self._built:
            from .._validate import as_float_array
            arr = as_float_array(x, where, name="x")
            self.build((None,) + arr.shape[1:])
        return [_check_input(x, self._build_input_shape, self.dtype, where)]

    def _forward(self, xs: list, training: bool) -> list:
        self.__dict__.pop("_pending_forward", None)
        x = xs[0]
        for layer in self._layers:
            x = layer(x, training=training)
        return [x]

    def _chain_layers(self):
        return tuple(self._layers)

    def _chain_input_shape(self):
        return self._build_input_shape

    def _fusable_output_layer(self):
        return self._layers[-1] if self._layers else None

    def _backward(self, dys: list, fuse: bool = False, input_grads: bool = True) -> list:
        """Backward through the layers, last to first. With ``input_grads=False`` (training:
        the model's input needs no gradient) the layers before the first one with trainable
        weights are skipped and that layer is told not to compute its input gradient
        (``layer.input_gradient``); the result is then ``[None]``."""
        dy = dys[0]
        last = len(self._layers) - 1
        first = 0 if input_grads else _first_trainable(self._layers)
        for i in range(last, first - 1, -1):
            layer = self._layers[i]
            skip_dx = i == first and not input_grads
            if skip_dx:
                layer.input_gradient = False
            try:
                if fuse and i == last:
                    dy = layer.backward(dy, skip_activation=True)
                else:
                    dy = layer.backward(dy)
            finally:
                if skip_dx:
                    del layer.input_gradient       # back to the class default
        return [dy] if input_grads else [None]

    # ----------------------------------------------------------------------- config
    def get_config(self) -> dict:
        """``{"name", "trainable", "layers": [InputLayer, layer, ...], "build_input_shape"}``
        with every layer as ``{"class_name", "config"}``, like Keras 3."""
        from .. import layers as _layers
        entries = []
        if self._build_input_shape is not None:
            if self._input_layer is not None:
                entries.append(_layers.serialize(self._input_layer))
            else:
                entries.append({"class_name": "InputLayer",
                                "config": {"batch_shape": list(self._build_input_shape),
                                           "name": None}})
        entries += [serialize_layer(layer) for layer in self._layers]
        return {"name": self.name, "trainable": self.trainable, "layers": entries,
                "build_input_shape": (list(self._build_input_shape)
                                      if self._build_input_shape is not None else None)}

    @classmethod
    def from_config(cls, config: dict):
        """A new Sequential model (fresh weights) from :meth:`get_config`."""
        from .. import layers as _layers
        model = cls(name=config.get("name"), trainable=config.get("trainable", True))
        for entry in config["layers"]:
            if entry["class_name"] == "InputLayer":
                cfg = dict(entry["config"])
                if cfg.get("name") is None:
                    cfg.pop("name", None)
                    shape = cfg.get("batch_shape")
                    model._build_input_shape = (None,) + tuple(shape[1:])
                    continue
                model.add(_input_from_config(cfg))
            else:
                model.add(deserialize_layer(entry))
        if not model.built and config.get("build_input_shape") is not None:
            model.build(tuple(config["build_input_shape"]))
        return model


def _first_trainable(layers) -> int:
    """Index of the first layer with a trainable weight (``len(layers)`` if none)."""
    for i, layer in enumerate(layers):
        if has_trainable_weights(layer):
            return i
    return len(layers)


def _input_layer_shape(layer) -> tuple:
    for attr in ("batch_shape", "batch_input_shape"):
        shape = getattr(layer, attr, None)
        if shape is not None:
            return (None,) + tuple(shape)[1:]
    for attr in ("output_shape", "input_shape"):
        shape = getattr(layer, attr, None)
        if shape is not None:
            return (None,) + tuple(shape)[1:]
    shape = getattr(layer, "shape", None)
    if shape is not None:
        return (None,) + tuple(shape)
    raise ConvkitError(f"Sequential: cannot read the shape of InputLayer {layer.name!r}")
