"""Export a convkit model to ONNX (the optional ``onnx`` package builds the graph).

The exported graph takes the same input as the convkit model, channels_last
``(N, H, W, C)``, and returns the same outputs. Inside, image tensors are kept in ONNX's
NCHW layout: one ``Transpose`` after the input, and one back before a ``Flatten`` (so the
flattened features come out in convkit's (H, W, C) order and the Dense weights need no
change) or before the outputs. Every weight is stored as float32.

Layer by layer::

    Conv2D, DepthwiseConv2D  Conv, explicit pads = [top, left, bottom, right] (never auto_pad),
                             strides, dilations, group; kernel HWIO -> OIHW; a padding_mode
                             other than zeros becomes a Pad (reflect, edge, wrap) before it
    MaxPooling2D             MaxPool, explicit pads (-inf padding never wins), dilations
    AveragePooling2D         AveragePool, count_include_pad = 0 for Keras-style pooling
                             ('same' or 'valid'), = count_include_pad of the layer for explicit
                             pads
    ceil_mode                exported as extra bottom/right padding that is never counted,
                             so every runtime (and ONNX shape inference) agrees on the size
    Global*Pooling2D         GlobalAveragePool / GlobalMaxPool (+ Flatten unless keepdims)
    BatchNormalization       BatchNormalization with the moving statistics and epsilon
    Dense                    Gemm on 2-D inputs, MatMul + Add otherwise
    Activation, ReLU, the    Relu, Sigmoid, Tanh, Softmax (axis mapped), LeakyRelu, Elu, Selu,
    activation= argument     HardSigmoid, Softplus, Softsign, Exp, LogSoftmax, Clip (relu6),
                             gelu = 0.5 x (1 + Erf(x / sqrt 2)), swish = x * Sigmoid(x)
    ZeroPadding2D            Pad (constant 0)
    Add, Multiply            Add, Mul;  Concatenate: Concat with the axis moved to NCHW
    Flatten                  Transpose back to channels_last, then Flatten(axis=1)
    Dropout, InputLayer      nothing (identity at inference)

Example::

    model = ck.Sequential([ck.layers.Input((28, 28, 1)),
                           ck.layers.Conv2D(8, 3, activation="relu"),
                           ck.layers.Flatten(), ck.layers.Dense(10, activation="softmax")])
    export_onnx(model, "mnist.onnx")           # input "input": (N, 28, 28, 1) float32
    # onnxruntime.InferenceSession("mnist.onnx").run(None, {"input": x})[0] == model.predict(x)
"""
from __future__ import annotations

import math
import os

import numpy as np

from ..errors import ConvkitError, ShapeError
from ..shapes import window_geometry

__all__ = ["export_onnx", "SUPPORTED_LAYERS", "graph_nodes", "keras_layer_order"]

SUPPORTED_LAYERS = ("InputLayer", "Conv2D", "DepthwiseConv2D", "MaxPooling2D",
                    "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D",
                    "ZeroPadding2D", "Flatten", "Dense", "Activation", "ReLU", "Dropout",
                    "BatchNormalization", "Add", "Multiply", "Concatenate")

_WHERE = "export_onnx"
_STAND_IN = 1 << 20      # a spatial size standing for "unknown" when the pads do not depend on it


# ============================================================================ model graphs
def _is_sequential(model) -> bool:
    from ..models import Sequential
    return isinstance(model, Sequential)


def keras_layer_order(model) -> list:
    """The model's layers in the order Keras 3 lists them (``model.layers`` of the same
    model built in Keras), input layers included for functional models.

    For a ``Sequential`` model that is ``model.layers``. For a functional graph Keras sorts
    the layers by depth (the longest path to an output, deepest first) and, within one
    depth, by the order a depth-first walk from the outputs reaches them; this function
    applies the same rule to convkit's graph, so a layer's position matches Keras's whatever
    order convkit's own topological sort picked.
    """
    if _is_sequential(model):
        return list(model.layers)
    inputs = {id(t) for t in model.inputs}
    first_seen: dict[int, int] = {}
    post_order, finished, layers = [], set(), {}

    def visit(tensor):
        layer = tensor.layer
        if layer is None or id(layer) in finished:
            return
        first_seen.setdefault(id(layer), len(first_seen))
        layers[id(layer)] = layer
        if id(tensor) not in inputs:
            for parent in tensor.inputs:
                visit(parent)
        finished.add(id(layer))
        post_order.append(tensor)

    for output in model.outputs:
        visit(output)
    depth: dict[int, int] = {}
    for tensor in reversed(post_order):             # every consumer before its inputs
        here = depth.setdefault(id(tensor.layer), 0)
        for parent in tensor.inputs:
            if parent.layer is not None:
                depth[id(parent.layer)] = max(here + 1, depth.get(id(parent.layer), 0))
    for tensor in model.inputs:                      # inputs no output depends on
        if tensor.layer is not None and id(tensor.layer) not in depth:
            depth[id(tensor.layer)] = 0
            first_seen[id(tensor.layer)] = -1
            layers[id(tensor.layer)] = tensor.layer
    order = sorted(depth, key=lambda key: (-depth[key], first_seen[key]))
    return [layers[key] for key in order]


