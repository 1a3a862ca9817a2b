"""Read Keras files: whole models (``.keras``, legacy ``.h5``) and weights (``.weights.h5``).

Keras kernels already use convkit's layouts (Conv2D HWIO ``(kh, kw, in/groups, filters)``,
DepthwiseConv2D ``(kh, kw, C, depth_multiplier)``, Dense ``(in, units)``, BatchNormalization
``gamma, beta, moving_mean, moving_variance``), so nothing is transposed. Reading needs the
optional ``h5py`` package; nothing is unpickled, imported or run, and every HDF5 file goes
through :func:`convkit.io.keras_h5.open_hdf5` (no links, no external storage, no dataset
larger than the file).

The three files Keras writes::

    m.keras (zip, Keras 3)          m.h5 (legacy HDF5)                m.weights.h5 (Keras 3)
      metadata.json                   attrs: model_config (JSON),       layers/
      config.json  (architecture,            training_config              conv2d/vars/0, 1
                    compile_config)   model_weights/                      max_pooling2d/vars/
      model.weights.h5 (as right)       attrs: layer_names                conv2d_1/vars/0, 1
                                        conv2d/  attrs: weight_names      ...
                                          conv2d/kernel, conv2d/bias    vars/  optimizer/

In Keras 3's layout a layer's group is NOT its name: it is the snake_case class name with a
per-class counter (``conv2d``, ``conv2d_1``, ... in the order of Keras's layer list), and its
variables are numbered. For a functional model Keras lists the layers by depth (deepest
first), then by the order a walk back from the outputs meets them;
:func:`convkit.io.onnx_export.keras_layer_order` reproduces that order (checked against
real Keras in the tests). The legacy layout lists the layers in that same order in
``layer_names``, each with its ``weight_names``. Files written by Keras 2.13 name the top
group ``_layer_checkpoint_dependencies``; they are read too.

Matching is by that structure, never by position in convkit's own layer list: every
variable's path (or name) and shape must fit, and the first misfit is the error. When the
file also describes the architecture (``.keras``, ``.h5``) and the model differs from it,
``strict=True`` raises and ``strict=False`` warns.

Example::

    model = load_keras_model("mnist.keras")                 # architecture + weights
    load_keras_weights(other, "mnist.weights.h5")           # into a model built by hand
"""
from __future__ import annotations

import json
import os
import re
import struct
import warnings
import zipfile
import zlib

import numpy as np

from ..errors import ConvkitError, FileFormatError, ShapeError
from . import limits
from .keras_h5 import (HDF5_MAGIC, attr_text, attr_text_list, hdf5_errors, open_hdf5,
                      read_array)

__all__ = ["load_keras_model", "load_keras_weights", "keras_path_names", "is_keras_file"]

_WEIGHTS_MEMBER = "model.weights.h5"
# The weights member may inflate to this many times the archive's size (plus a megabyte):
# float weights barely compress, and a header that understates the size is not trusted.
_INFLATION = 4
_MAX_JSON_DEPTH = 100
# Keras 2 names that convkit spells otherwise (weight names of the legacy layout).
_WEIGHT_ALIASES = {"depthwise_kernel": "kernel"}


def _snake_case(name: str) -> str:
    """Keras's rule: ``Conv2D`` -> ``conv2d``, ``BatchNormalization`` ->
    ``batch_normalization``, ``ReLU`` -> ``re_lu``."""
    name = re.sub(r"\W+", "", name)
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _group_names(class_names) -> list:
    """Keras 3's group names for layers of these classes, in order."""
    used: dict[str, int] = {}
    result = []
    for class_name in class_names:
        name = _snake_case(class_name)
        if name in used:
            used[name] += 1
            name = f"{name}_{used[name]}"
        else:
            used[name] = 0
        result.append(name)
    return result


def keras_path_names(model) -> list:
    """``[(layer, group_name), ...]`` for the model's layers: the names Keras 3 gives their
    groups under ``layers/`` (snake_case class name plus a per-class counter, in Keras's
    layer order).

    >>> [name for _, name in keras_path_names(mnist_model)]            # doctest: +SKIP
    ['conv2d', 'max_pooling2d', 'conv2d_1', 'max_pooling2d_1', 'flatten', 'dropout', 'dense']
    """
    from .onnx_export import keras_layer_order
    order = keras_layer_order(model)
    return list(zip(order, _group_names(type(layer).__name__ for layer in order)))


def _weight_name(name: str) -> str:
    """``"sequential/conv2d/kernel:0"`` -> ``"kernel"``."""
    last = name.rsplit("/", 1)[-1].split(":", 1)[0]
    return _WEIGHT_ALIASES.get(last, last)


