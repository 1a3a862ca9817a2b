"""Load Keras weights into a convkit model: ``.weights.h5`` files and ``.keras`` archives.

Keras kernels already use convkit's layouts (Conv2D HWIO ``(kh, kw, in/groups, filters)``,
DepthwiseConv2D ``(kh, kw, C, depth_multiplier)``, Dense ``(in, units)``, BatchNormalization
``gamma, beta, moving_mean, moving_variance``), so nothing is transposed. Reading needs the
optional ``h5py`` package; nothing is unpickled.

The file layout follows Keras 3's ``saving_lib`` (``H5IOStore``)::

    model.weights.h5                    (also the member of that name in a .keras zip)
      vars/                             the model's own variables (none for plain models)
      layers/
        conv2d/vars/0                   kernel
        conv2d/vars/1                   bias
        max_pooling2d/vars/             empty: a layer without weights still gets a group
        conv2d_1/vars/0, 1
        batch_normalization/vars/0..3   gamma, beta, moving_mean, moving_variance
        dense/vars/0, 1
      optimizer/vars/...                ignored

A layer's group is NOT its name: it is the snake_case class name with a per-class counter
(``conv2d``, ``conv2d_1``, ... in the order of the model's layer list), so two instances of
the same architecture give the same paths. For a functional model Keras lists the layers by
depth (deepest first), then by the order a walk back from the outputs meets them;
:func:`convkit.io.onnx_export.keras_layer_order` reproduces that order. Files written by
Keras 2.13 name the top group ``_layer_checkpoint_dependencies`` instead of ``layers``; they
are read too.

The legacy Keras 2 format (``model.save_weights("w.h5")`` or a full-model ``.h5`` with a
``model_weights`` group) is recognised by its ``layer_names`` attribute: each named group
lists its datasets in a ``weight_names`` attribute, and the layers with weights are assigned
in that order.

Example::

    model = ck.Sequential([...same architecture as the Keras model...])
    load_keras_weights(model, "mnist.weights.h5")      # or "mnist.keras"
"""
from __future__ import annotations

import io
import os
import re
import zipfile

import numpy as np

from ..errors import ConvkitError, FileFormatError, ShapeError

__all__ = ["load_keras_weights", "keras_path_names"]

_WHERE = "load_keras_weights"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_WEIGHTS_MEMBER = "model.weights.h5"


def _snake_case(name: str) -> str:
    """Keras's rule: ``Conv2D`` -> ``conv2d``, ``BatchNormalization`` ->
    ``batch_normalization``, ``ReLU`` -> ``re_lu``."""
    name = re.sub(r"\W+", "", name)
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def keras_path_names(model) -> list:
    """``[(layer, group_name), ...]`` for the model's layers: the names Keras 3 gives their
    groups under ``layers/`` (snake_case class name plus a per-class counter, in Keras's
    layer order).

    >>> [name for _, name in keras_path_names(mnist_model)]            # doctest: +SKIP
    ['conv2d', 'max_pooling2d', 'conv2d_1', 'max_pooling2d_1', 'flatten', 'dropout', 'dense']
    """
    from .onnx_export import keras_layer_order
    used: dict[str, int] = {}
    result = []
    for layer in keras_layer_order(model):
        name = _snake_case(type(layer).__name__)
        if name in used:
            used[name] += 1
            name = f"{name}_{used[name]}"
        else:
            used[name] = 0
        result.append((layer, name))
    return result


# ============================================================================ opening
def _import_h5py():
    try:
        import h5py
    except ImportError:
        raise ConvkitError(f"{_WHERE}: reading Keras weights needs the 'h5py' package "
                           f"(pip install h5py)") from None
    return h5py


def _open(path: str, fail):
    """The HDF5 file of ``path`` (a .weights.h5 file or a .keras zip), opened read-only."""
    h5py = _import_h5py()
    with open(path, "rb") as handle:          # a missing file is a FileNotFoundError
        head = handle.read(8)
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
                if _WEIGHTS_MEMBER not in names:
                    if "model.weights.npz" in names:
                        fail("its weights are in model.weights.npz, which Keras reads with "
                             "pickle enabled; re-save the model with the default h5 weights")
                    if "convkit.json" in names:
                        fail("it is a convkit archive; load it with ck.load_model")
                    fail(f"the zip has no {_WEIGHTS_MEMBER} member, so it is not a Keras "
                         f".keras file")
                data = archive.read(_WEIGHTS_MEMBER)
        except FileFormatError:
            raise
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as exc:
            fail(f"the zip is corrupt or truncated ({type(exc).__name__}: {exc})")
        if not data.startswith(_HDF5_MAGIC):
            fail(f"its {_WEIGHTS_MEMBER} member is not an HDF5 file")
        source = io.BytesIO(data)
    elif head == _HDF5_MAGIC:
        source = path
    else:
        fail("it is neither an HDF5 file (.weights.h5) nor a zip (.keras)")
    try:
        return h5py.File(source, "r")
    except (OSError, ValueError) as exc:
        fail(f"the HDF5 file is corrupt or truncated ({exc})")


def _read_array(dataset, where: str, fail) -> np.ndarray:
    try:
        array = np.asarray(dataset[()])
    except (OSError, ValueError, TypeError) as exc:
        fail(f"cannot read dataset {where!r} ({exc})")
    if array.dtype.hasobject or not np.issubdtype(array.dtype, np.number):
        fail(f"dataset {where!r} has dtype {array.dtype}, not numbers")
    return array


def _attr_list(group, name: str) -> list | None:
    """A list-of-strings attribute, possibly split in chunks ``name0``, ``name1``, ..."""
    if name in group.attrs:
        values = list(group.attrs[name])
    elif f"{name}0" in group.attrs:
        values, chunk = [], 0
        while f"{name}{chunk}" in group.attrs:
            values.extend(group.attrs[f"{name}{chunk}"])
            chunk += 1
    else:
        return None
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