def graph_nodes(model, where: str = _WHERE):
    """A model as a list of layer calls, for exporters and importers.

    Returns ``(inputs, nodes, outputs)``: ``inputs`` is a list of ``(key, shape)``, ``nodes``
    a list of ``(layer, input_keys, output_key, input_shapes, output_shape)`` in an order
    where every node follows the nodes it reads (Keras's layer order), and ``outputs`` a
    list of keys. Shapes have the batch entry first (``None``). Input layers are not nodes.
    """
    if _is_sequential(model):
        if not model.built:
            raise ConvkitError(f"{where}: the Sequential model {model.name!r} is not built; "
                               f"give it an Input(...) or call model.build((None, H, W, C))")
        shape = tuple(model.input_shape)
        nodes, key = [], 0
        for layer in model.layers:
            _check_layer(layer, where)
            out_shape = tuple(layer.compute_output_shape(shape))
            nodes.append((layer, [key], key + 1, [shape], out_shape))
            key, shape = key + 1, out_shape
        return [(0, tuple(model.input_shape))], nodes, [key]
    if not hasattr(model, "outputs") or not hasattr(model, "inputs"):
        raise ConvkitError(f"{where}: expected a convkit Sequential or functional Model, got "
                           f"{type(model).__name__}")
    inputs = [(id(t), tuple(t.shape)) for t in model.inputs]
    input_ids = {key for key, _ in inputs}
    producer = {}

    def collect(tensor):
        if id(tensor) in input_ids or id(tensor) in producer:
            return
        producer[id(tensor)] = tensor
        for parent in tensor.inputs:
            collect(parent)

    for output in model.outputs:
        collect(output)
    by_layer = {id(t.layer): t for t in producer.values()}
    nodes = []
    for layer in keras_layer_order(model):
        tensor = by_layer.get(id(layer))
        if tensor is None:                        # an input layer
            continue
        _check_layer(layer, where)
        nodes.append((layer, [id(t) for t in tensor.inputs], id(tensor),
                      [tuple(t.shape) for t in tensor.inputs], tuple(tensor.shape)))
    return inputs, nodes, [id(t) for t in model.outputs]


def _check_layer(layer, where: str) -> None:
    if not hasattr(layer, "compute_output_shape") or not hasattr(layer, "name"):
        raise ConvkitError(f"{where}: {type(layer).__name__} is not a convkit layer; nested "
                           f"models are not supported")


# ============================================================================ graph builder
def _import_onnx():
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        raise ConvkitError(f"{_WHERE}: the 'onnx' package is needed; install it with "
                           f"pip install 'convkit[onnx]'") from None
    return onnx, helper, numpy_helper