# ============================================================================ opening
class _KerasFile:
    """What one Keras file holds, opened safely: ``kind`` ("keras", "h5", "weights" or
    "legacy_weights"), the model ``config`` and ``compile_config`` (None when absent) and
    the open HDF5 file ``h5`` with its size."""

    def __init__(self, path, kind, config, compile_config, h5, size):
        self.path, self.kind, self.config = path, kind, config
        self.compile_config, self.h5, self.size = compile_config, h5, size

    def close(self):
        self.h5.close()


def _json_depth_ok(value) -> bool:
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > _MAX_JSON_DEPTH:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return True


def _parse_json(raw, what: str, fail):
    try:
        value = json.loads(raw)
    except RecursionError:
        fail(f"{what} nests too deeply")
    except (ValueError, UnicodeDecodeError) as exc:
        fail(f"{what} is not valid JSON ({exc})")
    if not _json_depth_ok(value):
        fail(f"{what} nests deeper than {_MAX_JSON_DEPTH} levels")
    return value


def _read_zip(path: str, size: int, fail):
    """``(config, h5 bytes)`` of a ``.keras`` archive, every member read with a cap (see
    :func:`convkit.io.archive.read_zip_member`): ``config.json`` at most
    ``limits.MAX_META_BYTES``, the weights at most ``limits.MAX_KERAS_MEMBER_BYTES`` and
    ``_INFLATION`` times the zip's size, whatever the member's header declares."""
    from .archive import read_zip_member
    try:
        with zipfile.ZipFile(path) as archive:
            names = {info.filename: info for info in archive.infolist()}
            if "convkit.json" in names:
                fail("it is a convkit archive, not a Keras file")
            if "config.json" not in names:
                fail("the zip has no config.json, so it is not a Keras .keras file")
            if _WEIGHTS_MEMBER not in names:
                if "model.weights.npz" in names:
                    fail("its weights are in model.weights.npz, which Keras reads with "
                         "pickle enabled; re-save the model with the default h5 weights")
                fail(f"the zip has no {_WEIGHTS_MEMBER} member")
            if len(names) > limits.MAX_MEMBERS:
                fail(f"the zip has {len(names):,} members, more than {limits.MAX_MEMBERS:,}")
            raw = read_zip_member(archive, "config.json", size, limits.MAX_META_BYTES, fail)
            config = _parse_json(raw, "config.json", fail)
            data = read_zip_member(archive, _WEIGHTS_MEMBER, size, min(
                limits.MAX_KERAS_MEMBER_BYTES, _INFLATION * size + (1 << 20)), fail)
    except FileFormatError:
        raise
    except (zipfile.BadZipFile, zlib.error, struct.error, OSError, EOFError, ValueError,
            RuntimeError, NotImplementedError, OverflowError) as exc:
        fail(f"the zip is corrupt or truncated ({type(exc).__name__}: {exc})")
    if not data.startswith(HDF5_MAGIC):
        fail(f"its {_WEIGHTS_MEMBER} member is not an HDF5 file")
    return config, data


def is_keras_file(path) -> bool:
    """Whether ``path`` starts like a Keras file: HDF5, or a zip holding ``config.json``.
    Only a regular file is looked into (opening a FIFO would block)."""
    if not os.path.isfile(path):
        return False
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head == HDF5_MAGIC:
        return True
    if head[:4] != b"PK\x03\x04":
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, zlib.error, struct.error, OSError, EOFError, ValueError,
            RuntimeError, OverflowError):
        return False
    return "config.json" in names and "convkit.json" not in names


def _open(path: str, where: str) -> _KerasFile:
    def fail(reason):
        raise FileFormatError(f"{where}: cannot read {path!r}: {reason}")

    limits.refuse_special_file(path, fail)
    with open(path, "rb") as handle:          # a missing file is a FileNotFoundError
        head = handle.read(8)
        size = os.fstat(handle.fileno()).st_size
    if head[:4] == b"PK\x03\x04":
        config, data = _read_zip(path, size, fail)
        if not isinstance(config, dict):
            fail("config.json is not an object")
        h5 = open_hdf5(data, len(data), fail, where)
        return _KerasFile(path, "keras", config, config.get("compile_config"), h5, len(data))
    if head != HDF5_MAGIC:
        fail("it is neither a Keras file (.keras zip, HDF5 .h5) nor a convkit archive")
    h5 = open_hdf5(path, size, fail, where)
    try:
        with hdf5_errors(fail, "the HDF5 file"):
            return _classify(path, h5, size, fail)
    except BaseException:
        h5.close()
        raise


