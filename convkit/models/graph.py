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

Shared layers: a layer called on several tensors (a siamese branch) is one layer with one
set of weights and several nodes. Its cache holds one forward pass, so the forward keeps a
copy of each node's cache (:func:`_save_state`) and the backward puts it back before that
node's ``backward``; the weight gradients of the nodes are summed, as the chain rule asks of
a weight used twice.

Models as layers: a ``Model`` or ``Sequential`` called on symbolic tensors becomes a node of
the outer graph with the layer interface (``n_inputs``, ``weights``, ``grads``,
``backward``, ``regularization_losses``, ``compute_output_shape``); its forward and backward
run its own graph. It must have a single output.

This module also holds everything the functional and the sequential model share: weights,
config, summary and saving.
"""
from __future__ import annotations

import contextlib

import numpy as np

from .. import config
from ..errors import ConvkitError, ShapeError
from ..layers.base import SymbolicTensor, _is_symbolic, unique_name
from .training import Trainer, _inference_context

__all__ = ["Model"]


def _is_input_tensor(t: SymbolicTensor) -> bool:
    return not t.inputs and (t.layer is None or type(t.layer).__name__ == "InputLayer")


class _Node:
    """One layer call in the graph: ``output = layer(inputs)``. ``call_index`` counts the
    calls of a shared layer (0, 1, ...); ``shared`` says it has more than one; ``state`` is
    the layer's forward cache of this call while it is shared; ``training`` is ``False``
    for a model called as ``base(inputs, training=False)`` (always in inference mode),
    else ``None`` (the mode of the outer call)."""

    __slots__ = ("layer", "inputs", "output", "call_index", "shared", "state", "training")

    def __init__(self, layer, inputs, output, call_index=0):
        self.layer = layer
        self.inputs = inputs
        self.output = output
        self.call_index = call_index
        self.shared = False
        self.state = None
        self.training = getattr(output, "call_training", None)


class Model(Trainer):
    """A functional model from input and output symbolic tensors (lists allowed for both).

    ``model.layers`` lists the layers in topological order, input layers first; the model
    has the layer API of Keras (``get_layer``, ``count_params``, ``get_weights``,
    ``set_weights``, ``summary``, ``get_config``/``from_config``) and the training API of
    :class:`~convkit.models.training.Trainer` (``compile``, ``fit``, ``evaluate``,
    ``predict``).
    """

    #: see :mod:`convkit.layers.base`; a nested model skips its input gradient when False
    input_gradient = True

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
                    calls = layer_of_node.setdefault(id(layer), [])
                    node = _Node(layer, list(tensor.inputs), tensor, call_index=len(calls))
                    calls.append(node)
                    nodes.append(node)
                    continue
                stack.append((tensor, True))
                for parent in reversed(tensor.inputs):
                    if id(parent) not in seen:
                        stack.append((parent, False))
        for calls in layer_of_node.values():
            for node in calls:
                node.shared = len(calls) > 1
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
        unique = {}
        for layer in input_layers + [node.layer for node in nodes]:
            unique.setdefault(id(layer), layer)      # a shared layer is listed once
        self._layers = list(unique.values())
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

    def _chain_layers(self):
        """The layers of a graph that is one straight chain (``x = layer(x)`` from the one
        input to the one output, each layer called once): the functional form of a
        ``Sequential`` model predicts through the same inference chain; else ``None``."""
        nodes = self._nodes
        cached = self.__dict__.get("_straight")
        if cached is not None and cached[0] is nodes:
            return cached[1]
        straight = len(self._inputs) == 1 and len(self._outputs) == 1 and bool(nodes)
        previous = self._inputs[0] if straight else None
        for node in nodes if straight else ():
            if node.shared or len(node.inputs) != 1 or node.inputs[0] is not previous:
                straight = False
                break
            previous = node.output
        straight = straight and self._outputs[0] is previous
        layers = tuple(node.layer for node in nodes) if straight else None
        self._straight = (nodes, layers)
        return layers

    def _chain_input_shape(self):
        return self._input_shapes()[0] if len(self._inputs) == 1 else None

    def _output_shapes(self) -> list:
        return [tuple(t.shape) for t in self._outputs]

    @property
    def dtype(self) -> str:
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

    def weight_paths(self, prefix: str = "") -> list:
        """``[(path, Weight), ...]`` with unique paths ``layer/weight`` (a nested model's
        weights under ``model/layer/weight``), in :attr:`weights` order; for naming the
        arrays of a saved file."""
        paths = []
        for layer in self.layers:
            if isinstance(layer, Model):
                paths += layer.weight_paths(f"{prefix}{layer.name}/")
            else:
                paths += [(f"{prefix}{layer.name}/{w.name}", w) for w in layer.weights]
        return paths

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
        against the input's shape: rank, then every known size (channels included). A dict
        gives the arrays by input name, as in Keras."""
        if isinstance(x, dict):
            x = self._inputs_by_name(x, where)
        xs = _as_list(x, len(self._inputs), where)
        shapes = self._input_shapes()
        return [_check_input(a, shape, self.dtype, where, i if len(xs) > 1 else None)
                for i, (a, shape) in enumerate(zip(xs, shapes))]

    def _forward(self, xs: list, training: bool) -> list:
        self.__dict__.pop("_pending_forward", None)
        values = {id(t): a for t, a in zip(self._inputs, xs)}
        self._value_shapes = {}
        for node in self._nodes:
            args = [values[id(t)] for t in node.inputs]
            out = node.layer(args if node.layer.n_inputs is None else args[0],
                             training=training if node.training is None else node.training)
            if node.shared:
                node.state = _save_state(node.layer)
            values[id(node.output)] = out
            self._value_shapes[id(node.output)] = (out.shape, out.dtype)
        self._last_input_shapes = [(a.shape, a.dtype) for a in xs]
        return [values[id(t)] for t in self._outputs]

    def _inputs_by_name(self, x: dict, where: str) -> list:
        """The arrays of ``{input name: array}`` in the order of the model's inputs."""
        names = [t.layer.name for t in self._inputs]
        unknown = [key for key in x if key not in names]
        missing = [name for name in names if name not in x]
        if unknown or missing:
            raise ConvkitError(f"{where}: the inputs are named {names}; the dict "
                               + (f"lacks {missing}" if missing else "")
                               + ("; " if missing and unknown else "")
                               + (f"has unknown keys {unknown}" if unknown else ""))
        return [x[name] for name in names]

    def _fusable_output_layers(self) -> list:
        """Per output, the layer whose activation may be fused with that output's loss
        (``None`` where none may): the output's producer, if nothing else reads the output
        and the layer is not shared."""
        layers = []
        for out in self._outputs:
            alone = not _is_input_tensor(out) and self._consumers.get(id(out), 0) == 1
            if alone and any(node.shared for node in self._nodes if node.output is out):
                alone = False
            layers.append(out.layer if alone else None)
        return layers

    def _fusable_output_layer(self):
        """The layer whose activation may be fused with the loss: the single output's
        producer, if nothing else reads that output."""
        if len(self._outputs) != 1:
            return None
        return self._fusable_output_layers()[0]

    def _backward(self, dys: list, fuse=False, input_grads: bool = True) -> list:
        """Gradients flow from the outputs back through the nodes in reverse order; where a
        tensor feeds several layers their gradients are summed. Returns d(loss)/d(input)
        for every model input.

        ``fuse``: ``True`` when the single output's ``dy`` is already the gradient with
        respect to its producer's pre-activation; for several outputs, the list of output
        layers for which that holds (their activation's backward is skipped).

        With ``input_grads=False`` (training) the model inputs need no gradient: nodes
        whose output depends on no trainable weight are skipped, a single-input layer whose
        input needs no gradient is told so (``layer.input_gradient``), and the result is
        ``None`` for every input."""
        needed = None if input_grads else self._tensors_needing_grads()
        grads: dict = {}
        for t, dy in zip(self._outputs, dys):
            _accumulate(grads, id(t), dy)
        if isinstance(fuse, (list, tuple)):
            fused_ids = {id(layer) for layer in fuse}
        else:
            fused_ids = {id(self._fusable_output_layer())} if fuse else set()
        shared_grads: dict = {}       # id(layer) -> (layer, summed weight gradients)
        for node in reversed(self._nodes):
            if needed is not None and id(node.output) not in needed:
                grads.pop(id(node.output), None)
                continue
            if node.shared:
                _restore_state(node.layer, node.state)
            dy = grads.pop(id(node.output), None)
            if dy is None:  # this tensor does not reach any output
                shape, dtype = self._value_shapes[id(node.output)]
                dy = np.zeros(shape, dtype)
            skip_dx = (needed is not None and node.layer.n_inputs == 1
                       and id(node.inputs[0]) not in needed)
            if skip_dx:
                node.layer.input_gradient = False
            try:
                if id(node.layer) in fused_ids:
                    dx = node.layer.backward(dy, skip_activation=True)
                else:
                    dx = node.layer.backward(dy)
            finally:
                if skip_dx:
                    del node.layer.input_gradient   # back to the class default
            if node.shared:
                _sum_shared_grads(shared_grads, node.layer)
            if skip_dx:
                continue
            dxs = dx if node.layer.n_inputs is None else [dx]
            for t, d in zip(node.inputs, dxs):
                if d is not None and (needed is None or id(t) in needed):
                    _accumulate(grads, id(t), d)
        for layer, summed in shared_grads.values():
            layer.grads = summed
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

    def __call__(self, x, training=None):
        """Run the model on arrays: ``model(x)`` -> outputs (a list for several outputs).
        On symbolic tensors the model becomes a layer of the graph being built:
        ``features = encoder(inputs)``; ``encoder(inputs, training=False)`` keeps it in
        inference mode (dropout off, batch norm on its moving statistics) even while the
        outer model trains, as in Keras (kept in memory, not in ``get_config``)."""
        if _is_symbolic(x):
            return self._call_symbolic(x, training)
        if not training and type(x) is np.ndarray:
            y = self._lane_output(x)
            if y is not None:
                self._pending_forward = [x]      # as below: a backward() runs the layers
                return y
        xs = self._prepare_inputs(x, f"{self._kind()} {self.name!r}")
        if not training:
            with _inference_context() if len(xs[0]) > 1 else contextlib.nullcontext():
                outputs = self._chain_outputs(xs)
            if outputs is not None:
                # no layer cached anything: a backward() runs the layers first
                self._pending_forward = xs
                return outputs[0] if len(outputs) == 1 else outputs
        if training or len(xs[0]) == 1:
            outputs = self._forward(xs, training=bool(training))
        else:
            with _inference_context():
                outputs = self._forward(xs, training=False)
        return outputs[0] if len(outputs) == 1 else outputs

    def backward(self, dy):
        """Backward through the whole model after a forward call: ``dy`` is d(loss)/d(output)
        (a list for several outputs); fills every ``layer.grads`` and returns
        d(loss)/d(input) (a list for several inputs; ``None`` when an outer model set
        ``input_gradient = False``)."""
        dys = list(dy) if isinstance(dy, (list, tuple)) else [dy]
        pending = self.__dict__.pop("_pending_forward", None)
        if pending is not None:        # model(x) went through the chain: cache it now
            self._forward(pending, training=False)
        if not self.input_gradient:
            self._backward(dys, fuse=False, input_grads=False)
            return None
        dxs = self._backward(dys, fuse=False)
        return dxs[0] if len(dxs) == 1 else dxs

    # ----------------------------------------------------------------------- model as a layer
    @property
    def n_inputs(self):
        """1, or ``None`` (a list of inputs) for a model with several inputs."""
        return 1 if len(self._inputs) == 1 else None

    def _call_symbolic(self, x, training=None):
        """A node of an outer graph: this model applied to symbolic tensors."""
        where = f"{self._kind()} {self.name!r}"
        inputs = list(x) if isinstance(x, (list, tuple)) else [x]
        if len(self._output_shapes_for_call(inputs, where)) != 1:
            raise ConvkitError(f"{where}: a model used as a layer must have one output, this "
                               f"one has {len(self._output_shapes())}")
        output = SymbolicTensor(self._output_shapes()[0], layer=self, inputs=inputs)
        if training is not None:
            output.call_training = bool(training)
        return output

    def _output_shapes_for_call(self, inputs, where: str) -> list:
        """Check symbolic ``inputs`` against the model's inputs; the output shapes."""
        expected = self._input_shapes()
        if len(inputs) != len(expected):
            raise ShapeError(f"{where}: takes {len(expected)} input(s), got {len(inputs)}")
        for i, (t, want) in enumerate(zip(inputs, expected)):
            _check_shape_fits(tuple(t.shape), tuple(want), where, i)
        return self._output_shapes()

    def compute_output_shape(self, input_shape):
        """The output shape for ``input_shape`` (checked against the model's input)."""
        shapes = input_shape if isinstance(input_shape, list) else [input_shape]
        where = f"{self._kind()} {self.name!r}"
        expected = self._input_shapes()
        for i, (got, want) in enumerate(zip(shapes, expected)):
            _check_shape_fits(tuple(got), tuple(want), where, i)
        return self.output_shape

    @property
    def grads(self) -> list:
        """The weight gradients of the last backward, aligned with :attr:`weights`."""
        return [g for layer in self.layers for g in _grads_of(layer)]

    @grads.setter
    def grads(self, values) -> None:
        values = list(values)
        start = 0
        for layer in self.layers:
            count = len(layer.weights)
            layer.grads = values[start:start + count]
            start += count

    def regularization_losses(self) -> list:
        """``[(index into weights, regularizer), ...]`` over every layer, as a layer's."""
        out, offset = [], 0
        for layer in self.layers:
            if hasattr(layer, "regularization_losses"):
                out += [(offset + i, reg) for i, reg in layer.regularization_losses()]
            offset += len(layer.weights)
        return out

    def _save_state(self):
        """What the forward pass left for backward, in every layer (for shared use)."""
        return {"layers": [_save_state(layer) for layer in self.layers],
                "nodes": [node.state for node in getattr(self, "_nodes", [])],
                "values": getattr(self, "_value_shapes", None),
                "inputs": getattr(self, "_last_input_shapes", None)}

    def _restore_state(self, state) -> None:
        for layer, layer_state in zip(self.layers, state["layers"]):
            _restore_state(layer, layer_state)
        for node, node_state in zip(getattr(self, "_nodes", []), state["nodes"]):
            node.state = node_state
        self._value_shapes = state["values"]
        self._last_input_shapes = state["inputs"]

    # ----------------------------------------------------------------------- config
    def get_config(self) -> dict:
        """Keras-like JSON description: every layer once with its config and, per call, the
        tensors it reads (``inbound_nodes``: ``[[layer name, call index, 0], ...]`` for each
        call; a shared layer has several), plus the input and output layer names. A nested
        model's config is its own ``get_config()``."""
        names = {}
        for t in self._inputs:
            names[id(t)] = [t.layer.name, 0, 0]
        for node in self._nodes:
            names[id(node.output)] = [node.layer.name, node.call_index, 0]
        entries = []
        for t in self._inputs:
            entry = serialize_layer(t.layer)
            entry["name"] = t.layer.name
            entry["inbound_nodes"] = []
            entries.append(entry)
        by_layer = {}
        for node in self._nodes:
            if id(node.layer) not in by_layer:
                entry = serialize_layer(node.layer)
                entry["name"] = node.layer.name
                entry["inbound_nodes"] = []
                by_layer[id(node.layer)] = entry
                entries.append(entry)
            by_layer[id(node.layer)]["inbound_nodes"].append(
                [list(names[id(t)]) for t in node.inputs])
        return {"name": self.name, "trainable": self.trainable, "layers": entries,
                "input_layers": [names[id(t)] for t in self._inputs],
                "output_layers": [names[id(t)] for t in self._outputs],
                "single_input": self._single_input, "single_output": self._single_output}

    @classmethod
    def from_config(cls, config: dict):
        """Rebuild a functional model (new, freshly initialised weights) from
        :meth:`get_config`. The calls are replayed as soon as the tensors they read exist
        (a shared layer's calls in their original order)."""
        tensors = {}                 # (layer name, call index) -> symbolic tensor
        pending = []                 # (layer, name, call index, inbound references)
        for entry in config["layers"]:
            if entry["class_name"] == "InputLayer":
                tensors[(entry["name"], 0)] = _input_from_config(entry["config"])
                continue
            layer = deserialize_layer({"class_name": entry["class_name"],
                                       "config": entry["config"]})
            for index, inbound in enumerate(entry["inbound_nodes"]):
                pending.append((layer, entry["name"], index, inbound))
        while pending:
            waiting = []
            for layer, name, index, inbound in pending:
                keys = [(ref[0], int(ref[1]) if len(ref) > 1 else 0) for ref in inbound]
                if all(key in tensors for key in keys) and (index == 0 or
                                                             (name, index - 1) in tensors):
                    args = [tensors[key] for key in keys]
                    tensors[(name, index)] = layer(args if layer.n_inputs is None else args[0])
                else:
                    waiting.append((layer, name, index, inbound))
            if len(waiting) == len(pending):
                raise ConvkitError(f"Model.from_config: layer {waiting[0][1]!r} reads a layer "
                                   f"that is not defined in the config")
            pending = waiting

        def tensor(ref):
            return tensors[(ref[0], int(ref[1]) if len(ref) > 1 else 0)]
        inputs = [tensor(ref) for ref in config["input_layers"]]
        outputs = [tensor(ref) for ref in config["output_layers"]]
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

    def summary(self, print_fn=None, line_length=None, positions=None, explain=False,
                expand_nested=False):
        """Print Keras 3's summary table (``print_fn`` receives the whole text).

        ``expand_nested=True`` lists the layers of nested models under them;
        ``explain=True`` adds :mod:`convkit.explain`'s layer-by-layer arithmetic."""
        from .summary import print_summary
        print_summary(self, print_fn=print_fn, line_length=line_length, positions=positions,
                      expand_nested=expand_nested)
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
_MODEL_CLASSES = ("Sequential", "Functional", "Model")