# ============================================================================ the two layouts
def _keras3_weights(h5, model, fail) -> list:
    """``[(layer, arrays, path), ...]`` for the layers with weights, Keras 3 layout."""
    import h5py
    top = "layers" if "layers" in h5 else "_layer_checkpoint_dependencies"
    root = h5[top]
    if not isinstance(root, h5py.Group):
        fail(f"'{top}' is not a group")
    result, consumed = [], set()
    for layer, name in keras_path_names(model):
        expected = layer.get_weights()
        if not expected:
            continue
        path = f"{top}/{name}/vars"
        group = h5.get(path)
        if not isinstance(group, h5py.Group):
            present = sorted(root.keys())
            raise ShapeError(f"{_WHERE}: {type(layer).__name__} {layer.name!r} expects its "
                             f"weights at '{path}', which the file does not have; the file "
                             f"has {top}/ {present}")
        keys = sorted(group.keys(), key=lambda k: (not k.isdigit(), int(k) if k.isdigit()
                                                   else 0, k))
        arrays = [_read_array(group[k], f"{path}/{k}", fail) for k in keys]
        result.append((layer, arrays, path))
        consumed.add(group.name)
    leftovers = []

    def visit(name, obj):
        if isinstance(obj, h5py.Group) and name.endswith("vars") and len(obj) and \
                obj.name not in consumed:
            leftovers.append(obj.name)

    root.visititems(visit)
    if leftovers:
        raise ShapeError(f"{_WHERE}: the file has weights the model has no layer for: "
                         f"{leftovers}; is the architecture (or layer order) the same?")
    return result


def _legacy_weights(h5, model, fail) -> list:
    """Keras 2's ``layer_names`` / ``weight_names`` layout, assigned in order."""
    root = h5["model_weights"] if "model_weights" in h5 else h5
    file_layers = []
    for name in _attr_list(root, "layer_names") or []:
        if name not in root:
            fail(f"layer_names lists {name!r} but the file has no such group")
        group = root[name]
        weight_names = _attr_list(group, "weight_names") or []
        if weight_names:
            arrays = []
            for weight in weight_names:
                if weight not in group:
                    fail(f"group {name!r} lists weight {weight!r} but has no such dataset")
                arrays.append(_read_array(group[weight], f"{name}/{weight}", fail))
            file_layers.append((name, arrays))
    layers = [layer for layer in model.layers if layer.get_weights()]
    if len(file_layers) != len(layers):
        raise ShapeError(f"{_WHERE}: the file has {len(file_layers)} layers with weights "
                         f"{[n for n, _ in file_layers]}, the model {len(layers)} "
                         f"{[layer.name for layer in layers]}")
    return [(layer, arrays, name) for layer, (name, arrays) in zip(layers, file_layers)]


# ============================================================================ entry point
def load_keras_weights(model, path) -> list:
    """Assign the weights stored in a Keras file to ``model`` (built, same architecture).

    ``path`` is a Keras 3 ``.weights.h5`` file, a ``.keras`` archive (its
    ``model.weights.h5`` member is read from memory, nothing is extracted), or a legacy
    Keras 2 ``.h5`` weights / model file. See the module docstring for the layout.

    Each layer's arrays must match its weights in number and shape (Keras and convkit use
    the same layouts, so nothing is transposed); every check runs before any weight
    changes. Returns ``[(layer_name, path_in_file), ...]`` for the layers loaded.

    Raises ``FileNotFoundError`` for a missing file,
    :class:`~convkit.errors.FileFormatError` for a file that is not a readable Keras
    weights file (text, truncated, a foreign zip or HDF5, npz weights), and
    :class:`~convkit.errors.ShapeError` naming the layer and the path in the file when the
    architecture does not match.

    >>> load_keras_weights(model, "mnist.weights.h5")                  # doctest: +SKIP
    [('conv2d', 'layers/conv2d/vars'), ('conv2d_1', 'layers/conv2d_1/vars'), ...]
    """
    path = os.fspath(path)

    def fail(reason):
        raise FileFormatError(f"{_WHERE}: cannot read {path!r}: {reason}")

    h5 = _open(path, fail)
    try:
        if "layers" in h5 or "_layer_checkpoint_dependencies" in h5:
            loaded = _keras3_weights(h5, model, fail)
        elif _attr_list(h5, "layer_names") is not None or (
                "model_weights" in h5 and _attr_list(h5["model_weights"], "layer_names")
                is not None):
            loaded = _legacy_weights(h5, model, fail)
        else:
            fail(f"no 'layers' group nor 'layer_names' attribute: not a Keras weights file "
                 f"(top-level entries {sorted(h5.keys())})")
    finally:
        h5.close()

    for layer, arrays, where in loaded:
        expected = layer.get_weights()
        names = [w.name for w in layer.weights]
        if len(arrays) != len(expected):
            raise ShapeError(f"{_WHERE}: {type(layer).__name__} {layer.name!r} has "
                             f"{len(expected)} weights {names} but '{where}' holds "
                             f"{len(arrays)} arrays {[a.shape for a in arrays]}")
        for name, array, current in zip(names, arrays, expected):
            if array.shape != current.shape:
                raise ShapeError(f"{_WHERE}: {type(layer).__name__} {layer.name!r} weight "
                                 f"{name!r} has shape {current.shape} but '{where}' holds "
                                 f"{array.shape}")
    for layer, arrays, _ in loaded:
        layer.set_weights(arrays)
    return [(layer.name, where) for layer, _, where in loaded]