class _Graph:
    """Collects ONNX nodes and initializers; tracks how each convkit tensor is laid out.

    A convkit tensor ``t`` lives in the ONNX graph as ``t.transpose(perm)``: ``perm`` is the
    identity for channels_last tensors kept as they are, and ``(0, 3, 1, 2)`` for NHWC
    tensors held as NCHW.
    """

    def __init__(self, helper, numpy_helper, opset: int):
        self.helper, self.numpy_helper, self.opset = helper, numpy_helper, opset
        self.nodes, self.initializers = [], []
        self.tensors: dict = {}                 # key -> (onnx name, perm)
        self._names: set[str] = set()
        self._transposed: dict = {}              # (onnx name, perm) -> onnx name

    def fresh(self, base: str) -> str:
        base = base.replace(" ", "_") or "t"
        name, n = base, 1
        while name in self._names:
            name, n = f"{base}_{n}", n + 1
        self._names.add(name)
        return name

    def const(self, base: str, array, dtype=np.float32) -> str:
        name = self.fresh(base)
        self.initializers.append(self.numpy_helper.from_array(
            np.ascontiguousarray(np.asarray(array, dtype=dtype)), name))
        return name

    def op(self, op_type: str, inputs, base: str, **attrs) -> str:
        out = self.fresh(base)
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [out],
                                                name=self.fresh(f"{base}/{op_type}"), **attrs))
        return out

    def arrange(self, name: str, perm, desired, base: str) -> str:
        """``name`` (laid out as ``perm``) transposed to layout ``desired`` (cached)."""
        perm, desired = tuple(perm), tuple(desired)
        if perm == desired:
            return name
        key = (name, desired)
        if key not in self._transposed:
            order = [perm.index(axis) for axis in desired]
            self._transposed[key] = self.op("Transpose", [name], f"{base}/transpose",
                                            perm=order)
        return self._transposed[key]


def _identity(rank: int) -> tuple:
    return tuple(range(rank))


def _image_perm(data_format: str) -> tuple:
    """Layout that makes a convkit image tensor NCHW in ONNX."""
    return (0, 3, 1, 2) if data_format == "channels_last" else (0, 1, 2, 3)


def _spatial(shape, data_format: str) -> tuple:
    return (shape[1], shape[2]) if data_format == "channels_last" else (shape[2], shape[3])


def _pads_list(pads) -> list:
    """((top, bottom), (left, right)) -> ONNX [top, left, bottom, right]."""
    (top, bottom), (left, right) = pads
    return [int(top), int(left), int(bottom), int(right)]


def _describe(layer) -> str:
    return f"layer {layer.name!r} ({type(layer).__name__})"


def _geometry(layer, in_hw, kernel, strides, padding, dilation=1, ceil_mode=False,
              pool=False):
    """:func:`window_geometry` on a possibly unknown height/width: allowed only when the pads
    do not depend on the size."""
    unknown = [axis for axis in range(2) if in_hw[axis] is None]
    if unknown:
        stride = (strides, strides) if isinstance(strides, int) else tuple(strides)
        if ceil_mode or (padding == "same" and any(stride[a] > 1 for a in unknown)):
            raise ShapeError(f"{_WHERE}: {_describe(layer)} needs a known input height and "
                             f"width (its pads depend on them); build the model with a fixed "
                             f"Input shape, got {tuple(in_hw)}")
    hw = tuple(_STAND_IN if n is None else int(n) for n in in_hw)
    return window_geometry(hw, kernel, strides, padding, dilation, ceil_mode,
                           where=type(layer).__name__, max_pad_half_window=pool)