def serialize_layer(layer) -> dict:
    """``{"class_name", "config"}`` of a layer, or of a model used as a layer."""
    from .. import layers as _layers
    if isinstance(layer, Model):
        kind = "Sequential" if type(layer).__name__ == "Sequential" else "Functional"
        return {"class_name": kind, "config": layer.get_config()}
    return _layers.serialize(layer)


def deserialize_layer(entry: dict):
    """The inverse of :func:`serialize_layer` (a new layer or model, fresh weights)."""
    from .. import layers as _layers
    if isinstance(entry, dict) and entry.get("class_name") in _MODEL_CLASSES:
        from .saving import model_from_config
        return model_from_config(entry["config"], entry["class_name"])
    return _layers.deserialize(entry)


def has_trainable_weights(layer) -> bool:
    """Whether ``layer`` (or a model used as a layer) has a weight an optimizer updates."""
    return bool(getattr(layer, "trainable", False)) and bool(layer.trainable_weights)


def _save_state(layer):
    """What a layer's forward pass left for its backward (a model's: every layer's). A
    layer keeps it in attributes that the forward pass assigns (``cache``, a dropout
    ``mask``, an augmentation's draw...), so a shallow copy of the attributes holds it;
    arrays updated in place (the weights) are shared, not copied."""
    if isinstance(layer, Model):
        return layer._save_state()
    return dict(vars(layer))


