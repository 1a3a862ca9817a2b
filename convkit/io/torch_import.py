"""Copy PyTorch weights (a ``state_dict``) into a convkit model, converting the layouts.

PyTorch is not needed to import this module: the state dict may hold ``torch.Tensor``
objects (read through ``.detach().cpu().numpy()``) or NumPy arrays.

Layouts, PyTorch -> convkit::

    Conv2d weight         (out, in/groups, kh, kw) -> Conv2D kernel (kh, kw, in/groups, out):
                          w.transpose(2, 3, 1, 0)
    depthwise Conv2d      (C*dm, 1, kh, kw), groups=C -> DepthwiseConv2D kernel (kh, kw, C, dm):
                          w.transpose(2, 3, 1, 0).reshape(kh, kw, C, dm)
    Linear weight         (out, in) -> Dense kernel (in, out): w.T
    BatchNorm weight, bias, running_mean, running_var
                          -> gamma, beta, moving_mean, moving_variance
    biases                unchanged

The first Dense after a ``Flatten`` of a channels_last image also gets its input rows
reordered: PyTorch flattens ``(C, H, W)``, convkit ``(H, W, C)``, so row ``(h, w, c)`` of
the convkit kernel is row ``(c, h, w)`` of the PyTorch one (``H, W, C`` come from the
Flatten's input shape). A BatchNormalization between that Flatten and the Dense is
reordered the same way.

Things to know:

* PyTorch's BatchNorm defaults are ``eps=1e-5, momentum=0.1``; Keras's (and convkit's) are
  ``epsilon=1e-3, momentum=0.99``. Build the convkit layer as
  ``BatchNormalization(epsilon=1e-5, momentum=0.9)`` to get the same numbers; the state
  dict does not record ``eps``.
* PyTorch's ``running_var`` is the running average of the *unbiased* batch variance, while
  convkit (like Keras) averages the *biased* one. The value is copied as is, so inference
  is identical; only further training updates differ, by the factor ``n / (n - 1)`` of each
  batch.
* Padding must be mirrored by hand: PyTorch's ``padding=1`` is convkit's ``padding=1``
  (explicit), ``padding="same"`` matches only for stride 1 and odd kernels.
* Never unpickle files you did not write. Load a ``.pt`` / ``.pth`` file yourself with
  ``torch.load(path, weights_only=True)`` and pass the resulting dict; this function only
  opens ``.safetensors`` files, which it reads itself (no extra package), checking every
  offset and size against the file before reading.
* A ``.safetensors`` file stores its names sorted as text (``features.10`` before
  ``features.2``), so it does not record the model's module order. Without a ``mapping``
  its modules are taken in natural order (numbers compared as numbers: ``features.2``
  before ``features.10``), and each layer gets the first unused module whose parameters
  fit its shapes (so ``classifier.*`` sorting before ``features.*`` does not matter). A
  state dict whose names come sorted as text the same way (e.g. read with
  ``safetensors.torch.load_file``) is treated alike; any other dict keeps its own order.

Example::

    net = TorchNet().eval()
    load_torch_state_dict(model, net.state_dict())
    model.predict(x_nchw.transpose(0, 2, 3, 1))     # == net(x_nchw), up to float rounding
"""
from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping

import numpy as np

from ..errors import ConvkitError, FileFormatError, ShapeError
from . import limits

__all__ = ["load_torch_state_dict", "read_state_dict", "flatten_permutation"]

_WHERE = "load_torch_state_dict"
_PASS_THROUGH = ("Dropout", "Activation", "ReLU", "BatchNormalization")
_IGNORED = ("num_batches_tracked",)