def _classify(path: str, h5, size: int, fail) -> _KerasFile:
    """What kind of Keras HDF5 file ``h5`` is, from its top-level attributes and groups."""
    text = attr_text(h5, "model_config", fail)
    if text is not None:
        config = _parse_json(text, "model_config", fail)
        training = attr_text(h5, "training_config", fail)
        training = _parse_json(training, "training_config", fail) if training else None
        if "model_weights" not in h5:
            fail("it has a model_config but no model_weights group")
        return _KerasFile(path, "h5", config, training, h5, size)
    if "layers" in h5 or "_layer_checkpoint_dependencies" in h5:
        return _KerasFile(path, "weights", None, None, h5, size)
    if attr_text_list(h5, "layer_names", fail) is not None or (
            "model_weights" in h5 and
            attr_text_list(h5["model_weights"], "layer_names", fail) is not None):
        return _KerasFile(path, "legacy_weights", None, None, h5, size)
    fail(f"no 'layers' group nor 'layer_names' attribute: not a Keras weights or model "
         f"file (top-level entries {sorted(h5.keys())[:10]})")


# ============================================================================ the two layouts
def _numbered_arrays(group, path: str, fail) -> list:
    """The datasets ``0``, ``1``, ... of a Keras 3 ``vars`` group, in numeric order."""
    keys = sorted(group.keys(), key=lambda k: (not k.isdigit(), int(k) if k.isdigit()
                                               else 0, k))
    if keys != [str(i) for i in range(len(keys))]:
        fail(f"'{path}' holds {keys[:10]}, not variables numbered 0, 1, ...")
    return [read_array(group[k], f"{path}/{k}", fail) for k in keys]


def _keras3_vars(kf: _KerasFile, pairs, names_known: bool, fail) -> list:
    """``[(layer, arrays, path), ...]`` for Keras 3's layout, ``pairs`` being ``(layer,
    group name)`` in Keras's order. ``names_known``: the layers carry the file's names, so
    each group's ``name`` attribute must match too."""
    with hdf5_errors(fail, "the weights"):
        return _keras3_vars_unguarded(kf, pairs, names_known, fail)


def _keras3_vars_unguarded(kf: _KerasFile, pairs, names_known: bool, fail) -> list:
    import h5py
    h5 = kf.h5
    top = "layers" if "layers" in h5 else "_layer_checkpoint_dependencies"
    root = h5[top]
    if not isinstance(root, h5py.Group):
        fail(f"'{top}' is not a group")
    result, consumed = [], set()
    for layer, name in pairs:
        path = f"{top}/{name}/vars"
        group = h5.get(path)
        if not layer.weights:
            continue
        if not isinstance(group, h5py.Group):
            raise ShapeError(f"load_weights: {type(layer).__name__} {layer.name!r} expects "
                             f"its weights at '{path}', which {kf.path!r} does not have; the "
                             f"file has {top}/ {sorted(root.keys())[:20]}")
        consumed.add(group.name)
        stored_name = attr_text(group, "name", fail)
        if names_known and stored_name is not None and stored_name != layer.name:
            raise ShapeError(f"load_weights: '{path}' holds the weights of layer "
                             f"{stored_name!r} but Keras's order puts {layer.name!r} there")
        result.append((layer, _numbered_arrays(group, path, fail), path))
    leftovers = []

    def visit(name, obj):
        if isinstance(obj, h5py.Group) and name.endswith("vars") and len(obj) and \
                obj.name not in consumed:
            leftovers.append(obj.name)

    root.visititems(visit)
    if leftovers:
        raise ShapeError(f"load_weights: {kf.path!r} has weights the model has no layer for: "
                         f"{leftovers[:10]}; is the architecture (or layer order) the same?")
    return result


def _legacy_layers(kf: _KerasFile, fail) -> list:
    """``[(layer name, [weight names], [arrays]), ...]`` in ``layer_names`` order."""
    with hdf5_errors(fail, "the weights"):
        return _legacy_layers_unguarded(kf, fail)


def _legacy_layers_unguarded(kf: _KerasFile, fail) -> list:
    import h5py
    root = kf.h5["model_weights"] if "model_weights" in kf.h5 else kf.h5
    result = []
    for name in attr_text_list(root, "layer_names", fail) or []:
        group = root.get(name)
        if not isinstance(group, h5py.Group):
            fail(f"layer_names lists {name!r} but the file has no such group")
        weight_names = attr_text_list(group, "weight_names", fail) or []
        arrays = []
        for weight in weight_names:
            if not isinstance(group.get(weight), h5py.Dataset):
                fail(f"group {name!r} lists weight {weight!r} but has no such dataset")
            arrays.append(read_array(group[weight], f"{name}/{weight}", fail))
        result.append((name, weight_names, arrays))
    return result


