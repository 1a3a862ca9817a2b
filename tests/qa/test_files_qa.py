"""Files: CSV logs and PNGs written atomically, CSV logs readable by plot_history whatever
CSVLogger put in them, metadata read and updated without touching the arrays, and loading a
damaged or foreign file failing cleanly without changing anything."""
import os

import numpy as np
import pytest

import convkit as ck
from convkit.errors import ConvkitError, FileFormatError
from convkit.io import archive

L = ck.layers


def _tiny_model(seed=0):
    ck.set_seed(seed)
    model = ck.Sequential([L.Input((4,)), L.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def _data(n=12):
    rng = np.random.default_rng(0)
    return rng.random((n, 4)).astype(np.float32), np.arange(n) % 3


# ------------------------------------------------------------------ CSV logs
def test_csv_log_without_validation_plots(tmp_path):
    log = tmp_path / "log.csv"
    model = _tiny_model()
    x, y = _data()
    model.fit(x, y, epochs=3, verbose=0, callbacks=[ck.callbacks.CSVLogger(str(log))])
    lines = log.read_text().splitlines()
    assert lines[0] == "epoch,accuracy,loss,val_accuracy,val_loss"
    assert len(lines) == 4 and all(line.endswith(",NA,NA") for line in lines[1:])
    history = ck.viz.read_history(str(log))
    assert sorted(history) == ["accuracy", "loss"]
    np.testing.assert_allclose(history["loss"], model.history.history["loss"], rtol=1e-6)
    fig = ck.viz.plot_history(str(log), path=tmp_path / "curves.png")
    assert {ax.get_label() for ax in fig.axes} == {"loss", "accuracy"}
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_csv_log_with_a_missing_value_keeps_the_other_epochs(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("epoch,loss,val_loss\n0,0.5,NA\n1,0.4,0.3\n")
    history = ck.viz.read_history(str(log))
    assert history["loss"] == [0.5, 0.4]
    assert np.isnan(history["val_loss"][0]) and history["val_loss"][1] == 0.3
    log.write_text("epoch,loss\n0,abc\n")
    with pytest.raises(FileFormatError, match="line 2"):
        ck.viz.read_history(str(log))


def test_csv_logger_writes_atomically(tmp_path, monkeypatch):
    log = tmp_path / "log.csv"
    log.write_text("old log\n")
    x, y = _data()
    model = _tiny_model()
    logger = ck.callbacks.CSVLogger(str(log))

    class Boom(Exception):
        pass

    def fail_in_epoch_two(epoch, logs):
        if epoch == 1:
            raise Boom
    # until the first epoch ends the old file stays; after it, only complete logs are seen
    seen = []
    watcher = ck.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: seen.append(log.read_text()))
    model.fit(x, y, epochs=2, verbose=0, callbacks=[logger, watcher])
    assert seen[0] == "old log\n"
    assert seen[1].count("\n") == 2 and seen[1].startswith("epoch,")

    # a failing write (disk full, ...) leaves the previous complete file and no temporary
    before = log.read_text()
    real_writer = archive.atomic_writer

    def broken_writer(path, *args, **kwargs):
        raise OSError("no space left on device")
    monkeypatch.setattr(archive, "atomic_writer", broken_writer)
    with pytest.raises(OSError):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[ck.callbacks.CSVLogger(str(log))])
    monkeypatch.setattr(archive, "atomic_writer", real_writer)
    assert log.read_text() == before
    assert sorted(os.listdir(tmp_path)) == ["log.csv"]


def test_csv_logger_append_keeps_the_old_rows(tmp_path):
    log = tmp_path / "log.csv"
    x, y = _data()
    model = _tiny_model()
    model.fit(x, y, epochs=2, verbose=0, callbacks=[ck.callbacks.CSVLogger(str(log))])
    model.fit(x, y, epochs=3, initial_epoch=2, verbose=0,
              callbacks=[ck.callbacks.CSVLogger(str(log), append=True)])
    lines = log.read_text().splitlines()
    assert len(lines) == 4 and [line.split(",")[0] for line in lines] == ["epoch", "0", "1", "2"]


# ------------------------------------------------------------------ PNGs
def test_png_write_failure_keeps_the_old_picture(tmp_path, monkeypatch):
    from convkit.viz import _mpl
    path = tmp_path / "border.png"
    ck.viz.plot_border_effect(5, 3, path=path)
    good = path.read_bytes()

    def failing_png(fig):
        raise RuntimeError("renderer crashed")
    monkeypatch.setattr(_mpl, "png_bytes", failing_png)
    with pytest.raises(RuntimeError):
        ck.viz.plot_border_effect(6, 3, path=path)
    assert path.read_bytes() == good and os.listdir(tmp_path) == ["border.png"]


# ------------------------------------------------------------------ archive metadata
def test_read_meta_and_update_meta(tmp_path):
    path = tmp_path / "a.convkit"
    arrays = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(3)}
    archive.write_archive(path, {"kind": "weights", "note": 1}, arrays)
    assert archive.read_meta(path) == {"kind": "weights", "note": 1}
    archive.update_meta(path, {"class_names": ["cat", "dog"], "note": 2})
    meta, again = archive.read_archive(path)
    assert meta == {"kind": "weights", "note": 2, "class_names": ["cat", "dog"]}
    assert list(again) == ["w", "b"]
    for name in arrays:
        np.testing.assert_array_equal(again[name], arrays[name])
        assert again[name].dtype == arrays[name].dtype
    with pytest.raises(ConvkitError, match="reserved"):
        archive.update_meta(path, {"manifest": []})
    assert archive.read_meta(path)["note"] == 2