# ============================================================================ reading
def _to_numpy(value, name: str) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "cpu"):      # a torch.Tensor
        value = value.detach().cpu()
        if str(getattr(value, "dtype", "")) in ("torch.bfloat16", "torch.float16"):
            value = value.float()
        value = value.numpy()
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        raise ConvkitError(f"{_WHERE}: entry {name!r} is not an array or tensor "
                           f"({type(value).__name__})") from None
    if array.dtype.hasobject or not (np.issubdtype(array.dtype, np.number)
                                     or array.dtype == bool):
        raise ConvkitError(f"{_WHERE}: entry {name!r} has dtype {array.dtype}, not numbers")
    return array


# safetensors dtype names -> NumPy dtypes (little-endian); BF16 is widened to float32.
_SAFETENSORS_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2",
                       "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
                       "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?"}
#: the largest safetensors header read (the format's own reader allows 100 MB)
MAX_SAFETENSORS_HEADER = 100_000_000


def read_safetensors(path) -> dict:
    """The tensors of a ``.safetensors`` file as ``{name: ndarray}`` (in natural name order,
    see the module docstring), read without the ``safetensors`` package.

    The format: an 8-byte little-endian header length ``n``, ``n`` bytes of JSON
    ``{name: {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}``
    (plus an optional ``"__metadata__"`` of strings), then the tensors' bytes, C order,
    little-endian, ``begin``/``end`` counted from the end of the header. Every entry is
    checked (known dtype, ``end - begin`` equal to the shape's bytes, the tensors tiling the
    data exactly) before any tensor is read, so a file of ``n`` bytes never makes this
    allocate more than about ``2 n``; any problem is a :class:`FileFormatError`.
    """
    path = os.fspath(path)

    def fail(reason):
        raise FileFormatError(f"{_WHERE}: cannot read {path!r} as safetensors: {reason}")

    limits.refuse_special_file(path, fail)
    with open(path, "rb") as handle:           # a missing file is a FileNotFoundError
        size = os.fstat(handle.fileno()).st_size
        head = handle.read(8)
        if len(head) < 8:
            fail(f"the file has {size} bytes, too few for the 8-byte header length")
        header_size = int.from_bytes(head, "little")
        if header_size > min(size - 8, MAX_SAFETENSORS_HEADER):
            fail(f"the header claims {header_size} bytes but the file has {size}")
        raw = handle.read(header_size)
        try:
            header = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            fail(f"the header is not JSON ({str(exc)[:200]})")
        if not isinstance(header, dict) or limits.json_depth(header) > limits.MAX_JSON_DEPTH:
            fail("the header is not a JSON object of tensors")
        data_start, data_size = 8 + header_size, size - 8 - header_size
        entries = []
        for name, info in header.items():
            if name == "__metadata__":
                if not isinstance(info, dict) or not all(isinstance(v, str)
                                                         for v in info.values()):
                    fail("__metadata__ must map strings to strings")
                continue
            if not isinstance(info, dict):
                fail(f"tensor {name!r:.200} is not described by an object")
            dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
            if not isinstance(dtype, str) or dtype not in _SAFETENSORS_DTYPES:
                fail(f"tensor {name!r:.200} has an unknown dtype {dtype!r:.40}")
            if (not isinstance(shape, list) or len(shape) > limits.MAX_ARRAY_RANK
                    or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                               for d in shape)):
                fail(f"tensor {name!r:.200} has an invalid shape {shape!r:.200}")
            if (not isinstance(offsets, list) or len(offsets) != 2
                    or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
                    or not 0 <= offsets[0] <= offsets[1] <= data_size):
                fail(f"tensor {name!r:.200} has invalid data_offsets {offsets!r:.200} for "
                     f"{data_size} bytes of data")
            numpy_dtype = np.dtype(_SAFETENSORS_DTYPES[dtype])
            if offsets[1] - offsets[0] != math.prod(shape) * numpy_dtype.itemsize:
                fail(f"tensor {name!r:.200} of shape {shape} and dtype {dtype} needs "
                     f"{math.prod(shape) * numpy_dtype.itemsize} bytes, its offsets give "
                     f"{offsets[1] - offsets[0]}")
            entries.append((name, dtype, tuple(shape), offsets))
        position = 0
        for _, _, _, (begin, end) in sorted(entries, key=lambda e: tuple(e[3])):
            if begin != position:
                fail(f"the tensors overlap or leave a gap at byte {position} of the data")
            position = end
        if position != data_size:
            fail(f"the tensors cover {position} of the {data_size} data bytes")
        tensors = {}
        for name, dtype, shape, (begin, end) in sorted(entries, key=lambda e: _natural_key(e[0])):
            handle.seek(data_start + begin)
            data = handle.read(end - begin)
            if len(data) != end - begin:
                fail(f"tensor {name!r:.200} is cut short")
            array = np.frombuffer(data, dtype=_SAFETENSORS_DTYPES[dtype]).reshape(shape)
            if dtype == "BF16":                  # the high half of a float32
                array = (array.astype(np.uint32) << 16).view(np.float32)
            tensors[name] = array.astype(array.dtype.newbyteorder("="))
    return tensors