def _legacy_vars(kf: _KerasFile, layers, by_name: bool, fail) -> list:
    """Pair legacy groups with ``layers`` (Keras's order): by name when the layers carry
    the file's names, else in order among the layers that have weights (as Keras does)."""
    file_layers = [entry for entry in _legacy_layers(kf, fail) if entry[1]]
    layers = [layer for layer in layers if layer.weights]
    if by_name:
        stored = {entry[0]: entry for entry in file_layers}
        missing = [layer.name for layer in layers if layer.name not in stored]
        if missing:
            raise ShapeError(f"load_weights: {kf.path!r} has no weights for layers "
                             f"{missing}; it has {sorted(stored)}")
        pairs = [(layer, stored[layer.name]) for layer in layers]
    else:
        if len(file_layers) != len(layers):
            raise ShapeError(f"load_weights: {kf.path!r} has {len(file_layers)} layers with "
                             f"weights {[e[0] for e in file_layers]}, the model "
                             f"{len(layers)} {[layer.name for layer in layers]}")
        pairs = list(zip(layers, file_layers))
    result = []
    for layer, (group_name, weight_names, arrays) in pairs:
        ours = [_WEIGHT_ALIASES.get(w.name, w.name) for w in layer.weights]
        theirs = [_weight_name(n) for n in weight_names]
        if ours != theirs:
            raise ShapeError(f"load_weights: {type(layer).__name__} {layer.name!r} has weights "
                             f"{ours} but the file's group {group_name!r} gives it "
                             f"{weight_names}")
        result.append((layer, arrays, group_name))
    return result


def _check_and_assign(loaded) -> list:
    """Check the count and shape of every variable, then assign them all (nothing changes
    if anything does not fit)."""
    for layer, arrays, where in loaded:
        names = [w.name for w in layer.weights]
        if len(arrays) != len(names):
            raise ShapeError(f"load_weights: {type(layer).__name__} {layer.name!r} has "
                             f"{len(names)} weights {names} but '{where}' holds "
                             f"{len(arrays)} arrays {[a.shape for a in arrays]}")
        for name, array, weight in zip(names, arrays, layer.weights):
            if array.shape != weight.value.shape:
                raise ShapeError(f"load_weights: {type(layer).__name__} {layer.name!r} "
                                 f"weight {name!r} has shape {weight.value.shape} but "
                                 f"'{where}' holds {array.shape}")
    for layer, arrays, _ in loaded:
        layer.set_weights(arrays)
    return [(layer.name, where) for layer, _, where in loaded]


def _file_order(model, config: dict) -> list:
    """The model's layers in the order of the file's config (Keras's order when it wrote
    the file); a Sequential model's InputLayer is not one of its layers."""
    from ..models import Sequential
    by_name = {layer.name: layer for layer in model.layers}
    if not isinstance(model, Sequential):
        for t in model.inputs:
            by_name[t.layer.name] = t.layer
    order = []
    for entry in config["config"]["layers"]:
        inner = entry.get("config") if isinstance(entry, dict) else None
        names = [entry.get("name") if isinstance(entry, dict) else None,
                 inner.get("name") if isinstance(inner, dict) else None]
        name = next((n for n in names if isinstance(n, str) and n), None)
        if name in by_name and by_name[name] not in order:
            order.append(by_name[name])
    return order


def _budget(kf: _KerasFile) -> int:
    """The most weight memory a model described by this file may take: twice the HDF5
    part (float64 models) plus a megabyte."""
    return 2 * kf.size + (1 << 20)