@pytest.mark.parametrize("content, fragment", [
    (b"", "empty"), (b"hello, not a zip", "not a zip"), (b"PK\x03\x04truncated", "truncated"),
])
def test_read_meta_rejects_what_read_archive_rejects(tmp_path, content, fragment):
    path = tmp_path / "bad.convkit"
    path.write_bytes(content)
    with pytest.raises(FileFormatError, match=fragment):
        archive.read_meta(path)
    with pytest.raises(FileFormatError, match=fragment):
        archive.read_archive(path)


# ------------------------------------------------------------------ loading loses nothing
@pytest.mark.parametrize("damage", ["truncate", "flip", "foreign", "text"])
def test_a_damaged_file_changes_nothing(tmp_path, damage):
    import zipfile
    x, y = _data()
    model = _tiny_model()
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "m.convkit"
    model.save(str(path))
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        # flip one byte inside the first weight array's .npy payload
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo("arrays/00000.npy")
        offset = info.header_offset + 30 + len(info.filename) + info.file_size - 3
        path.write_bytes(data[:offset] + bytes([data[offset] ^ 0xFF]) + data[offset + 1:])
    elif damage == "foreign":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("config.json", "{}")
            zf.writestr("model.weights.h5", b"\x89HDF")
    else:
        path.write_text("just text")
    damaged = path.read_bytes()
    weights = model.get_weights()
    state = {k: np.array(v) for k, v in model.optimizer.get_state().items()}
    with pytest.raises(FileFormatError) as info:
        model.load_weights(str(path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(FileFormatError):
        ck.load_model(str(path))
    for a, b in zip(model.get_weights(), weights):
        np.testing.assert_array_equal(a, b)
    for key, value in model.optimizer.get_state().items():
        np.testing.assert_array_equal(value, state[key])
    assert path.read_bytes() == damaged            # reading never rewrites the file
    assert os.listdir(tmp_path) == ["m.convkit"]


def test_a_pickled_npy_is_never_unpickled(tmp_path):
    """An archive whose array member is a pickle-bearing .npy is refused before anything is
    executed (a marker file would appear if the pickle ran)."""
    import io
    import pickle
    import zipfile
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.convkit"
    archive.write_archive(path, {"kind": "model"}, {"w": np.zeros(2)})
    buffer = io.BytesIO()
    np.save(buffer, np.array([Evil()], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(path) as zf:
        meta = zf.read("convkit.json")
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("arrays/00000.npy", buffer.getvalue())
        zf.writestr("convkit.json", meta)
    with pytest.raises(FileFormatError):
        ck.load_model(str(path))
    with pytest.raises(FileFormatError):
        archive.read_archive(path)
    assert not marker.exists()
    assert pickle  # imported only to build the hostile file


# ------------------------------------------------------------------ known gaps (models/)
def test_a_model_description_that_is_not_a_dict_is_a_file_format_error(tmp_path):
    path = tmp_path / "odd.convkit"
    archive.write_archive(path, {"kind": "model", "model_class": "Sequential",
                                 "model_config": "not a dict"}, {})
    with pytest.raises(FileFormatError):
        ck.load_model(str(path))


def test_optimizer_state_that_does_not_fit_the_weights_is_rejected(tmp_path):
    x, y = _data()
    model = _tiny_model()
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "m.convkit"
    model.save(str(path))
    meta, arrays = archive.read_archive(path)
    arrays["optimizer/momentum/0"] = np.zeros((4, 4), np.float32)       # kernel is (4, 3)
    archive.write_archive(path, meta, arrays)
    with pytest.raises(FileFormatError):
        ck.load_model(str(path))


def test_load_weights_into_the_same_architecture_built_again(tmp_path):
    first = _tiny_model(seed=1)
    path = tmp_path / "w.convkit"
    first.save_weights(str(path))
    second = _tiny_model(seed=2)
    second.load_weights(str(path))
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)