def _natural_key(name: str) -> tuple:
    """Sort key comparing runs of digits as numbers: ``features.2`` < ``features.10``."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part)
                 for part in re.split(r"(\d+)", name) if part)


def read_state_dict(source) -> dict:
    """A PyTorch state dict as an ordered ``{name: ndarray}``.

    ``source`` is a mapping of names to tensors or arrays (``module.state_dict()``), an
    object with a ``state_dict()`` method (an ``nn.Module``), or the path of a
    ``.safetensors`` file (read by :func:`read_safetensors`, in natural name order).
    Pickle-based files (``.pt``, ``.pth``, ``.bin``, ...) are refused: load them with
    ``torch.load(path, weights_only=True)`` and pass the dict.
    """
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not path.endswith(".safetensors"):
            raise ConvkitError(
                f"{_WHERE}: will not open {path!r}: only .safetensors files are read from "
                f"disk, since PyTorch's .pt/.pth files are pickles that can run code. Load it "
                f"yourself with state = torch.load(path, weights_only=True) and pass `state`")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{_WHERE}: no such file {path!r}")
        source = read_safetensors(path)
    elif not isinstance(source, Mapping) and callable(getattr(source, "state_dict", None)):
        source = source.state_dict()
    if not isinstance(source, Mapping):
        raise ConvkitError(f"{_WHERE}: expected a state dict (a mapping of names to tensors), "
                           f"an nn.Module or a .safetensors path, got {type(source).__name__}")
    return {str(name): _to_numpy(value, str(name)) for name, value in source.items()}


def _sorted_as_text(names: list) -> bool:
    """True when ``names`` are in plain text order but not in natural order: the sign of a
    source that sorted them (a safetensors file), not the model's own order."""
    return names == sorted(names) and names != sorted(names, key=_natural_key)


def _group(state: dict) -> dict:
    """``{"features.0": {"weight": w, "bias": b}, ...}`` in the state dict's order."""
    groups: dict[str, dict] = {}
    for name, value in state.items():
        prefix, _, param = name.rpartition(".")
        if param in _IGNORED:
            continue
        groups.setdefault(prefix, {})[param] = value
    return groups


# ============================================================================ flatten order
def flatten_permutation(flatten_layer, input_shape, image_format: str = "channels_last"):
    """Row order that turns PyTorch's ``(C, H, W)`` flattened features into convkit's.

    Returns an index array ``perm`` with ``convkit_features = torch_features[..., perm]``
    (so a Dense kernel becomes ``torch_weight.T[perm]``), or ``None`` when the two orders
    already agree (a channels_first array flattened as is). ``input_shape`` is the Flatten's
    4-D input shape; ``image_format`` says whether that array is channels_last or
    channels_first.

    >>> flatten_permutation(Flatten(), (None, 2, 2, 3)).tolist()     # doctest: +SKIP
    [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]
    """
    if len(input_shape) != 4:
        return None
    if getattr(flatten_layer, "data_format", "channels_last") == "channels_first":
        channels, height, width = input_shape[1], input_shape[2], input_shape[3]
    elif image_format == "channels_last":
        height, width, channels = input_shape[1], input_shape[2], input_shape[3]
    else:
        return None                                  # (C, H, W) already, like PyTorch
    if None in (channels, height, width):
        raise ShapeError(f"{_WHERE}: Flatten {flatten_layer.name!r} has input shape "
                         f"{tuple(input_shape)}; the feature order needs known sizes")
    torch_index = np.arange(channels * height * width).reshape(channels, height, width)
    return torch_index.transpose(1, 2, 0).reshape(-1)               # (H*W*C,) in convkit order