# ============================================================================ entry points
def load_keras_model(path, custom_objects: dict | None = None, compile: bool = True):
    """A convkit model from a Keras ``.keras`` archive or a legacy Keras ``.h5`` model file:
    the architecture from its config, the weights (matched by Keras's own structure), and
    with ``compile=True`` the optimizer, loss and metrics it was compiled with (what convkit
    cannot reproduce gives a warning and an uncompiled model).

    ``custom_objects={"Name": LayerClass}`` supplies classes the file names that are not
    convkit layers (``Lambda`` and custom layers are refused otherwise).

    >>> model = load_keras_model("mnist.keras")                       # doctest: +SKIP
    """
    from .keras_config import compile_from_keras, model_from_keras_config
    from .keras_optimizer import optimizer_state_from_keras
    path = os.fspath(path)
    where = "load_model"
    kf = _open(path, where)

    def fail(reason):
        raise FileFormatError(f"{where}: cannot read {path!r}: {reason}")

    try:
        if kf.config is None:
            raise FileFormatError(f"{where}: {path!r} holds weights only; build the model and "
                                  f"call model.load_weights({path!r})")
        model = model_from_keras_config(kf.config, custom_objects, f"{where}: {path!r}",
                                        max_weight_bytes=_budget(kf))
        if kf.kind == "keras":
            order = _file_order(model, kf.config)
            pairs = list(zip(order, _group_names(type(layer).__name__ for layer in order)))
            loaded = _keras3_vars(kf, pairs, True, fail)
        else:
            loaded = _legacy_vars(kf, model.layers, True, fail)
        _check_and_assign(loaded)
        optimizer = _keras3_optimizer(kf, fail) if kf.kind == "keras" else None
    finally:
        kf.close()
    if compile and compile_from_keras(model, kf.compile_config, f"{where}: {path!r}") and \
            optimizer:
        state = optimizer_state_from_keras(model, optimizer)
        if state is None:
            warnings.warn(f"{where}: the optimizer state in {path!r} does not fit "
                          f"{type(model.optimizer).__name__}'s variables; training starts "
                          f"from a fresh optimizer", stacklevel=3)
        else:
            model.optimizer.set_state(state)
    return model


def _keras3_optimizer(kf: _KerasFile, fail) -> list | None:
    """The arrays of ``optimizer/vars`` in order, or None."""
    import h5py
    with hdf5_errors(fail, "the optimizer variables"):
        group = kf.h5.get("optimizer/vars")
        if not isinstance(group, h5py.Group) or not len(group):
            return None
        return _numbered_arrays(group, "optimizer/vars", fail)


def load_keras_weights(model, path, strict: bool = True,
                       custom_objects: dict | None = None) -> list:
    """Assign the weights stored in a Keras file to ``model`` (built).

    ``path`` is a Keras 3 ``.weights.h5`` file, a ``.keras`` archive (its
    ``model.weights.h5`` member is read from memory, nothing is extracted), or a legacy
    Keras ``.h5`` weights / model file. See the module docstring for the layouts.

    Each layer's arrays must match its weights in number, name (legacy) and shape (Keras and
    convkit use the same layouts, so nothing is transposed); every check runs before any
    weight changes. When the file also holds the architecture and this model's differs
    (another activation, kernel size, wiring...), ``strict=True`` raises a
    :class:`~convkit.errors.ShapeError` naming the first difference and ``strict=False``
    warns. Returns ``[(layer_name, path_in_file), ...]`` for the layers loaded.

    Raises ``FileNotFoundError`` for a missing file and
    :class:`~convkit.errors.FileFormatError` for a file that is not a readable Keras file.

    >>> load_keras_weights(model, "mnist.weights.h5")                  # doctest: +SKIP
    [('conv2d', 'layers/conv2d/vars'), ('conv2d_1', 'layers/conv2d_1/vars'), ...]
    """
    from .keras_config import architecture_difference, model_from_keras_config
    from .onnx_export import keras_layer_order
    path = os.fspath(path)
    where = f"{type(model).__name__} {model.name!r}: load_weights"
    if not model.built:
        raise ConvkitError(f"{where}: the model is not built; give it an input shape (or run "
                           f"it on data) before loading weights")
    kf = _open(path, where)

    def fail(reason):
        raise FileFormatError(f"{where}: cannot read {path!r}: {reason}")

    try:
        if kf.config is not None:
            try:
                reference = model_from_keras_config(kf.config, custom_objects,
                                                    f"{where}: {path!r}",
                                                    max_weight_bytes=_budget(kf))
            except ConvkitError as exc:
                if strict:
                    raise
                warnings.warn(f"{where}: the architecture in {path!r} cannot be compared "
                              f"with the model ({exc})", stacklevel=2)
                reference = model
            difference = architecture_difference(model, reference)
            if difference is not None:
                message = (f"{where}: the architecture in {path!r} differs from the model: "
                           f"{difference}")
                if strict:
                    raise ShapeError(message + " (strict=False loads the weights anyway)")
                warnings.warn(message, stacklevel=2)
        if kf.kind in ("keras", "weights"):
            loaded = _keras3_vars(kf, keras_path_names(model), False, fail)
        else:
            loaded = _legacy_vars(kf, keras_layer_order(model), False, fail)
        return _check_and_assign(loaded)
    finally:
        kf.close()
