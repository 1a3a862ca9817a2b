"""Keras weight import.

These tests write the files themselves with h5py, to reach the corners real Keras files do
not (tests/interop/test_keras_files.py loads files written by real Keras). The layout follows Keras 3's ``saving_lib`` (``H5IOStore``): ``layers/<snake_case class
name>[_<counter>]/vars/<index>`` with one counter per class in Keras's layer order, an empty
``vars`` group for layers without weights, a top-level ``vars`` group for the model and an
``optimizer`` group; ``.keras`` archives hold that file as their ``model.weights.h5`` member
next to ``config.json`` and ``metadata.json``. The legacy Keras 2 layout (``layer_names`` /
``weight_names`` attributes) is written as Keras 2's ``save_weights`` did. The paths below
are written out by hand, independently of the loader's own naming code.
"""
import io
import json
import zipfile

import numpy as np
import pytest

import convkit as ck
from convkit.errors import FileFormatError, ShapeError
from convkit.io.keras_config import keras_model_config
from convkit.io.keras_import import keras_path_names, load_keras_weights

h5py = pytest.importorskip("h5py")
L = ck.layers


def _write_h5(target, entries, groups=(), attrs=None):
    """``entries``: {"layers/conv2d/vars/0": array, ...}; ``groups``: empty groups."""
    with h5py.File(target, "w") as f:
        for name in groups:
            f.require_group(name)
        for name, value in entries.items():
            f.create_dataset(name, data=value)
        for key, value in (attrs or {}).items():
            f.attrs[key] = value


def _mnist():
    return ck.Sequential([L.Input((28, 28, 1)), L.Conv2D(32, 3, activation="relu"),
                          L.MaxPooling2D(2), L.Conv2D(64, 3, activation="relu"),
                          L.MaxPooling2D(2), L.Flatten(), L.Dropout(0.5),
                          L.Dense(10, activation="softmax")])


def _mnist_arrays(rng):
    return {"layers/conv2d/vars/0": rng.normal(0, 0.3, (3, 3, 1, 32)).astype(np.float32),
            "layers/conv2d/vars/1": rng.normal(0, 0.1, 32).astype(np.float32),
            "layers/conv2d_1/vars/0": rng.normal(0, 0.1, (3, 3, 32, 64)).astype(np.float32),
            "layers/conv2d_1/vars/1": rng.normal(0, 0.1, 64).astype(np.float32),
            "layers/dense/vars/0": rng.normal(0, 0.05, (1600, 10)).astype(np.float32),
            "layers/dense/vars/1": rng.normal(0, 0.1, 10).astype(np.float32),
            "optimizer/vars/0": np.array(12, dtype=np.int64),
            "optimizer/vars/1": np.zeros((3, 3, 1, 32), np.float32)}


_MNIST_EMPTY = ["vars", "layers/max_pooling2d/vars", "layers/max_pooling2d_1/vars",
                "layers/flatten/vars", "layers/dropout/vars"]


def _check_mnist_loaded(model, arrays):
    conv, conv1, dense = model.layers[0], model.layers[2], model.layers[6]
    for layer, name in ((conv, "conv2d"), (conv1, "conv2d_1"), (dense, "dense")):
        kernel, bias = layer.get_weights()
        np.testing.assert_array_equal(kernel, arrays[f"layers/{name}/vars/0"])
        np.testing.assert_array_equal(bias, arrays[f"layers/{name}/vars/1"])


def test_weights_h5_sequential(tmp_path, rng):
    arrays = _mnist_arrays(rng)
    path = tmp_path / "mnist.weights.h5"
    _write_h5(path, arrays, _MNIST_EMPTY)
    model = _mnist()
    loaded = load_keras_weights(model, path)
    assert loaded == [(model.layers[0].name, "layers/conv2d/vars"),
                      (model.layers[2].name, "layers/conv2d_1/vars"),
                      (model.layers[6].name, "layers/dense/vars")]
    _check_mnist_loaded(model, arrays)
    # the kernels are used as stored (HWIO, no transpose): check one output by hand
    x = rng.random((1, 28, 28, 1), dtype=np.float32)
    k, b = arrays["layers/conv2d/vars/0"], arrays["layers/conv2d/vars/1"]
    first = np.maximum((x[0, :3, :3, 0, None] * k[:, :, 0, :]).sum((0, 1)) + b, 0)
    np.testing.assert_allclose(model.layers[0](x)[0, 0, 0], first, rtol=1e-5, atol=1e-6)


