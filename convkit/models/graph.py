"""The functional model: a graph of layers built from symbolic tensors, Keras style.

    inputs = ck.layers.Input((8, 8, 1))
    x = ck.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    y = ck.layers.Conv2D(8, 3, padding="same")(x)
    x = ck.layers.ReLU()(ck.layers.Add()([x, y]))        # a residual connection
    x = ck.layers.GlobalAveragePooling2D()(x)
    outputs = ck.layers.Dense(10, activation="softmax")(x)
    model = ck.Model(inputs, outputs)

Calling a layer on a :class:`~convkit.layers.base.SymbolicTensor` records which tensors it
read; ``Model(inputs, outputs)`` walks back from the outputs to order the layers so that
every layer comes after the layers it reads (a topological order). Then

* forward runs the layers in that order; each layer keeps its own cache for backward;
* backward runs them in reverse: the gradient of a tensor that feeds several layers is the
  SUM of the gradients those layers send back (the multivariable chain rule), so a residual
  branch adds its gradient to the shortcut's.

Each layer object may appear once in a graph (its cache holds one forward pass); calling the
same layer twice raises an error. This module also holds everything the functional and the
sequential model share: weights, config, summary and saving.
"""
from __future__ import annotations

import numpy as np

from ..errors import ConvkitError, ShapeError
from ..layers.base import SymbolicTensor, unique_name
from .training import Trainer

__all__ = ["Model"]


def _is_input_tensor(t: SymbolicTensor) -> bool:
    return not t.inputs and (t.layer is None or type(t.layer).__name__ == "InputLayer")


class _Node:
    """One layer call in the graph: ``output = layer(inputs)``."""

    __slots__ = ("layer", "inputs", "output")

    def __init__(self, layer, inputs, output):
        self.layer = layer
        self.inputs = inputs
        self.output = output