def _restore_state(layer, state) -> None:
    if isinstance(layer, Model):
        layer._restore_state(state)
        return
    vars(layer).update(state)


def _grads_of(layer) -> list:
    """``layer.grads`` aligned with ``layer.weights`` (``None`` where there is none yet)."""
    grads = list(getattr(layer, "grads", None) or [])
    return grads + [None] * (len(layer.weights) - len(grads))


def _sum_shared_grads(summed: dict, layer) -> None:
    """Add the weight gradients of one call of a shared layer to its running sums."""
    grads = _grads_of(layer)
    if id(layer) not in summed:
        summed[id(layer)] = (layer, grads)
        return
    previous = summed[id(layer)][1]
    summed[id(layer)] = (layer, [a if b is None else b if a is None else a + b
                                 for a, b in zip(previous, grads)])


def _check_shape_fits(got: tuple, want: tuple, where: str, index: int) -> None:
    if len(got) != len(want) or any(w is not None and g is not None and g != w
                                     for g, w in zip(got[1:], want[1:])):
        raise ShapeError(f"{where}: input {index} has shape {_shape_text(got)}, the model "
                         f"expects {_shape_text(want)}")


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
        raise ConvkitError(f"{where}: pass inputs as an array or a list of arrays (a dict by "
                           f"input name only for a functional model)")
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
    if type(x) is np.ndarray and x.dtype == dtype and x.ndim == len(expected) and x.size:
        for want, got in zip(expected[1:], x.shape[1:]):    # the common case, quickly
            if want is not None and want != got:
                break
        else:
            return x
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