def _flatten_permutations(nodes) -> dict:
    """``{id(layer): perm}`` for the layers whose features come from a Flatten (possibly
    through dropout, activations or batch norm)."""
    producer = {out_key: (layer, in_keys, in_shapes)
                for layer, in_keys, out_key, in_shapes, _ in nodes}

    def image_format(key) -> str:
        while key in producer:
            layer, in_keys, _ = producer[key]
            if type(layer).__name__ not in ("Flatten", "Dense") and \
                    getattr(layer, "data_format", None) in ("channels_last", "channels_first"):
                return layer.data_format
            if not in_keys:
                break
            key = in_keys[0]
        return "channels_last"

    result = {}
    for layer, in_keys, _, _, _ in nodes:
        if type(layer).__name__ not in ("Dense", "BatchNormalization") or len(in_keys) != 1:
            continue
        key = in_keys[0]
        while key in producer:
            source, source_keys, source_shapes = producer[key]
            kind = type(source).__name__
            if kind == "Flatten":
                perm = flatten_permutation(source, source_shapes[0],
                                           image_format(source_keys[0]))
                if perm is not None:
                    result[id(layer)] = perm
                break
            if kind not in _PASS_THROUGH or len(source_keys) != 1:
                break
            key = source_keys[0]
    return result


# ============================================================================ conversion
def _describe(layer) -> str:
    return f"{type(layer).__name__} {layer.name!r}"


def _take(group: dict, prefix: str, param: str, layer, used: set):
    if param not in group:
        present = ", ".join(sorted(group)) or "nothing"
        raise ShapeError(f"{_WHERE}: {_describe(layer)} needs torch '{_key(prefix, param)}' "
                         f"but {prefix or '<root>'!r} has {present}")
    used.add(param)
    return group[param]


def _key(prefix: str, param: str) -> str:
    return f"{prefix}.{param}" if prefix else param


def _check_shape(array, expected, layer, prefix, param, note="") -> None:
    if tuple(array.shape) != tuple(expected):
        raise ShapeError(f"{_WHERE}: {_describe(layer)} <- torch '{_key(prefix, param)}': "
                         f"shape {tuple(array.shape)}, expected {tuple(expected)}{note}")


def _optional_bias(layer, group, prefix, used, weights):
    has_bias = "bias" in group
    if layer.use_bias and not has_bias:
        raise ShapeError(f"{_WHERE}: {_describe(layer)} has a bias but torch {prefix!r} has "
                         f"none; build the layer with use_bias=False")
    if has_bias and not layer.use_bias:
        raise ShapeError(f"{_WHERE}: torch {prefix!r} has a bias but {_describe(layer)} was "
                         f"built with use_bias=False")
    if layer.use_bias:
        bias = _take(group, prefix, "bias", layer, used)
        _check_shape(bias, layer._weight("bias").shape, layer, prefix, "bias")
        weights.append(bias)