class Model(Trainer):
    """A functional model from input and output symbolic tensors (lists allowed for both).

    ``model.layers`` lists the layers in topological order, input layers first; the model
    has the layer API of Keras (``get_layer``, ``count_params``, ``get_weights``,
    ``set_weights``, ``summary``, ``get_config``/``from_config``) and the training API of
    :class:`~convkit.models.training.Trainer` (``compile``, ``fit``, ``evaluate``,
    ``predict``).
    """

    def __init__(self, inputs=None, outputs=None, name: str | None = None,
                 trainable: bool = True):
        if inputs is None or outputs is None:
            raise ConvkitError("Model: give inputs and outputs, e.g. Model(inputs, outputs) "
                               "with inputs = ck.layers.Input(shape); for a stack of layers "
                               "use ck.Sequential([...])")
        self._init_common(name or unique_name("functional"), trainable)
        self._single_input = not isinstance(inputs, (list, tuple))
        self._single_output = not isinstance(outputs, (list, tuple))
        self._inputs = [inputs] if self._single_input else list(inputs)
        self._outputs = [outputs] if self._single_output else list(outputs)
        where = f"Model {self.name!r}"
        for kind, tensors in (("inputs", self._inputs), ("outputs", self._outputs)):
            if not tensors:
                raise ConvkitError(f"{where}: {kind} is empty")
            for t in tensors:
                if not isinstance(t, SymbolicTensor):
                    raise ConvkitError(f"{where}: {kind} must be symbolic tensors (from "
                                       f"ck.layers.Input and layer calls), got "
                                       f"{type(t).__name__}")
        for t in self._inputs:
            if not _is_input_tensor(t):
                raise ConvkitError(f"{where}: every entry of inputs must come from "
                                   f"ck.layers.Input(...), got the output of layer "
                                   f"{t.layer.name!r}")
        self._build_graph(where)

    # ----------------------------------------------------------------------- shared set-up
    def _init_common(self, name: str, trainable: bool = True) -> None:
        self.name = name
        self.trainable = trainable
        self._init_training()

    def _kind(self) -> str:
        return type(self).__name__

    def _build_graph(self, where: str) -> None:
        """Topological order of the layer calls from the outputs back to the inputs."""
        nodes, seen, layer_of_node = [], set(), {}
        input_ids = {id(t) for t in self._inputs}
        # Iterative depth-first search; a node is emitted after all the tensors it reads.
        for out in self._outputs:
            stack = [(out, False)]
            while stack:
                tensor, expanded = stack.pop()
                if id(tensor) in seen:
                    continue
                if _is_input_tensor(tensor):
                    if id(tensor) not in input_ids:
                        raise ConvkitError(
                            f"{where}: the outputs depend on an Input {tensor.shape} that is "
                            f"not in the model's inputs")
                    seen.add(id(tensor))
                    continue
                if expanded:
                    seen.add(id(tensor))
                    layer = tensor.layer
                    if id(layer) in layer_of_node:
                        raise ConvkitError(
                            f"{where}: layer {layer.name!r} is called more than once in this "
                            f"graph; shared layers are not supported (create a second layer "
                            f"and copy the weights with set_weights if you need the same "
                            f"weights twice)")
                    layer_of_node[id(layer)] = tensor
                    nodes.append(_Node(layer, list(tensor.inputs), tensor))
                    continue
                stack.append((tensor, True))
                for parent in reversed(tensor.inputs):
                    if id(parent) not in seen:
                        stack.append((parent, False))
        self._nodes = nodes
        # Tensors that more than one place reads (a layer input or a model output).
        self._consumers = {}
        for node in nodes:
            for t in node.inputs:
                self._consumers[id(t)] = self._consumers.get(id(t), 0) + 1
        for t in self._outputs:
            self._consumers[id(t)] = self._consumers.get(id(t), 0) + 1
        input_layers = []
        for i, t in enumerate(self._inputs):
            if t.layer is None:
                raise ConvkitError(f"{where}: input {i} has no InputLayer; make inputs with "
                                   f"ck.layers.Input(shape)")
            input_layers.append(t.layer)
        self._input_layers = input_layers
        self._layers = input_layers + [node.layer for node in nodes]
        _check_unique_names(self._layers, where)

    # ----------------------------------------------------------------------- layer access
    @property
    def layers(self) -> list:
        return list(self._layers)

    def get_layer(self, name: str | None = None, index: int | None = None):
        """The layer called ``name`` (or at position ``index`` of ``model.layers``)."""
        layers = self.layers
        if index is not None:
            if not -len(layers) <= index < len(layers):
                raise ConvkitError(f"{self._kind()} {self.name!r}: get_layer index {index} is "
                                   f"out of range for {len(layers)} layers")
            return layers[index]
        for layer in layers:
            if layer.name == name:
                return layer
        raise ConvkitError(f"{self._kind()} {self.name!r}: no layer named {name!r}; layers "
                           f"are {[layer.name for layer in layers]}")

    @property
    def inputs(self) -> list:
        return list(self._inputs)

    @property
    def outputs(self) -> list:
        return list(self._outputs)

    @property
    def built(self) -> bool:
        return True

    def build(self, input_shape=None) -> None:
        """A functional model is built from its inputs already; this checks ``input_shape``
        (if given) against them."""
        if input_shape is None:
            return
        shapes = input_shape if isinstance(input_shape, list) else [input_shape]
        for got, want in zip(shapes, self._input_shapes()):
            got = (None,) + tuple(got)[1:]
            if len(got) != len(want) or any(w is not None and g != w
                                             for g, w in zip(got[1:], want[1:])):
                raise ShapeError(f"Model {self.name!r}: build({input_shape}) does not match "
                                 f"the model's input shape {want}")

    @property
    def input_shape(self):
        shapes = [tuple(t.shape) for t in self._inputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self):
        shapes = self._output_shapes()
        return shapes[0] if len(shapes) == 1 else shapes

    def _input_shapes(self) -> list:
        return [tuple(t.shape) for t in self._inputs]

    def _output_shapes(self) -> list:
        return [tuple(t.shape) for t in self._outputs]

    @property
    def dtype(self) -> str:
        from .. import config
        for layer in self.layers:
            if type(layer).__name__ != "InputLayer" and getattr(layer, "dtype", None):
                return layer.dtype
        return config.floatx()

    # ----------------------------------------------------------------------- weights
    @property
    def weights(self) -> list:
        """Every :class:`~convkit.layers.base.Weight` record, in layer order."""
        return [w for layer in self.layers for w in layer.weights]

    @property
    def trainable_weights(self) -> list:
        if not self.trainable:
            return []
        return [w for layer in self.layers for w in layer.trainable_weights]

    @property
    def non_trainable_weights(self) -> list:
        trainable = {id(w) for w in self.trainable_weights}
        return [w for w in self.weights if id(w) not in trainable]

    def count_params(self) -> int:
        """Number of scalars in all weights (trainable or not), e.g. 34,826 for the Keras
        simple MNIST convnet."""
        self._require_built("count_params")
        return int(sum(layer.count_params() for layer in self.layers))

    def get_weights(self) -> list:
        """Copies of every weight array, layer by layer in ``model.layers`` order."""
        self._require_built("get_weights")
        return [arr for layer in self.layers for arr in layer.get_weights()]

    def set_weights(self, weights) -> None:
        """Replace every weight from a list like :meth:`get_weights` returns (shape-checked;
        nothing changes if any array does not fit)."""
        self._require_built("set_weights")
        weights = list(weights)
        records = [(layer, w) for layer in self.layers for w in layer.weights]
        where = f"{self._kind()} {self.name!r}: set_weights"
        if len(weights) != len(records):
            raise ShapeError(f"{where}: expected {len(records)} arrays, got {len(weights)}")
        checked = []
        for (layer, w), new in zip(records, weights):
            new = np.asarray(new)
            if new.shape != w.value.shape:
                raise ShapeError(f"{where}: weight {layer.name}/{w.name} must have shape "
                                 f"{w.value.shape}, got {new.shape}")
            if not (np.issubdtype(new.dtype, np.number) or new.dtype == bool):
                raise ShapeError(f"{where}: weight {layer.name}/{w.name} must be numeric, got "
                                 f"dtype {new.dtype}")
            checked.append(new)
        for (_, w), new in zip(records, checked):
            w.value[...] = new.astype(w.value.dtype, copy=False)

    def _require_built(self, what: str) -> None:
        if not self.built:
            raise ConvkitError(f"{self._kind()} {self.name!r}: {what} needs a built model; "
                               f"give it an Input (or input_shape= on the first layer), call "
                               f"model.build((None, H, W, C)) or run it on data first")

    # ----------------------------------------------------------------------- forward / backward
    def _prepare_inputs(self, x, where: str) -> list:
        """``x`` as a list of arrays (one per model input) in the model's dtype, each checked
        against the input's shape: rank, then every known size (channels included)."""
        xs = _as_list(x, len(self._inputs), where)
        shapes = self._input_shapes()
        return [_check_input(a, shape, self.dtype, where, i if len(xs) > 1 else None)
                for i, (a, shape) in enumerate(zip(xs, shapes))]

    def _forward(self, xs: list, training: bool) -> list:
        values = {id(t): a for t, a in zip(self._inputs, xs)}
        self._value_shapes = {}
        for node in self._nodes:
            args = [values[id(t)] for t in node.inputs]
            out = node.layer(args if node.layer.n_inputs is None else args[0],
                             training=training)
            values[id(node.output)] = out
            self._value_shapes[id(node.output)] = (out.shape, out.dtype)
        self._last_input_shapes = [(a.shape, a.dtype) for a in xs]
        return [values[id(t)] for t in self._outputs]

    def _fusable_output_layer(self):
        """The layer whose activation may be fused with the loss: the single output's
        producer, if nothing else reads that output."""
        if len(self._outputs) != 1:
            return None
        out = self._outputs[0]
        if _is_input_tensor(out) or self._consumers.get(id(out), 0) != 1:
            return None
        return out.layer

    def _backward(self, dys: list, fuse: bool = False, input_grads: bool = True) -> list:
        """Gradients flow from the outputs back through the nodes in reverse order; where a
        tensor feeds several layers their gradients are summed. Returns d(loss)/d(input)
        for every model input.

        With ``input_grads=False`` (training) the model inputs need no gradient: nodes
        whose output depends on no trainable weight are skipped, a single-input layer whose
        input needs no gradient is told so (``layer.input_gradient``), and the result is
        ``None`` for every input."""
        needed = None if input_grads else self._tensors_needing_grads()
        grads: dict = {}
        for t, dy in zip(self._outputs, dys):
            _accumulate(grads, id(t), dy)
        fused = self._fusable_output_layer() if fuse else None
        for node in reversed(self._nodes):
            if needed is not None and id(node.output) not in needed:
                grads.pop(id(node.output), None)
                continue
            dy = grads.pop(id(node.output), None)
            if dy is None:  # this tensor does not reach any output
                shape, dtype = self._value_shapes[id(node.output)]
                dy = np.zeros(shape, dtype)
            skip_dx = (needed is not None and node.layer.n_inputs == 1
                       and id(node.inputs[0]) not in needed)
            if skip_dx:
                node.layer.input_gradient = False
            try:
                if node.layer is fused:
                    dx = node.layer.backward(dy, skip_activation=True)
                else:
                    dx = node.layer.backward(dy)
            finally:
                if skip_dx:
                    del node.layer.input_gradient   # back to the class default
            if skip_dx:
                continue
            dxs = dx if node.layer.n_inputs is None else [dx]
            for t, d in zip(node.inputs, dxs):
                if d is not None and (needed is None or id(t) in needed):
                    _accumulate(grads, id(t), d)
        if not input_grads:
            return [None] * len(self._inputs)
        out = []
        for t, (shape, dtype) in zip(self._inputs, self._last_input_shapes):
            g = grads.get(id(t))
            out.append(np.zeros(shape, dtype) if g is None else g)
        return out

    def _tensors_needing_grads(self) -> set:
        """ids of the tensors whose gradient reaches a trainable weight when the model
        inputs need none: outputs of layers with trainable weights, and everything
        computed from them."""
        needed = set()
        for node in self._nodes:
            if has_trainable_weights(node.layer) or any(id(t) in needed for t in node.inputs):
                needed.add(id(node.output))
        return needed

    def __call__(self, x, training: bool = False):
        """Run the model on arrays: ``model(x)`` -> outputs (a list for several outputs)."""
        if isinstance(x, SymbolicTensor) or (isinstance(x, (list, tuple)) and x and all(
                isinstance(v, SymbolicTensor) for v in x)):
            raise ConvkitError(f"{self._kind()} {self.name!r}: using a model as a layer of "
                               f"another model is not supported; add its layers instead")
        xs = self._prepare_inputs(x, f"{self._kind()} {self.name!r}")
        outputs = self._forward(xs, training=training)
        return outputs[0] if len(outputs) == 1 else outputs

    def backward(self, dy):
        """Backward through the whole model after a forward call: ``dy`` is d(loss)/d(output)
        (a list for several outputs); fills every ``layer.grads`` and returns
        d(loss)/d(input) (a list for several inputs)."""
        dys = list(dy) if isinstance(dy, (list, tuple)) else [dy]
        dxs = self._backward(dys, fuse=False)
        return dxs[0] if len(dxs) == 1 else dxs

    # ----------------------------------------------------------------------- config
    def get_config(self) -> dict:
        """Keras-like JSON description: every layer with its config and the layers it reads
        (``inbound_nodes``), plus the input and output layer names."""
        from .. import layers as _layers
        names = {}
        for t in self._inputs:
            names[id(t)] = t.layer.name
        for node in self._nodes:
            names[id(node.output)] = node.layer.name
        entries = []
        for t in self._inputs:
            entry = _layers.serialize(t.layer)
            entry["name"] = t.layer.name
            entry["inbound_nodes"] = []
            entries.append(entry)
        for node in self._nodes:
            entry = _layers.serialize(node.layer)
            entry["name"] = node.layer.name
            entry["inbound_nodes"] = [[[names[id(t)], 0, 0] for t in node.inputs]]
            entries.append(entry)
        return {"name": self.name, "trainable": self.trainable, "layers": entries,
                "input_layers": [[names[id(t)], 0, 0] for t in self._inputs],
                "output_layers": [[names[id(t)], 0, 0] for t in self._outputs],
                "single_input": self._single_input, "single_output": self._single_output}

    @classmethod
    def from_config(cls, config: dict):
        """Rebuild a functional model (new, freshly initialised weights) from
        :meth:`get_config`."""
        from .. import layers as _layers
        tensors = {}
        for entry in config["layers"]:
            layer_cfg = {"class_name": entry["class_name"], "config": entry["config"]}
            if entry["class_name"] == "InputLayer":
                tensors[entry["name"]] = _input_from_config(entry["config"])
                continue
            layer = _layers.deserialize(layer_cfg)
            try:
                args = [tensors[inbound[0]] for inbound in entry["inbound_nodes"][0]]
            except (KeyError, IndexError, TypeError):
                raise ConvkitError(f"Model.from_config: layer {entry.get('name')!r} reads a "
                                   f"layer that is not defined before it") from None
            tensors[entry["name"]] = layer(args if layer.n_inputs is None else args[0])
        inputs = [tensors[name] for name, *_ in config["input_layers"]]
        outputs = [tensors[name] for name, *_ in config["output_layers"]]
        if config.get("single_input", len(inputs) == 1):
            inputs = inputs[0]
        if config.get("single_output", len(outputs) == 1):
            outputs = outputs[0]
        return cls(inputs, outputs, name=config.get("name"),
                   trainable=config.get("trainable", True))

    # ----------------------------------------------------------------------- summary, saving
    def summary_rows(self) -> list[dict]:
        """One dict per row of :meth:`summary`; see :func:`convkit.models.summary_rows`."""
        from .summary import summary_rows
        return summary_rows(self)

    def summary(self, print_fn=None, line_length=None, positions=None, explain=False):
        """Print Keras 3's summary table (``print_fn`` receives the whole text).

        ``explain=True`` adds :mod:`convkit.explain`'s layer-by-layer arithmetic."""
        from .summary import print_summary
        print_summary(self, print_fn=print_fn, line_length=line_length, positions=positions)
        if explain:
            from ..explain import print_explanation
            print_explanation(self, print_fn=print_fn)

    def save(self, path) -> None:
        """Architecture, weights, compile settings and optimizer state in one archive
        (``.convkit``); ``.keras`` and ``.h5`` write Keras's formats instead."""
        from .saving import save_model
        save_model(self, path)

    def save_weights(self, path) -> None:
        """Weights only (plus optimizer state when compiled); ``.weights.h5`` and ``.h5``
        write Keras's layouts instead."""
        from .saving import save_weights
        save_weights(self, path)

    def load_weights(self, path, strict: bool = True) -> None:
        """Load weights saved by :meth:`save_weights` or :meth:`save` (or by Keras) into
        this model, checking every name and shape. When a Keras file's architecture
        differs from this model's, ``strict=True`` raises and ``strict=False`` warns."""
        from .saving import load_weights
        load_weights(self, path, strict=strict)

    def __repr__(self):
        return (f"<{self._kind()} {self.name!r}: {len(self.layers)} layers"
                + (f", {self.count_params():,} params>" if self.built else ", not built>"))