def test_keras_zip_archive(tmp_path, rng):
    arrays = _mnist_arrays(rng)
    buffer = io.BytesIO()
    _write_h5(buffer, arrays, _MNIST_EMPTY)
    path = tmp_path / "mnist.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.5.0"}))
        archive.writestr("config.json", json.dumps(keras_model_config(_mnist())))
        archive.writestr("model.weights.h5", buffer.getvalue())
    model = _mnist()
    load_keras_weights(model, path)
    _check_mnist_loaded(model, arrays)


def test_depthwise_and_batch_norm_vars_in_order(tmp_path, rng):
    model = ck.Sequential([L.Input((6, 6, 3)), L.DepthwiseConv2D(3, depth_multiplier=2),
                           L.BatchNormalization(), L.ReLU(), L.Conv2D(4, 1, use_bias=False),
                           L.BatchNormalization(center=False)])
    arrays = {"layers/depthwise_conv2d/vars/0": rng.normal(size=(3, 3, 3, 2)),
              "layers/depthwise_conv2d/vars/1": rng.normal(size=6),
              "layers/conv2d/vars/0": rng.normal(size=(1, 1, 6, 4))}
    for i in range(4):
        arrays[f"layers/batch_normalization/vars/{i}"] = rng.uniform(0.5, 1.5, 6)
    for i in range(3):
        arrays[f"layers/batch_normalization_1/vars/{i}"] = rng.uniform(0.5, 1.5, 4)
    path = tmp_path / "dw.weights.h5"
    _write_h5(path, {k: v.astype(np.float32) for k, v in arrays.items()},
              ["layers/re_lu/vars"])
    load_keras_weights(model, path)
    np.testing.assert_array_equal(model.layers[0].get_weights()[0],
                                  arrays["layers/depthwise_conv2d/vars/0"].astype(np.float32))
    gamma, beta, mean, var = model.layers[1].get_weights()
    np.testing.assert_array_equal(var, arrays["layers/batch_normalization/vars/3"]
                                  .astype(np.float32))
    np.testing.assert_array_equal(model.layers[4].get_weights()[2],      # moving_variance
                                  arrays["layers/batch_normalization_1/vars/2"]
                                  .astype(np.float32))


def test_more_than_ten_vars_sorted_numerically(tmp_path, rng):
    """vars/10 must come after vars/9, though HDF5 lists names alphabetically."""
    model = ck.Sequential([L.Input((4,))] + [L.Dense(2, use_bias=False) for _ in range(11)])
    model_in = 4
    arrays = {}
    for i in range(11):
        name = "dense" if i == 0 else f"dense_{i}"
        arrays[f"layers/{name}/vars/0"] = np.full((model_in if i == 0 else 2, 2), float(i),
                                                  np.float32)
    _write_h5(tmp_path / "many.weights.h5", arrays)
    load_keras_weights(model, tmp_path / "many.weights.h5")
    assert [float(layer.get_weights()[0][0, 0]) for layer in model.layers] == \
        [float(i) for i in range(11)]