def _convert(layer, group: dict, prefix: str, perm) -> list:
    """The layer's new weights (convkit layouts) from one torch module's parameters."""
    kind = type(layer).__name__
    used: set = set()
    weights = []
    if kind == "Conv2D":
        kernel = layer._weight("kernel")                         # (kh, kw, in/groups, out)
        w = _take(group, prefix, "weight", layer, used)
        _check_shape(w, kernel.transpose(3, 2, 0, 1).shape, layer, prefix, "weight",
                     f" (torch layout (out, in/groups, kh, kw) of kernel {kernel.shape}, "
                     f"groups={layer.groups})")
        weights.append(w.transpose(2, 3, 1, 0))                  # (kh, kw, in/groups, out)
        _optional_bias(layer, group, prefix, used, weights)
    elif kind == "DepthwiseConv2D":
        kernel = layer._weight("kernel")                         # (kh, kw, C, dm)
        kh, kw, channels, multiplier = kernel.shape
        w = _take(group, prefix, "weight", layer, used)
        _check_shape(w, (channels * multiplier, 1, kh, kw), layer, prefix, "weight",
                     f" (a torch Conv2d({channels}, {channels * multiplier}, "
                     f"groups={channels}) for kernel {kernel.shape})")
        weights.append(w.transpose(2, 3, 1, 0).reshape(kh, kw, channels, multiplier))
        _optional_bias(layer, group, prefix, used, weights)
    elif kind == "Dense":
        kernel = layer._weight("kernel")                         # (in, units)
        w = _take(group, prefix, "weight", layer, used)
        _check_shape(w, kernel.T.shape, layer, prefix, "weight",
                     f" (torch layout (out, in) of kernel {kernel.shape})")
        w = w.T                                                  # (in, units), torch row order
        if perm is not None:
            w = w[perm]                                          # rows (C, H, W) -> (H, W, C)
        weights.append(w)
        _optional_bias(layer, group, prefix, used, weights)
    elif kind == "BatchNormalization":
        channels = layer.channels
        names = ([("weight", "gamma")] if layer.scale else []) + \
                ([("bias", "beta")] if layer.center else []) + \
                [("running_mean", "moving_mean"), ("running_var", "moving_variance")]
        for param, _ in names:
            value = _take(group, prefix, param, layer, used)
            _check_shape(value, (channels,), layer, prefix, param)
            weights.append(value if perm is None else value[perm])
        for param, flag in (("weight", "scale"), ("bias", "center")):
            if param in group and param not in used:
                raise ShapeError(f"{_WHERE}: torch {prefix!r} has '{param}' but "
                                 f"{_describe(layer)} was built with {flag}=False")
    else:
        raise ConvkitError(f"{_WHERE}: {_describe(layer)} has weights but no PyTorch "
                           f"counterpart is known (supported: Conv2D, DepthwiseConv2D, Dense, "
                           f"BatchNormalization)")
    extra = sorted(set(group) - used)
    if extra:
        raise ShapeError(f"{_WHERE}: torch {prefix!r} has parameter(s) "
                         f"{', '.join(repr(_key(prefix, p)) for p in extra)} that "
                         f"{_describe(layer)} has no place for")
    return weights


def _pair_by_shapes(layers, prefixes, groups, perms, strict):
    """Each layer (model order) with the first unused module (``prefixes`` order) whose
    parameters convert to its shapes. Strict: every layer and every module is used."""
    unused = list(prefixes)
    pairs, unmatched = [], []
    for layer in layers:
        for prefix in unused:
            try:
                _convert(layer, groups[prefix], prefix, perms.get(id(layer)))
            except ConvkitError:
                continue
            pairs.append((layer, prefix))
            unused.remove(prefix)
            break
        else:
            unmatched.append(layer.name)
    if strict and (unmatched or unused):
        raise ShapeError(f"{_WHERE}: no module of the state dict fits layer(s) {unmatched} "
                         f"(modules left: {unused}); pass mapping={{convkit_name: "
                         f"torch_prefix}} or strict=False")
    return pairs