# ============================================================================ activations
def _activation(g: _Graph, act, x: str, perm, rank: int, base: str, layer) -> str:
    """Emit activation ``act`` (a convkit activation object) on ONNX tensor ``x``."""
    name = getattr(act, "name", None)
    params = getattr(act, "params", {}) or {}
    if name in (None, "linear"):
        return x
    simple = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softplus": "Softplus",
              "softsign": "Softsign", "exponential": "Exp"}
    if name in simple:
        return g.op(simple[name], [x], f"{base}/{name}")
    if name == "relu6":
        return g.op("Clip", [x, g.const(f"{base}/zero", 0.0), g.const(f"{base}/six", 6.0)],
                    f"{base}/relu6")
    if name == "leaky_relu":
        return g.op("LeakyRelu", [x], f"{base}/leaky_relu",
                    alpha=float(params.get("negative_slope", 0.2)))
    if name == "elu":
        return g.op("Elu", [x], f"{base}/elu", alpha=float(params.get("alpha", 1.0)))
    if name == "selu":
        from ..ops.activations import SELU_ALPHA, SELU_SCALE
        return g.op("Selu", [x], f"{base}/selu", alpha=SELU_ALPHA, gamma=SELU_SCALE)
    if name == "hard_sigmoid":           # clip(x / 6 + 0.5, 0, 1)
        return g.op("HardSigmoid", [x], f"{base}/hard_sigmoid", alpha=1.0 / 6.0, beta=0.5)
    if name == "swish":
        gate = g.op("Sigmoid", [x], f"{base}/swish_gate")
        return g.op("Mul", [x, gate], f"{base}/swish")
    if name in ("gelu", "gelu_tanh"):
        half = g.const(f"{base}/half", 0.5)
        one = g.const(f"{base}/one", 1.0)
        if name == "gelu_tanh" or params.get("approximate"):
            # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
            cube = g.op("Mul", [x, g.op("Mul", [x, x], f"{base}/x2")], f"{base}/x3")
            inner = g.op("Add", [x, g.op("Mul", [cube, g.const(f"{base}/c", 0.044715)],
                                         f"{base}/cx3")], f"{base}/inner")
            inner = g.op("Mul", [inner, g.const(f"{base}/k", math.sqrt(2.0 / math.pi))],
                         f"{base}/scaled")
            gate = g.op("Add", [one, g.op("Tanh", [inner], f"{base}/tanh")], f"{base}/gate")
        else:
            # 0.5 x (1 + erf(x / sqrt 2))
            scaled = g.op("Div", [x, g.const(f"{base}/sqrt2", math.sqrt(2.0))],
                          f"{base}/scaled")
            gate = g.op("Add", [one, g.op("Erf", [scaled], f"{base}/erf")], f"{base}/gate")
        return g.op("Mul", [g.op("Mul", [x, half], f"{base}/half_x"), gate], f"{base}/gelu")
    if name in ("softmax", "log_softmax"):
        axis = int(params.get("axis", -1))
        axis = axis + rank if axis < 0 else axis
        op_type = "Softmax" if name == "softmax" else "LogSoftmax"
        return g.op(op_type, [x], f"{base}/{name}", axis=list(perm).index(axis))
    raise ConvkitError(f"{_WHERE}: {_describe(layer)} uses the activation {name!r}, which has "
                       f"no ONNX export (custom callables cannot be exported)")


def _relu_layer(g: _Graph, layer, x: str, base: str) -> str:
    """Keras's parameterised ReLU: max_value, negative_slope, threshold."""
    slope, threshold, max_value = layer.negative_slope, layer.threshold, layer.max_value
    if threshold == 0.0:
        y = g.op("LeakyRelu", [x], f"{base}/leaky_relu", alpha=slope) if slope else \
            g.op("Relu", [x], f"{base}/relu")
    else:
        below = g.op("Less", [x, g.const(f"{base}/threshold", threshold)], f"{base}/below")
        if slope:
            shifted = g.op("Sub", [x, g.const(f"{base}/threshold", threshold)],
                           f"{base}/shifted")
            low = g.op("Mul", [shifted, g.const(f"{base}/slope", slope)], f"{base}/low")
        else:
            low = g.const(f"{base}/zero", 0.0)
        y = g.op("Where", [below, low, x], f"{base}/relu")
    if max_value is not None:
        y = g.op("Min", [y, g.const(f"{base}/max_value", max_value)], f"{base}/capped")
    return y


# ============================================================================ padding
def _pad(g: _Graph, x: str, pads, mode: str, base: str) -> str:
    """Pad the two spatial axes of an NCHW tensor; ``mode`` is a convkit padding mode."""
    (top, bottom), (left, right) = pads
    if top == bottom == left == right == 0:
        return x
    if mode == "circular" and g.opset < 19:
        return _wrap_pad(g, x, pads, base)
    onnx_mode = {"zeros": "constant", "reflect": "reflect", "replicate": "edge",
                 "circular": "wrap"}[mode]
    amounts = g.const(f"{base}/pads", [0, 0, top, left, 0, 0, bottom, right], np.int64)
    return g.op("Pad", [x, amounts], f"{base}/pad", mode=onnx_mode)


def _wrap_pad(g: _Graph, x: str, pads, base: str) -> str:
    """Circular padding from Slice + Concat (ONNX's Pad 'wrap' needs opset 19)."""
    for axis, (before, after) in ((2, pads[0]), (3, pads[1])):
        parts = []
        if before:
            parts.append(_slice(g, x, axis, -before, _STAND_IN * 1024, f"{base}/wrap_before"))
        parts.append(x)
        if after:
            parts.append(_slice(g, x, axis, 0, after, f"{base}/wrap_after"))
        if len(parts) > 1:
            x = g.op("Concat", parts, f"{base}/wrap", axis=axis)
    return x


