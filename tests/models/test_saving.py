"""Saving without pickle: round trips, weights only, resuming training, bad files."""
import json
import zipfile

import numpy as np
import pytest

import convkit as ck
from convkit.errors import ConvkitError, FileFormatError, ShapeError

from ._nets import L, residual_net, tiny_cnn, toy_data


def _trained(tmp_path=None, epochs=2, seed=1):
    ck.set_seed(seed)
    model = tiny_cnn(dropout=0.25)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    x, y = toy_data(n=12)
    model.fit(x, y, batch_size=5, epochs=epochs, verbose=0)
    return model, x, y


def test_save_and_load_model_round_trip(tmp_path):
    model, x, y = _trained()
    path = tmp_path / "net.convkit"
    model.save(path)
    loaded = ck.load_model(path)
    assert type(loaded) is ck.Sequential
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.get_config() == model.get_config()
    assert loaded.get_compile_config() == model.get_compile_config()
    assert loaded.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)
    assert loaded.optimizer.iterations == model.optimizer.iterations == 6
    # the file is a zip with JSON metadata and .npy arrays, no pickles
    with zipfile.ZipFile(path) as archive:
        meta = json.loads(archive.read("convkit.json"))
        assert all(name.endswith(".npy") or name == "convkit.json"
                   for name in archive.namelist())
    assert meta["kind"] == "model" and meta["convkit_version"] == ck.__version__
    names = [entry["name"] for entry in meta["manifest"]]
    conv = model.layers[0].name
    assert names[:2] == [f"{conv}/kernel", f"{conv}/bias"]
    assert any(name.startswith("optimizer/") for name in names)


def test_functional_model_round_trip(tmp_path, rng):
    ck.set_seed(3)
    model = residual_net()
    x = rng.random((4, 6, 6, 2)).astype(np.float32)
    model.save(tmp_path / "res.anything")              # any extension
    loaded = ck.models.load_model(tmp_path / "res.anything")
    assert type(loaded) is ck.Model and loaded.get_compile_config() is None
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_weights_only_round_trip_and_checks(tmp_path):
    model, x, _ = _trained()
    path = tmp_path / "w.convkit"
    model.save_weights(path)
    ck.set_seed(99)
    fresh = tiny_cnn(dropout=0.25)
    for a, b in zip(fresh.layers, model.layers):
        a.name = b.name
    assert not np.array_equal(fresh.predict(x), model.predict(x))
    fresh.load_weights(path)
    np.testing.assert_array_equal(fresh.predict(x), model.predict(x))
    with pytest.raises(FileFormatError, match="weights only"):
        ck.load_model(path)
    # a different architecture is refused, naming what differs
    other = ck.Sequential([L.Input((8, 8, 1)), L.Conv2D(5, 3, padding="same",
                                                        name=model.layers[0].name)])
    with pytest.raises(ShapeError,
                       match=r"kernel has shape \(3, 3, 1, 4\) in the file but \(3, 3, 1, 5\)"):
        other.load_weights(path)
    # the same structure under other automatic names loads by position, as in Keras 3
    renamed = tiny_cnn()
    renamed.load_weights(path)
    np.testing.assert_array_equal(renamed.predict(x), model.predict(x))
    # other names and another structure: refused, naming what is missing
    wider = tiny_cnn(classes=4)
    with pytest.raises(ShapeError, match="missing from the file"):
        wider.load_weights(path)


def test_resume_from_checkpoint_equals_uninterrupted_training(tmp_path):
    x, y = toy_data(n=12)
    straight, _, _ = _trained(epochs=4)
    ck.set_seed(1)
    first = tiny_cnn(dropout=0.25)
    first.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    h1 = first.fit(x, y, batch_size=5, epochs=2, verbose=0)
    first.save(tmp_path / "ckpt.convkit")
    ck.set_seed(12345)                                  # the global seed must not matter
    resumed = ck.load_model(tmp_path / "ckpt.convkit")
    h2 = resumed.fit(x, y, batch_size=5, epochs=4, initial_epoch=2, verbose=0)
    for a, b in zip(resumed.get_weights(), straight.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert h1.history["loss"] + h2.history["loss"] == straight.history.history["loss"]


def test_corrupted_and_truncated_files_are_rejected(tmp_path):
    model, _, _ = _trained(epochs=1)
    path = tmp_path / "m.convkit"
    model.save(path)
    data = path.read_bytes()
    (tmp_path / "truncated.convkit").write_bytes(data[: len(data) // 2])
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0xFF
    (tmp_path / "flipped.convkit").write_bytes(bytes(flipped))
    (tmp_path / "text.convkit").write_text("not a model")
    (tmp_path / "empty.convkit").write_bytes(b"")
    for name in ("truncated", "flipped", "text", "empty"):
        with pytest.raises(FileFormatError):
            ck.load_model(tmp_path / f"{name}.convkit")
        with pytest.raises(FileFormatError):
            model.load_weights(tmp_path / f"{name}.convkit")


def test_foreign_archive_kind_is_rejected(tmp_path):
    from convkit.io.archive import write_archive
    write_archive(tmp_path / "other.convkit", {"kind": "dataset"}, {"x": np.zeros(3)})
    with pytest.raises(FileFormatError, match="not a saved model"):
        ck.load_model(tmp_path / "other.convkit")


def test_saving_an_unbuilt_model_is_refused(tmp_path):
    with pytest.raises(ConvkitError, match="not built"):
        ck.Sequential([L.Dense(2)]).save(tmp_path / "x.convkit")


def test_a_nested_model_with_two_convolutions_saves_and_loads(tmp_path):
    # the nested model's weights are named under it (base/conv2d/kernel, base/conv2d_1/kernel):
    # "base/kernel" twice used to stop the save
    L = ck.layers
    ck.set_seed(4)
    base = ck.Sequential([L.Input((8, 8, 1)), L.Conv2D(4, 3, activation="relu"),
                          L.Conv2D(4, 3), L.GlobalAveragePooling2D()], name="base")
    inputs = L.Input((8, 8, 1))
    model = ck.Model(inputs, L.Dense(3)(base(inputs)))
    model.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(0).random((4, 8, 8, 1)).astype("float32")
    model.fit(x, np.ones((4, 3)), epochs=2, verbose=0)
    path = tmp_path / "nested.convkit"
    model.save(path)
    same = ck.load_model(path)
    np.testing.assert_array_equal(same.predict(x), model.predict(x))
    for (name, _), (same_name, _) in zip(model.weight_paths(), same.weight_paths()):
        assert name == same_name and name.startswith(("base/conv2d", "dense"))
    model.fit(x, np.ones((4, 3)), epochs=1, verbose=0)      # optimizer state came along
    same.fit(x, np.ones((4, 3)), epochs=1, verbose=0)
    np.testing.assert_allclose(same.predict(x), model.predict(x), rtol=1e-6)