# ============================================================================ entry point
def load_torch_state_dict(model, state_dict, mapping=None, strict: bool = True) -> list:
    """Copy a PyTorch ``state_dict`` into ``model`` (a built convkit model), in place.

    Parameters:
        model: a built ``Sequential`` or functional ``Model``.
        state_dict: ``module.state_dict()`` (tensors or NumPy arrays), an ``nn.Module``, or
            the path of a ``.safetensors`` file (needs the ``safetensors`` package). Never a
            pickle: load ``.pt`` files with ``torch.load(path, weights_only=True)`` first.
        mapping: ``None`` pairs the model's layers that have weights (Conv2D,
            DepthwiseConv2D, Dense, BatchNormalization, in ``model.layers`` order) with the
            state dict's modules in their order. Or a dict
            ``{convkit_layer_name: torch_prefix}``, e.g. ``{"conv2d": "features.0"}``.
        strict: with ``True`` every layer with weights must be filled and every torch module
            used; ``False`` loads what matches and leaves the rest.

    Returns the list of ``(convkit_layer_name, torch_prefix)`` pairs that were loaded.
    Everything is converted and checked before any weight changes, so on an error (a
    :class:`~convkit.errors.ShapeError` naming both sides) the model is untouched.

    >>> load_torch_state_dict(model, net.state_dict())                 # doctest: +SKIP
    [('conv2d', 'features.0'), ('batch_normalization', 'features.1'), ('dense', 'fc')]
    """
    from .onnx_export import graph_nodes
    state = read_state_dict(state_dict)
    groups = _group(state)
    _, nodes, _ = graph_nodes(model, _WHERE)
    perms = _flatten_permutations(nodes)
    layers = [layer for layer in model.layers if layer.get_weights()]

    if mapping is None:
        prefixes = list(groups)
        unordered = isinstance(state_dict, (str, os.PathLike)) or _sorted_as_text(list(state))
        if unordered:
            prefixes = sorted(prefixes, key=_natural_key)
        if strict and len(prefixes) != len(layers):
            raise ShapeError(
                f"{_WHERE}: the model has {len(layers)} layers with weights "
                f"{[layer.name for layer in layers]} but the state dict has {len(prefixes)} "
                f"modules {prefixes}; pass mapping={{convkit_name: torch_prefix}} or "
                f"strict=False")
        if unordered:
            pairs = _pair_by_shapes(layers, prefixes, groups, perms, strict)
        else:
            pairs = list(zip(layers, prefixes))
    else:
        if not isinstance(mapping, Mapping):
            raise ConvkitError(f"{_WHERE}: mapping must be a dict {{convkit_layer_name: "
                               f"torch_prefix}}, got {type(mapping).__name__}")
        by_name = {layer.name: layer for layer in model.layers}
        pairs = []
        for name, prefix in mapping.items():
            if name not in by_name:
                raise ConvkitError(f"{_WHERE}: mapping names layer {name!r}, which the model "
                                   f"does not have; its layers are {list(by_name)}")
            if prefix not in groups:
                raise ConvkitError(f"{_WHERE}: mapping sends {name!r} to torch {prefix!r}, "
                                   f"which the state dict does not have; it has "
                                   f"{list(groups)}")
            pairs.append((by_name[name], prefix))
        if strict:
            missing = [layer.name for layer in layers if layer.name not in mapping]
            unused = [p for p in groups if p not in set(mapping.values())]
            if missing or unused:
                raise ShapeError(f"{_WHERE}: strict loading: layers without weights from the "
                                 f"mapping {missing}, torch modules not used {unused}; pass "
                                 f"strict=False to load only the mapped layers")

    converted = [(layer, _convert(layer, groups[prefix], prefix, perms.get(id(layer))), prefix)
                 for layer, prefix in pairs]
    for layer, weights, prefix in converted:
        try:
            layer.set_weights(weights)
        except ShapeError as exc:           # checked above; kept as a last line of defence
            raise ShapeError(f"{_WHERE}: {_describe(layer)} <- torch {prefix!r}: {exc}") \
                from None
    return [(layer.name, prefix) for layer, _, prefix in converted]