def _slice(g: _Graph, x: str, axis: int, start: int, end: int, base: str) -> str:
    return g.op("Slice", [x, g.const(f"{base}/starts", [start], np.int64),
                          g.const(f"{base}/ends", [end], np.int64),
                          g.const(f"{base}/axes", [axis], np.int64)], base)


# ============================================================================ layers
def _convolution(g: _Graph, layer, x: str, perm, in_shape, base: str):
    fmt = layer.data_format
    x = g.arrange(x, perm, _image_perm(fmt), base)
    geo = _geometry(layer, _spatial(in_shape, fmt), layer.kernel_size, layer.strides,
                    layer.padding, layer.dilation_rate)
    pads = geo.pads
    if layer.padding_mode != "zeros":
        x = _pad(g, x, pads, layer.padding_mode, base)
        pads = ((0, 0), (0, 0))
    kernel = layer._op_kernel(layer._weight("kernel"))            # (kh, kw, in/groups, out)
    weight = g.const(f"{layer.name}/kernel", kernel.transpose(3, 2, 0, 1))   # (out, in/g, kh, kw)
    inputs = [x, weight]
    if layer.use_bias:
        inputs.append(g.const(f"{layer.name}/bias", layer._weight("bias")))
    y = g.op("Conv", inputs, f"{base}/conv", kernel_shape=list(layer.kernel_size),
             strides=list(layer.strides), dilations=list(layer.dilation_rate),
             pads=_pads_list(pads), group=int(layer.groups_for_op))
    out_perm = _image_perm(fmt)
    return _activation(g, layer.activation, y, out_perm, 4, base, layer), out_perm


def _pooling(g: _Graph, layer, x: str, perm, in_shape, base: str):
    fmt = layer.data_format
    x = g.arrange(x, perm, _image_perm(fmt), base)
    is_max = type(layer).__name__ == "MaxPooling2D"
    dilation = layer.dilation_rate if is_max else (1, 1)
    geo = _geometry(layer, _spatial(in_shape, fmt), layer.pool_size, layer.strides,
                    layer.padding, dilation, layer.ceil_mode, pool=True)
    (top, bottom), (left, right) = geo.pads
    extra_h, extra_w = geo.extra          # ceil_mode: more room at the bottom/right, never counted
    attrs = {"kernel_shape": list(layer.pool_size), "strides": list(layer.strides)}
    if is_max:
        if tuple(dilation) != (1, 1):
            attrs["dilations"] = list(dilation)
        y = g.op("MaxPool", [x], f"{base}/max_pool",
                 pads=[top, left, bottom + extra_h, right + extra_w], **attrs)
    else:
        count_pads = not isinstance(layer.padding, str) and layer.count_include_pad
        if count_pads and (extra_h or extra_w):
            # The explicit pads count, the ceil-mode extra does not: pad with real zeros
            # first, then let the pool add the uncounted extra.
            x = _pad(g, x, geo.pads, "zeros", base)
            top = bottom = left = right = 0
            count_pads = False
        y = g.op("AveragePool", [x], f"{base}/avg_pool",
                 pads=[top, left, bottom + extra_h, right + extra_w],
                 count_include_pad=int(count_pads), **attrs)
    return y, _image_perm(fmt)


def _global_pooling(g: _Graph, layer, x: str, perm, base: str):
    fmt = layer.data_format
    x = g.arrange(x, perm, _image_perm(fmt), base)
    op_type = "GlobalAveragePool" if "Average" in type(layer).__name__ else "GlobalMaxPool"
    y = g.op(op_type, [x], f"{base}/{op_type}")                     # (N, C, 1, 1)
    if layer.keepdims:
        return y, _image_perm(fmt)
    return g.op("Flatten", [y], f"{base}/flatten", axis=1), (0, 1)  # (N, C)


def _flatten(g: _Graph, layer, x: str, perm, rank: int, base: str):
    desired = layer._permutation(rank) or _identity(rank)
    x = g.arrange(x, perm, desired, base)
    return g.op("Flatten", [x], f"{base}/flatten", axis=1), (0, 1)