def test_functional_order_follows_keras(tmp_path, rng):
    """Keras orders a functional model's layers by depth from the outputs (deepest first),
    then by the order a walk back from the outputs meets them. Here: main_b (depth 2),
    then shortcut and main_c (depth 1, shortcut met first via Add's first input)."""
    inputs = L.Input((6, 6, 3))
    main_b = L.Conv2D(5, 3, padding="same", name="main_b")
    shortcut = L.Conv2D(4, 1, name="shortcut")
    main_c = L.Conv2D(4, 3, padding="same", name="main_c")
    x = L.Add()([shortcut(inputs), main_c(main_b(inputs))])
    model = ck.Model(inputs, L.Dense(2, name="head")(L.GlobalAveragePooling2D()(x)))
    names = {layer.name: name for layer, name in keras_path_names(model)}
    assert (names["main_b"], names["shortcut"], names["main_c"]) == \
        ("conv2d", "conv2d_1", "conv2d_2")
    arrays = {"layers/conv2d/vars/0": rng.normal(size=(3, 3, 3, 5)),
              "layers/conv2d/vars/1": rng.normal(size=5),
              "layers/conv2d_1/vars/0": rng.normal(size=(1, 1, 3, 4)),
              "layers/conv2d_1/vars/1": rng.normal(size=4),
              "layers/conv2d_2/vars/0": rng.normal(size=(3, 3, 5, 4)),
              "layers/conv2d_2/vars/1": rng.normal(size=4),
              "layers/dense/vars/0": rng.normal(size=(4, 2)),
              "layers/dense/vars/1": rng.normal(size=2)}
    _write_h5(tmp_path / "res.weights.h5", arrays,
              ["layers/input_layer/vars", "layers/add/vars",
               "layers/global_average_pooling2d/vars"])
    load_keras_weights(model, tmp_path / "res.weights.h5")
    np.testing.assert_allclose(model.get_layer("shortcut").get_weights()[0],
                               arrays["layers/conv2d_1/vars/0"], rtol=1e-6)


def test_keras_213_checkpoint_dependencies(tmp_path, rng):
    model = ck.Sequential([L.Input((3,)), L.Dense(2)])
    kernel = rng.normal(size=(3, 2)).astype(np.float32)
    _write_h5(tmp_path / "old.weights.h5",
              {"_layer_checkpoint_dependencies/dense/vars/0": kernel,
               "_layer_checkpoint_dependencies/dense/vars/1": np.ones(2, np.float32)})
    load_keras_weights(model, tmp_path / "old.weights.h5")
    np.testing.assert_array_equal(model.layers[0].get_weights()[0], kernel)


def test_legacy_keras2_h5(tmp_path, rng):
    model = ck.Sequential([L.Input((5, 5, 2)), L.Conv2D(3, 3), L.Flatten(), L.Dense(2)])
    kernel = rng.normal(size=(3, 3, 2, 3)).astype(np.float32)
    dense = rng.normal(size=(27, 2)).astype(np.float32)
    path = tmp_path / "legacy.h5"
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights")          # a full-model Keras 2 .h5 file
        root.attrs["layer_names"] = [b"input_1", b"my_conv", b"flatten", b"my_dense"]
        for name in ("input_1", "flatten"):
            root.create_group(name).attrs["weight_names"] = np.array([], dtype="S1")
        conv = root.create_group("my_conv")
        conv.attrs["weight_names"] = [b"my_conv/kernel:0", b"my_conv/bias:0"]
        conv["my_conv/kernel:0"] = kernel
        conv["my_conv/bias:0"] = np.arange(3, dtype=np.float32)
        head = root.create_group("my_dense")
        head.attrs["weight_names0"] = [b"my_dense/kernel:0"]     # chunked attribute
        head.attrs["weight_names1"] = [b"my_dense/bias:0"]
        head["my_dense/kernel:0"] = dense
        head["my_dense/bias:0"] = np.ones(2, np.float32)
    loaded = load_keras_weights(model, path)
    assert [where for _, where in loaded] == ["my_conv", "my_dense"]
    np.testing.assert_array_equal(model.layers[0].get_weights()[0], kernel)
    np.testing.assert_array_equal(model.layers[2].get_weights()[0], dense)


