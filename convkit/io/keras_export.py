"""Write files Keras 3 opens: ``.keras`` archives, legacy ``.h5`` models, ``.weights.h5``.

The layouts are the ones :mod:`convkit.io.keras_import` reads (its docstring draws them):

* ``save_keras(model, "m.keras")``: a zip of ``metadata.json``, ``config.json`` (the
  architecture from :func:`convkit.io.keras_config.keras_model_config`, plus the
  ``compile_config`` when compiled) and ``model.weights.h5``, members stored uncompressed as
  Keras stores them;
* ``save_keras_h5(model, "m.h5")``: Keras's legacy HDF5 (``model_config`` and
  ``training_config`` attributes, a ``model_weights`` group with ``layer_names`` and
  ``weight_names``);
* ``save_keras_weights(model, "m.weights.h5")``: Keras 3's weights layout
  (``layers/<group>/vars/<i>``); ``save_legacy_weights(model, "m.h5")`` the legacy one.

``.keras`` and ``.weights.h5`` also carry the optimizer's state in Keras's layout
(:mod:`convkit.io.keras_optimizer`), so Keras continues training where convkit stopped; the
legacy ``.h5`` does not. Only the ``.convkit`` archive also keeps the random generators, for
a bit-identical resume.
Every file is written to a temporary file beside the target and moved over it
(:func:`convkit.io.archive.atomic_writer`): a crash never leaves half a file.

    >>> model.save("mnist.keras")            # -> keras.saving.load_model("mnist.keras")
"""
from __future__ import annotations

import io
import json
import time
import zipfile

import numpy as np

from ..errors import ConvkitError
from .archive import atomic_write_bytes, atomic_writer
from .keras_config import KERAS_VERSION, keras_compile_config, keras_model_config
from .keras_h5 import import_h5py
from .keras_import import keras_path_names
from .keras_optimizer import keras_optimizer_arrays

__all__ = ["save_keras", "save_keras_h5", "save_keras_weights", "save_legacy_weights"]

_BACKEND = "numpy"


def _require_built(model, where: str) -> None:
    if not model.built:
        raise ConvkitError(f"{where}: {type(model).__name__} {model.name!r} is not built yet; "
                           f"give it an input shape or run it on data first")


def _h5_bytes(write) -> bytes:
    """The bytes of an HDF5 file that ``write(h5)`` fills, built in memory."""
    h5py = import_h5py("save")
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        write(h5)
    return buffer.getvalue()


def _texts(values) -> np.ndarray:
    """A list of names as the fixed-length byte strings Keras's legacy writer stores."""
    return np.array([v.encode("utf-8") for v in values], dtype=bytes) if values else \
        np.zeros((0,), dtype="S1")


def _write_keras3_weights(h5, model) -> None:
    layers = h5.create_group("layers")
    for layer, group_name in keras_path_names(model):
        group = layers.create_group(group_name).create_group("vars")
        group.attrs["name"] = layer.name
        for index, weight in enumerate(layer.weights):
            group.create_dataset(str(index), data=weight.value)
    h5.create_group("vars").attrs["name"] = model.name
    optimizer = keras_optimizer_arrays(model)
    if optimizer is not None:
        group = h5.create_group("optimizer").create_group("vars")
        group.attrs["name"] = model.optimizer.name
        for index, array in enumerate(optimizer):
            group.create_dataset(str(index), data=array)


def _write_legacy_weights(group, model) -> None:
    from .onnx_export import keras_layer_order
    order = keras_layer_order(model)
    group.attrs["backend"] = _BACKEND
    group.attrs["keras_version"] = KERAS_VERSION
    group.attrs["layer_names"] = _texts([layer.name for layer in order])
    for layer in order:
        layer_group = group.create_group(layer.name)
        names = [f"{layer.name}/{weight.name}" for weight in layer.weights]
        layer_group.attrs["weight_names"] = _texts(names)
        for name, weight in zip(names, layer.weights):
            layer_group.create_dataset(name, data=weight.value)
    group.create_group("top_level_model_weights").attrs["weight_names"] = _texts([])


def save_keras(model, path) -> None:
    """Write ``model`` as a Keras 3 ``.keras`` archive (see the module docstring)."""
    _require_built(model, "save")
    config = keras_model_config(model)
    compile_config = keras_compile_config(model)
    if compile_config is not None:
        config["compile_config"] = compile_config
    metadata = {"keras_version": KERAS_VERSION,
                "date_saved": time.strftime("%Y-%m-%d@%H:%M:%S")}
    weights = _h5_bytes(lambda h5: _write_keras3_weights(h5, model))
    with atomic_writer(path, "wb") as handle:
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED) as archive:
            archive.writestr("metadata.json", json.dumps(metadata))
            archive.writestr("config.json", json.dumps(config))
            archive.writestr("model.weights.h5", weights)


def save_keras_h5(model, path) -> None:
    """Write ``model`` as a legacy Keras HDF5 model file (see the module docstring)."""
    _require_built(model, "save")
    config = json.dumps(keras_model_config(model, legacy=True))
    compile_config = keras_compile_config(model)

    def write(h5):
        h5.attrs["backend"] = _BACKEND
        h5.attrs["keras_version"] = KERAS_VERSION
        h5.attrs["model_config"] = config
        if compile_config is not None:
            training = {key: value for key, value in compile_config.items()
                        if key != "optimizer"}
            training["optimizer_config"] = {"class_name": compile_config["optimizer"]
                                            ["class_name"],
                                            "config": compile_config["optimizer"]["config"]}
            h5.attrs["training_config"] = json.dumps(training)
        _write_legacy_weights(h5.create_group("model_weights"), model)

    atomic_write_bytes(path, _h5_bytes(write))


def save_keras_weights(model, path) -> None:
    """Write the weights in Keras 3's ``.weights.h5`` layout."""
    _require_built(model, "save_weights")
    atomic_write_bytes(path, _h5_bytes(lambda h5: _write_keras3_weights(h5, model)))


def save_legacy_weights(model, path) -> None:
    """Write the weights in the legacy layout (``layer_names`` at the top), which
    ``model.load_weights("w.h5")`` reads in Keras 2 and 3."""
    _require_built(model, "save_weights")
    atomic_write_bytes(path, _h5_bytes(lambda h5: _write_legacy_weights(h5, model)))
