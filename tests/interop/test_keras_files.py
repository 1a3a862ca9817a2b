"""Files written by real Keras 3.15.1 (tests/interop/make_keras_fixtures.py) loaded by convkit:
every fixture model in all three formats predicts what Keras predicted, within 1e-5 of the
largest output; weights land by Keras's structure, never by convkit's layer order; a model
whose architecture differs from the file's is an error (strict) or a warning."""
import pathlib
import shutil
import warnings

import numpy as np
import pytest

import convkit as ck
from convkit.errors import ConvkitError, FileFormatError, ShapeError

h5py = pytest.importorskip("h5py")
L = ck.layers
FIXTURES = pathlib.Path(__file__).resolve().parent / "keras_fixtures"
# every model make_keras_fixtures.py wrote (a new builder there is tested here unchanged)
NAMES = sorted(path.name[:-len("_y.npy")] for path in FIXTURES.glob("*_y.npy"))


def expected(name):
    return np.load(FIXTURES / f"{name}_x.npy"), np.load(FIXTURES / f"{name}_y.npy")


def assert_close(actual, reference):
    scale = float(np.abs(reference).max())
    np.testing.assert_allclose(actual, reference, rtol=0, atol=1e-5 * scale)


def scramble(model, seed=0):
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(size=w.shape).astype(w.dtype) for w in model.get_weights()])


def test_every_fixture_has_its_three_files():
    assert {"mnist_convnet", "bn_depthwise", "add_concat", "branched",
            "other_layers"} <= set(NAMES)
    for name in NAMES:
        for suffix in (".keras", ".h5", ".weights.h5", "_x.npy"):
            assert (FIXTURES / f"{name}{suffix}").is_file()


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
@pytest.mark.parametrize("name", NAMES)
def test_whole_model_predicts_as_keras(name, suffix):
    x, y = expected(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")               # the compile settings restore cleanly
        model = ck.load_model(FIXTURES / f"{name}{suffix}")
    assert_close(model.predict(x, verbose=0), y)


@pytest.mark.parametrize("name", NAMES)
def test_weights_file_into_model_from_config(name):
    x, y = expected(name)
    model = ck.load_model(FIXTURES / f"{name}.keras", compile=False)
    for source in (f"{name}.weights.h5", f"{name}.h5", f"{name}.keras"):
        scramble(model)
        model.load_weights(FIXTURES / source)
        assert_close(model.predict(x, verbose=0), y)


def branched_by_hand(order="shallow first", relu=True):
    """The branched fixture built in convkit, the shallow branch's convolution made first
    (convkit's own layer order then differs from Keras's)."""
    inputs = L.Input((7, 7, 2))
    if order == "shallow first":
        shallow = L.Conv2D(4, 3, padding="same")(inputs)
        deep = L.Conv2D(4, 3, padding="same")(inputs)
    else:
        deep = L.Conv2D(4, 3, padding="same")(inputs)
        shallow = L.Conv2D(4, 3, padding="same")(inputs)
    deep = L.Conv2D(4, 3, padding="same", activation="relu" if relu else None)(deep)
    x = L.GlobalMaxPooling2D()(L.Add()([shallow, deep]))
    return ck.Model(inputs, L.Dense(3, activation="softmax")(x))


@pytest.mark.parametrize("suffix", [".weights.h5", ".h5", ".keras"])
def test_branched_graph_is_not_swapped(suffix):
    """Legacy .h5 lists the layers in Keras's order; pairing them with convkit's own order
    put the deeper branch's weights into the shallow convolution (off by 78.7)."""
    from convkit.io.onnx_export import keras_layer_order
    x, y = expected("branched")
    model = branched_by_hand()
    assert keras_layer_order(model) != model.layers      # the case that used to swap
    model.load_weights(FIXTURES / f"branched{suffix}")
    assert_close(model.predict(x, verbose=0), y)


def test_forgotten_activation_is_an_error_or_a_warning():
    model = branched_by_hand(relu=False)
    with pytest.raises(ShapeError, match=r"activation is 'relu' in the file but 'linear'"):
        model.load_weights(FIXTURES / "branched.keras")
    with pytest.raises(ShapeError, match="activation"):
        model.load_weights(FIXTURES / "branched.h5")
    with pytest.warns(UserWarning, match="activation"):
        model.load_weights(FIXTURES / "branched.keras", strict=False)


def test_wrong_architecture_names_the_first_misfit():
    model = ck.Sequential([L.Input((28, 28, 1)), L.Conv2D(32, 3, activation="relu"),
                           L.MaxPooling2D(2), L.Conv2D(32, 3, activation="relu"),
                           L.MaxPooling2D(2), L.Flatten(), L.Dropout(0.5),
                           L.Dense(10, activation="softmax")])
    with pytest.raises(ShapeError, match=r"filters is 64 in the file but 32"):
        model.load_weights(FIXTURES / "mnist_convnet.keras")
    # a weights-only file has no config: the shapes catch it, naming layer and weight
    with pytest.raises(ShapeError, match=r"Conv2D '\w+' weight 'kernel' has shape "
                                         r"\(3, 3, 32, 32\).*\(3, 3, 32, 64\)"):
        model.load_weights(FIXTURES / "mnist_convnet.weights.h5")
    with pytest.raises(ShapeError, match="kernel"), pytest.warns(UserWarning, match="filters"):
        model.load_weights(FIXTURES / "mnist_convnet.h5", strict=False)


def test_compile_settings_are_restored():
    model = ck.load_model(FIXTURES / "mnist_convnet.keras")
    assert type(model.optimizer).__name__ == "Adam"
    assert type(model.loss).__name__ == "SparseCategoricalCrossentropy"
    assert [m.name for m in model.compiled_metrics] == ["accuracy"]
    model = ck.load_model(FIXTURES / "bn_depthwise.h5")          # legacy training_config
    assert type(model.optimizer).__name__ == "SGD"
    assert model.optimizer.momentum == pytest.approx(0.9) and model.optimizer.nesterov
    assert not ck.load_model(FIXTURES / "branched.keras").compiled
    assert not ck.load_model(FIXTURES / "mnist_convnet.keras", compile=False).compiled


def test_unknown_optimizer_warns_and_leaves_the_model_uncompiled(tmp_path):
    import json
    import zipfile
    source = zipfile.ZipFile(FIXTURES / "mnist_convnet.keras")
    config = json.loads(source.read("config.json"))
    config["compile_config"]["optimizer"]["class_name"] = "Lion"
    path = tmp_path / "lion.keras"
    with zipfile.ZipFile(path, "w") as archive:
        for name in source.namelist():
            data = json.dumps(config) if name == "config.json" else source.read(name)
            archive.writestr(name, data)
    with pytest.warns(UserWarning, match="Lion.*uncompiled"):
        model = ck.load_model(path)
    assert not model.compiled
    x, y = expected("mnist_convnet")
    assert_close(model.predict(x, verbose=0), y)


def test_loaded_model_trains_and_saves_as_convkit(tmp_path):
    model = ck.load_model(FIXTURES / "mnist_convnet.keras")
    x, _ = expected("mnist_convnet")
    model.fit(x, np.array([3, 7]), epochs=1, verbose=0)
    model.save(tmp_path / "m.convkit")
    again = ck.load_model(tmp_path / "m.convkit")
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))