def test_architecture_mismatches_name_layer_and_path(tmp_path, rng):
    arrays = _mnist_arrays(rng)
    arrays["layers/dense/vars/0"] = np.zeros((1601, 10), np.float32)
    _write_h5(tmp_path / "bad.weights.h5", arrays)
    model = _mnist()
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ShapeError, match=r"Dense 'dense.*' weight 'kernel' has shape "
                                         r"\(1600, 10\) but 'layers/dense/vars' holds "
                                         r"\(1601, 10\)"):
        load_keras_weights(model, tmp_path / "bad.weights.h5")
    for a, b in zip(before, model.get_weights()):            # nothing was assigned
        np.testing.assert_array_equal(a, b)

    small = ck.Sequential([L.Input((28, 28, 1)), L.Conv2D(32, 3), L.Flatten(),
                           L.Dense(10)])
    with pytest.raises(ShapeError, match="no layer for.*conv2d_1"):
        load_keras_weights(small, tmp_path / "bad.weights.h5")
    bigger = ck.Sequential([L.Input((4,)), L.Dense(3), L.BatchNormalization()])
    _write_h5(tmp_path / "d.weights.h5", {"layers/dense/vars/0": np.zeros((4, 3)),
                                          "layers/dense/vars/1": np.zeros(3)})
    with pytest.raises(ShapeError, match="'layers/batch_normalization/vars'"):
        load_keras_weights(bigger, tmp_path / "d.weights.h5")
    _write_h5(tmp_path / "e.weights.h5", {"layers/dense/vars/0": np.zeros((4, 3))})
    with pytest.raises(ShapeError, match=r"has 2 weights \['kernel', 'bias'\].*holds 1"):
        load_keras_weights(ck.Sequential([L.Input((4,)), L.Dense(3)]),
                           tmp_path / "e.weights.h5")


def test_foreign_and_corrupt_files(tmp_path, rng):
    model = _mnist()
    text = tmp_path / "notes.weights.h5"
    text.write_text("hello")
    with pytest.raises(FileFormatError, match="neither a Keras file"):
        load_keras_weights(model, text)

    good = tmp_path / "good.weights.h5"
    _write_h5(good, _mnist_arrays(rng), _MNIST_EMPTY)
    truncated = tmp_path / "cut.weights.h5"
    truncated.write_bytes(good.read_bytes()[:3000])
    with pytest.raises(FileFormatError, match="corrupt or truncated"):
        load_keras_weights(model, truncated)

    foreign = tmp_path / "other.h5"
    _write_h5(foreign, {"images": np.zeros((2, 2))})
    with pytest.raises(FileFormatError, match="not a Keras weights or model file"):
        load_keras_weights(model, foreign)

    for members, message in (({"a.txt": b"x"}, "no config.json"),
                             ({"config.json": b"{}"}, "no model.weights.h5"),
                             ({"config.json": b"{}", "model.weights.npz": b"PK"}, "pickle"),
                             ({"convkit.json": b"{}"}, "convkit archive"),
                             ({"config.json": b"{}", "model.weights.h5": b"not hdf5"},
                              "not an HDF5 file")):
        path = tmp_path / "x.keras"
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in members.items():
                archive.writestr(name, data)
        with pytest.raises(FileFormatError, match=message):
            load_keras_weights(model, path)

    broken_zip = tmp_path / "broken.keras"
    broken_zip.write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    with pytest.raises(FileFormatError, match="zip is corrupt"):
        load_keras_weights(model, broken_zip)
    with pytest.raises(FileNotFoundError):
        load_keras_weights(model, tmp_path / "missing.weights.h5")