def _dense(g: _Graph, layer, x: str, perm, rank: int, base: str):
    x = g.arrange(x, perm, _identity(rank), base)
    kernel = g.const(f"{layer.name}/kernel", layer._weight("kernel"))        # (in, units)
    if rank == 2:
        inputs = [x, kernel]
        if layer.use_bias:
            inputs.append(g.const(f"{layer.name}/bias", layer._weight("bias")))
        y = g.op("Gemm", inputs, f"{base}/gemm")
    else:
        y = g.op("MatMul", [x, kernel], f"{base}/matmul")
        if layer.use_bias:
            y = g.op("Add", [y, g.const(f"{layer.name}/bias", layer._weight("bias"))],
                     f"{base}/bias")
    return _activation(g, layer.activation, y, _identity(rank), rank, base, layer), \
        _identity(rank)


def _batch_norm(g: _Graph, layer, x: str, perm, rank: int, base: str):
    axis = layer._resolve_axis(rank)
    if perm[1] != axis:
        desired = (0, axis) + tuple(a for a in range(1, rank) if a != axis)
        if rank == 4 and axis == 3:
            desired = (0, 3, 1, 2)
        x = g.arrange(x, perm, desired, base)
        perm = desired
    channels = layer.channels
    gamma = layer._weight("gamma") if layer.scale else np.ones(channels)
    beta = layer._weight("beta") if layer.center else np.zeros(channels)
    inputs = [x, g.const(f"{layer.name}/gamma", gamma), g.const(f"{layer.name}/beta", beta),
              g.const(f"{layer.name}/moving_mean", layer._weight("moving_mean")),
              g.const(f"{layer.name}/moving_variance", layer._weight("moving_variance"))]
    y = g.op("BatchNormalization", inputs, f"{base}/batch_norm",
             epsilon=float(layer.epsilon), momentum=float(layer.momentum))
    return y, tuple(perm)


def _merge(g: _Graph, layer, xs, perms, rank: int, base: str):
    perm = tuple(perms[0])
    arranged = [g.arrange(x, p, perm, f"{base}/in{i}") for i, (x, p) in
                enumerate(zip(xs, perms))]
    kind = type(layer).__name__
    if kind == "Concatenate":
        axis = layer._resolve_axis(rank, None)
        return g.op("Concat", arranged, f"{base}/concat", axis=perm.index(axis)), perm
    op_type = "Add" if kind == "Add" else "Mul"
    y = arranged[0]
    for i, other in enumerate(arranged[1:]):
        y = g.op(op_type, [y, other], f"{base}/{op_type.lower()}{i}")
    return y, perm


def _emit(g: _Graph, layer, names, perms, in_shapes, base: str):
    kind = type(layer).__name__
    if kind not in SUPPORTED_LAYERS:
        raise ConvkitError(f"{_WHERE}: {_describe(layer)} has no ONNX export; supported "
                           f"layers are {', '.join(SUPPORTED_LAYERS)}")
    if kind in ("Add", "Multiply", "Concatenate"):
        return _merge(g, layer, names, perms, len(in_shapes[0]), base)
    x, perm, shape = names[0], tuple(perms[0]), in_shapes[0]
    rank = len(shape)
    if kind in ("Dropout", "InputLayer"):
        return x, perm
    if kind in ("Conv2D", "DepthwiseConv2D"):
        return _convolution(g, layer, x, perm, shape, base)
    if kind in ("MaxPooling2D", "AveragePooling2D"):
        return _pooling(g, layer, x, perm, shape, base)
    if kind in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
        return _global_pooling(g, layer, x, perm, base)
    if kind == "ZeroPadding2D":
        x = g.arrange(x, perm, _image_perm(layer.data_format), base)
        return _pad(g, x, layer.padding, "zeros", base), _image_perm(layer.data_format)
    if kind == "Flatten":
        return _flatten(g, layer, x, perm, rank, base)
    if kind == "Dense":
        return _dense(g, layer, x, perm, rank, base)
    if kind == "BatchNormalization":
        return _batch_norm(g, layer, x, perm, rank, base)
    if kind == "Activation":
        return _activation(g, layer.activation, x, perm, rank, base, layer), perm
    return _relu_layer(g, layer, x, base), perm                     # ReLU