# --------------------------------------------------------------------------- helpers
def has_trainable_weights(layer) -> bool:
    """Whether ``layer`` has a weight an optimizer updates."""
    return bool(getattr(layer, "trainable", False)) and any(
        w.trainable for w in getattr(layer, "_weights", ()))


def _accumulate(grads: dict, key: int, value) -> None:
    # A new array each time: never add into an array a layer may still own.
    grads[key] = value if key not in grads else grads[key] + value


def _check_unique_names(layers, where: str) -> None:
    seen = set()
    for layer in layers:
        if layer.name in seen:
            raise ConvkitError(f"{where}: two layers are named {layer.name!r}; layer names "
                               f"must be unique within a model")
        seen.add(layer.name)


def _as_list(x, n_inputs: int, where: str) -> list:
    if isinstance(x, dict):
        raise ConvkitError(f"{where}: pass inputs as an array or a list of arrays, not a dict")
    if n_inputs == 1:
        if isinstance(x, (list, tuple)) and len(x) == 1 and hasattr(x[0], "shape"):
            return [x[0]]
        return [x]
    if not isinstance(x, (list, tuple)) or len(x) != n_inputs:
        got = f"a list of {len(x)}" if isinstance(x, (list, tuple)) else type(x).__name__
        raise ConvkitError(f"{where}: the model has {n_inputs} inputs; pass a list of "
                           f"{n_inputs} arrays, got {got}")
    return list(x)