def _keras2_config():
    """A functional model's config as tf.keras 2 wrote it: node lists ``[[name, 0, 0, {}]]``,
    ``batch_input_shape``, plain dtype strings, initializers without ``module``."""
    glorot = {"class_name": "GlorotUniform", "config": {"seed": None}}
    zeros = {"class_name": "Zeros", "config": {}}

    def conv(name, source, activation):
        return {"class_name": "Conv2D", "name": name, "inbound_nodes": [[[source, 0, 0, {}]]],
                "config": {"name": name, "trainable": True, "dtype": "float32", "filters": 2,
                           "kernel_size": [3, 3], "strides": [1, 1], "padding": "same",
                           "data_format": "channels_last", "dilation_rate": [1, 1],
                           "groups": 1, "activation": activation, "use_bias": True,
                           "kernel_initializer": glorot, "bias_initializer": zeros,
                           "kernel_regularizer": None, "bias_regularizer": None,
                           "activity_regularizer": None, "kernel_constraint": None,
                           "bias_constraint": None}}

    return {"class_name": "Functional", "config": {"name": "model", "layers": [
        {"class_name": "InputLayer", "name": "input_1", "inbound_nodes": [],
         "config": {"batch_input_shape": [None, 5, 5, 1], "dtype": "float32",
                    "sparse": False, "ragged": False, "name": "input_1"}},
        conv("a", "input_1", "linear"), conv("b", "input_1", "relu"), conv("c", "b", "linear"),
        {"class_name": "Add", "name": "add", "config": {"name": "add", "trainable": True,
                                                        "dtype": "float32"},
         "inbound_nodes": [[["a", 0, 0, {}], ["c", 0, 0, {}]]]}],
        "input_layers": [["input_1", 0, 0]], "output_layers": [["add", 0, 0]]}}


def test_keras2_functional_h5_model(tmp_path, rng):
    """Keras 2's config dialect and weight names ("b/kernel:0"), the deeper branch's
    convolution ("b") listed first as Keras orders it; tf.keras is not installed here, so
    the file is written by hand after Keras 2's legacy saver."""
    arrays = {name: (rng.normal(size=(3, 3, shape, 2)).astype(np.float32),
                     rng.normal(size=2).astype(np.float32))
              for name, shape in (("b", 1), ("a", 1), ("c", 2))}
    path = tmp_path / "keras2.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(_keras2_config())
        f.attrs["training_config"] = json.dumps({
            "loss": "mse", "metrics": ["mae"], "loss_weights": None,
            "optimizer_config": {"class_name": "Adam", "config": {
                "name": "Adam", "learning_rate": 0.01, "decay": 0.0, "beta_1": 0.9,
                "beta_2": 0.999, "epsilon": 1e-07, "amsgrad": False,
                "is_legacy_optimizer": False, "jit_compile": False}}})
        root = f.create_group("model_weights")
        root.attrs["layer_names"] = [b"input_1", b"b", b"a", b"c", b"add"]
        for name in ("input_1", "add"):
            root.create_group(name).attrs["weight_names"] = np.array([], dtype="S1")
        for name, (kernel, bias) in arrays.items():
            group = root.create_group(name)
            group.attrs["weight_names"] = [f"{name}/kernel:0".encode(),
                                           f"{name}/bias:0".encode()]
            group[f"{name}/kernel:0"], group[f"{name}/bias:0"] = kernel, bias
    model = ck.load_model(path)
    for name, (kernel, bias) in arrays.items():
        np.testing.assert_array_equal(model.get_layer(name).get_weights()[0], kernel)
    assert type(model.optimizer).__name__ == "Adam" and model.optimizer.learning_rate == 0.01
    x = rng.normal(size=(2, 5, 5, 1)).astype(np.float32)
    reference = ck.Model.from_config(model.get_config())
    reference.set_weights(model.get_weights())
    np.testing.assert_allclose(model.predict(x, verbose=0), reference.predict(x, verbose=0))
    hand = ck.layers
    inputs = hand.Input((5, 5, 1))
    a = hand.Conv2D(2, 3, padding="same")(inputs)
    c = hand.Conv2D(2, 3, padding="same")(hand.Conv2D(2, 3, padding="same",
                                                      activation="relu")(inputs))
    other = ck.Model(inputs, hand.Add()([a, c]))
    other.load_weights(path)                   # by Keras's order: b, a, c
    np.testing.assert_allclose(other.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6)