# ============================================================================ entry point
def export_onnx(model, path, opset: int = 17, input_name="input", batch_size=None):
    """Write ``model`` (a convkit ``Sequential`` or functional ``Model``) to ``path`` as ONNX.

    Parameters:
        model: a built convkit model made of the layers in :data:`SUPPORTED_LAYERS`.
        path: the ``.onnx`` file to write (atomically: a failed export leaves it untouched);
            ``None`` builds and checks the model without writing it.
        opset: the ONNX opset of the default domain (13 or newer; ``circular`` padding uses
            Pad 'wrap' from opset 19, Slice + Concat below it).
        input_name: name of the graph input, or a list of names for a model with several
            inputs (default ``"input"``, then ``"input_0"``, ``"input_1"``, ...).
        batch_size: ``None`` for a dynamic batch axis (``"batch"``), or a fixed int.

    Shapes: the graph input is the model's input, channels_last ``(N, H, W, C)`` float32,
    and each output (``"output"``, or ``"output_0"``, ...) has the model's output shape.

    Returns the ``onnx.ModelProto`` (checked with ``onnx.checker.check_model``).
    Raises :class:`~convkit.errors.ConvkitError` naming the layer for anything without an
    ONNX form (an unsupported layer, a custom activation, unknown spatial sizes where the
    pads depend on them).

    >>> proto = export_onnx(model, "model.onnx")                        # doctest: +SKIP
    >>> [i.name for i in proto.graph.input]                             # doctest: +SKIP
    ['input']
    """
    onnx, helper, numpy_helper = _import_onnx()
    if not isinstance(opset, int) or isinstance(opset, bool) or opset < 13:
        raise ConvkitError(f"{_WHERE}: opset must be an int >= 13, got {opset!r}")
    if batch_size is not None and (not isinstance(batch_size, int) or isinstance(
            batch_size, bool) or batch_size < 1):
        raise ConvkitError(f"{_WHERE}: batch_size must be None or a positive int, got "
                           f"{batch_size!r}")
    inputs, nodes, outputs = graph_nodes(model)
    if isinstance(input_name, str):
        names = [input_name] if len(inputs) == 1 else \
            [f"{input_name}_{i}" for i in range(len(inputs))]
    else:
        names = list(input_name)
        if len(names) != len(inputs) or not all(isinstance(n, str) and n for n in names):
            raise ConvkitError(f"{_WHERE}: input_name must be a string or a list of "
                               f"{len(inputs)} names, got {input_name!r}")
    output_names = ["output"] if len(outputs) == 1 else \
        [f"output_{i}" for i in range(len(outputs))]
    if len(set(names + output_names)) != len(names) + len(output_names):
        raise ConvkitError(f"{_WHERE}: input names {names} clash with the output names "
                           f"{output_names}")

    g = _Graph(helper, numpy_helper, opset)
    for name in names + output_names:
        g._names.add(name)
    shapes = {}
    for (key, shape), name in zip(inputs, names):
        g.tensors[key] = (name, _identity(len(shape)))
        shapes[key] = shape
    for layer, in_keys, out_key, in_shapes, out_shape in nodes:
        sources = [g.tensors[k] for k in in_keys]
        y, perm = _emit(g, layer, [s[0] for s in sources], [s[1] for s in sources],
                        in_shapes, layer.name)
        g.tensors[out_key] = (y, tuple(perm))
        shapes[out_key] = out_shape

    # Outputs in convkit's own layout, under their public names.
    for key, name in zip(outputs, output_names):
        tensor, perm = g.tensors[key]
        tensor = g.arrange(tensor, perm, _identity(len(perm)), "output")
        g.nodes.append(helper.make_node("Identity", [tensor], [name],
                                        name=g.fresh(f"{name}/Identity")))

    def value_info(name, shape):
        batch = batch_size if batch_size is not None else "batch"
        dims = [batch] + [None if d is None else int(d) for d in shape[1:]]
        return helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, dims)

    graph = helper.make_graph(
        g.nodes, getattr(model, "name", "convkit_model") or "convkit_model",
        [value_info(n, shapes[k]) for (k, _), n in zip(inputs, names)],
        [value_info(n, shapes[k]) for k, n in zip(outputs, output_names)],
        initializer=g.initializers)
    opset_ids = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=opset_ids, producer_name="convkit",
                              doc_string="Exported by convkit: input is channels_last "
                                         "(N, H, W, C) float32.")
    proto.ir_version = helper.find_min_ir_version_for(opset_ids)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:       # onnx raises ValidationError / InferenceError subclasses
        raise ConvkitError(f"{_WHERE}: the exported graph failed onnx.checker: {exc}") from None
    if path is not None:
        from .archive import atomic_write_bytes
        atomic_write_bytes(os.fspath(path), proto.SerializeToString())
    return proto