def test_weights_only_file_is_not_a_model():
    with pytest.raises(FileFormatError, match="weights only.*load_weights"):
        ck.load_model(FIXTURES / "branched.weights.h5")


def test_extension_does_not_matter_for_reading(tmp_path):
    x, y = expected("add_concat")
    for source, target in (("add_concat.keras", "a.bin"), ("add_concat.h5", "b.convkit")):
        shutil.copy(FIXTURES / source, tmp_path / target)
        assert_close(ck.load_model(tmp_path / target).predict(x, verbose=0), y)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_cli_summary_and_predict_take_keras_files(suffix, capsys, tmp_path):
    from convkit.cli import main
    path = str(FIXTURES / f"mnist_convnet{suffix}")
    assert main(["summary", path]) == 0
    out = capsys.readouterr().out
    assert "34,826" in out and "conv2d_1 (Conv2D)" in out
    image = tmp_path / "digit.png"
    from PIL import Image
    Image.fromarray(np.full((28, 28), 200, np.uint8)).save(image)
    assert main(["predict", path, str(image), "--top", "2"]) == 0
    assert "1. class" in capsys.readouterr().out


def test_layers_keep_the_files_names():
    import json
    import zipfile
    config = json.loads(zipfile.ZipFile(FIXTURES / "branched.keras").read("config.json"))
    model = ck.load_model(FIXTURES / "branched.keras")
    assert sorted(layer.name for layer in model.layers) == \
        sorted(entry["config"]["name"] for entry in config["config"]["layers"])
    with pytest.raises(ConvkitError, match="custom_objects"):
        ck.load_model(FIXTURES / "branched.keras", custom_objects={"Conv2D": int})


def test_model_from_config_takes_keras_configs():
    import json
    import zipfile
    document = json.loads(zipfile.ZipFile(FIXTURES / "add_concat.keras").read("config.json"))
    x, y = expected("add_concat")
    for config, kind in ((document, "Sequential"), (document["config"], "Functional")):
        model = ck.models.model_from_config(config, kind)
        model.load_weights(FIXTURES / "add_concat.weights.h5")
        assert_close(model.predict(x, verbose=0), y)