def _check_input(x, expected, dtype, where: str, index=None) -> np.ndarray:
    from .._validate import as_float_array
    label = "x" if index is None else f"input {index}"
    if x is None:
        raise ShapeError(f"{where}: {label} is None")
    arr = as_float_array(x, where, name=label)
    expected = tuple(expected)
    if arr.ndim != len(expected):
        hint = ""
        if arr.ndim == len(expected) - 1 and all(
                e is None or e == s for e, s in zip(expected[1:], arr.shape)):
            hint = "; for a single sample add the batch axis: x[None]"
        elif arr.ndim == len(expected) - 1 and len(expected) == 4:
            hint = "; grayscale images need a channel axis: x[..., None]"
        raise ShapeError(f"{where}: expected {label} of rank {len(expected)} with shape "
                         f"{_shape_text(expected)}, got shape {arr.shape}{hint}")
    for axis in range(1, len(expected)):
        if expected[axis] is not None and arr.shape[axis] != expected[axis]:
            what = "channels" if axis == len(expected) - 1 and len(expected) == 4 else \
                f"size along axis {axis}"
            raise ShapeError(f"{where}: expected {label} of shape {_shape_text(expected)}, got "
                             f"shape {arr.shape} ({what} {arr.shape[axis]} instead of "
                             f"{expected[axis]})")
    if arr.shape[0] == 0:
        raise ShapeError(f"{where}: {label} is empty (shape {arr.shape})")
    return arr.astype(dtype, copy=False)


def _shape_text(shape) -> str:
    return "(" + ", ".join("None" if s is None else str(s) for s in shape) + \
        ("," if len(shape) == 1 else "") + ")"


def _input_from_config(cfg: dict):
    """An Input tensor from an InputLayer config (``batch_shape``, ``shape`` or
    ``input_shape``)."""
    from .. import layers as _layers
    shape = None
    if cfg.get("batch_shape") is not None:
        shape = tuple(cfg["batch_shape"])[1:]
    elif cfg.get("batch_input_shape") is not None:
        shape = tuple(cfg["batch_input_shape"])[1:]
    elif cfg.get("shape") is not None:
        shape = tuple(cfg["shape"])
    elif cfg.get("input_shape") is not None:
        shape = tuple(cfg["input_shape"])
    if shape is None:
        raise ConvkitError(f"InputLayer config has no shape: {cfg}")
    kwargs = {"name": cfg["name"]} if cfg.get("name") else {}
    return _layers.Input(shape=shape, **kwargs)
