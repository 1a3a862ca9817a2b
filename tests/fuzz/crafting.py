"""Seed files for the fuzzer and hand-crafted hostile files, each as bytes.

Everything here is written from the formats' descriptions with NumPy, ``zipfile`` and
``h5py`` alone (no Keras, no PyTorch), so building seeds costs milliseconds:

* :func:`convkit_model_bytes` - a small compiled, trained convkit model (``model.save``);
* :func:`safetensors_bytes` - a ``.safetensors`` file laid out as the ``safetensors`` package
  writes it (names sorted as text);
* :func:`keras3_weights_h5` / :func:`keras_zip` - Keras 3's ``.weights.h5`` layout and a
  ``.keras`` zip around it; :func:`legacy_h5` - the Keras 2 ``layer_names`` layout;
* :func:`h5_external_storage` / :func:`h5_external_link` - HDF5 files whose weights point
  at another file on the machine (a loader must refuse them).
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile

import numpy as np

import convkit as ck

L = ck.layers


def small_convnet(seed: int = 0):
    """A 1.4k-parameter convnet (8x8x1 -> 3 classes) with every kind of saved state."""
    ck.set_seed(seed)
    model = ck.Sequential([L.Input((8, 8, 1)), L.Conv2D(4, 3, activation="relu"),
                           L.BatchNormalization(), L.MaxPooling2D(2), L.Flatten(),
                           L.Dropout(0.25), L.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def small_data(n: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 8, 8, 1), dtype=np.float32), np.arange(n) % 3


def small_functional(seed: int = 0):
    ck.set_seed(seed)
    inputs = L.Input((6, 6, 2))
    a = L.Conv2D(2, 3, padding="same")(inputs)
    b = L.Add()([a, inputs])
    outputs = L.Dense(2)(L.Flatten()(b))
    model = ck.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss="mse")
    return model


def _saved(model, suffix=".convkit") -> bytes:
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "m" + suffix)
        model.save(path)
        with open(path, "rb") as handle:
            return handle.read()


def convkit_model_bytes() -> list[bytes]:
    """A trained Sequential model (optimizer state, rng states) and a functional one."""
    model = small_convnet()
    x, y = small_data()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    return [_saved(model), _saved(small_functional())]


# ------------------------------------------------------------------------------ safetensors
_ST_NAMES = {np.dtype("<f4"): "F32", np.dtype("<f8"): "F64", np.dtype("<f2"): "F16",
             np.dtype("<i8"): "I64", np.dtype("<i4"): "I32", np.dtype("u1"): "U8",
             np.dtype("bool"): "BOOL"}


def safetensors_bytes(tensors: dict, metadata: dict | None = None) -> bytes:
    """A ``.safetensors`` file: names sorted as text, data in that order, header padded
    with spaces to a multiple of 8 (as the reference writer does)."""
    header, chunks, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = dict(metadata)
    for name in sorted(tensors):
        array = np.asarray(tensors[name])
        array = array.astype(array.dtype.newbyteorder("<")) if array.dtype.byteorder == ">" \
            else array
        data = array.tobytes()
        header[name] = {"dtype": _ST_NAMES[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + b"".join(chunks)


def torch_style_state(model) -> dict:
    """The model's weights as a PyTorch ``state_dict`` of an ``nn.Sequential`` with the same
    layer positions (``"0.weight"``, ..., torch layouts), for models of Conv2D, BN, Dense."""
    state = {}
    for index, layer in enumerate(model.layers):
        kind = type(layer).__name__
        weights = layer.get_weights()
        if not weights:
            continue
        prefix = f"features.{index}"
        if kind == "Conv2D":
            state[f"{prefix}.weight"] = weights[0].transpose(3, 2, 0, 1)
            if len(weights) > 1:
                state[f"{prefix}.bias"] = weights[1]
        elif kind == "Dense":
            state[f"{prefix}.weight"] = weights[0].T
            if len(weights) > 1:
                state[f"{prefix}.bias"] = weights[1]
        elif kind == "BatchNormalization":
            for key, value in zip(("weight", "bias", "running_mean", "running_var"), weights):
                state[f"{prefix}.{key}"] = value
    return state


def torch_seed_model():
    """Twelve layers, so module indices reach two digits (``features.10``); a 1x1 image, so
    the Flatten needs no reordering between the two layouts."""
    ck.set_seed(3)
    return ck.Sequential([L.Input((1, 1, 2))]
                         + [L.Conv2D(2, 1) for _ in range(10)]
                         + [L.Flatten(), L.Dense(3)])


# ------------------------------------------------------------------------------ Keras HDF5
def _h5_bytes(fill) -> bytes:
    import h5py
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        fill(h5)
    return buffer.getvalue()


def keras3_weights_h5(model) -> bytes:
    """Keras 3's ``model.weights.h5`` for ``model`` (groups named by
    :func:`convkit.io.keras_import.keras_path_names`)."""
    from convkit.io.keras_import import keras_path_names

    def fill(h5):
        h5.create_group("vars")
        layers = h5.create_group("layers")
        for layer, name in keras_path_names(model):
            group = layers.create_group(name).create_group("vars")
            for index, value in enumerate(layer.get_weights()):
                group.create_dataset(str(index), data=value)
        h5.create_group("optimizer").create_group("vars")
    return _h5_bytes(fill)


def legacy_h5(model) -> bytes:
    """Keras 2's ``save_weights("w.h5")`` layout: ``layer_names`` and ``weight_names``."""
    def fill(h5):
        names = [layer.name for layer in model.layers]
        h5.attrs["layer_names"] = np.array([n.encode() for n in names])
        for layer in model.layers:
            group = h5.create_group(layer.name)
            weights = layer.get_weights()
            weight_names = [f"{layer.name}/w{i}:0".encode() for i in range(len(weights))]
            group.attrs["weight_names"] = np.array(weight_names, dtype="S")
            for weight_name, value in zip(weight_names, weights):
                group.create_dataset(weight_name.decode(), data=value)
    return _h5_bytes(fill)


def keras_zip(weights_h5: bytes, config: dict | None = None) -> bytes:
    """A ``.keras`` file: ``metadata.json``, ``config.json`` and ``model.weights.h5``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        archive.writestr("config.json", json.dumps(config or {"class_name": "Sequential"}))
        archive.writestr("model.weights.h5", weights_h5)
    return buffer.getvalue()


def keras_seed_model():
    ck.set_seed(5)
    return ck.Sequential([L.Input((6, 6, 1)), L.Conv2D(2, 3), L.Flatten(), L.Dense(2)])


def h5_external_storage(target: str, shape=(3, 3, 1, 2)) -> bytes:
    """A Keras 3 weights file whose first kernel's bytes live in ``target`` (HDF5 external
    raw storage): a loader that follows it reads another file of the machine."""
    def fill(h5):
        group = h5.create_group("layers").create_group("conv2d").create_group("vars")
        group.create_dataset("0", shape=shape, dtype="<f4",
                             external=[(os.fspath(target), 0, int(np.prod(shape)) * 4)])
        group.create_dataset("1", data=np.zeros(shape[-1], np.float32))
    return _h5_bytes(fill)


def h5_external_link(target: str, soft: bool = False) -> bytes:
    """A Keras 3 weights file whose ``layers/conv2d/vars`` group is an external link into
    ``target`` (or, with ``soft=True``, a soft link inside the file)."""
    import h5py

    def fill(h5):
        layers = h5.create_group("layers").create_group("conv2d")
        if soft:
            real = h5.create_group("elsewhere")
            real.create_dataset("0", data=np.ones((3, 3, 1, 2), np.float32))
            real.create_dataset("1", data=np.zeros(2, np.float32))
            layers["vars"] = h5py.SoftLink("/elsewhere")
        else:
            layers["vars"] = h5py.ExternalLink(os.fspath(target), "/layers/conv2d/vars")
    return _h5_bytes(fill)
