"""Callbacks driven by a tiny fake model and a fake training loop."""
import csv
import warnings

import numpy as np
import pytest

from convkit import callbacks, optimizers


class FakeModel:
    """What callbacks may touch: stop_training, optimizer, weights, save/save_weights."""

    def __init__(self, lr=0.1):
        self.stop_training = False
        self.optimizer = optimizers.SGD(lr)
        self.weights = [np.zeros(2)]
        self.saved = []
        self.saved_weights = []

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = [np.array(w) for w in weights]

    def save(self, path):
        self.saved.append(str(path))

    def save_weights(self, path):
        self.saved_weights.append(str(path))


def fake_fit(model, cbs, epoch_logs, steps=2):
    """Run the hooks as fit does; the weights after epoch e are [e, e]. Returns the history
    and the learning rate in use during each epoch."""
    callback_list = callbacks.CallbackList(cbs, add_history=True, model=model, verbose=0,
                                           epochs=len(epoch_logs), steps=steps)
    callback_list.on_train_begin()
    lrs = []
    for epoch, logs in enumerate(epoch_logs):
        callback_list.on_epoch_begin(epoch)
        lrs.append(model.optimizer.learning_rate)
        for batch in range(steps):
            callback_list.on_train_batch_begin(batch)
            callback_list.on_train_batch_end(batch, {"loss": logs.get("loss", 1.0)})
        model.weights = [np.full(2, float(epoch))]
        callback_list.on_epoch_end(epoch, dict(logs))
        if model.stop_training:
            break
    callback_list.on_train_end()
    return callback_list.history, lrs


def val(*values, key="val_loss"):
    return [{"loss": 1.0, key: v} for v in values]


# ------------------------------------------------------------------ EarlyStopping
def test_early_stopping_stops_at_the_right_epoch_and_restores_best():
    model = FakeModel()
    stopper = callbacks.EarlyStopping(patience=2, restore_best_weights=True)
    history, _ = fake_fit(model, [stopper], val(1.0, 0.8, 0.9, 0.85, 0.5, 0.4))
    # best at epoch 1; epochs 2 and 3 do not improve -> stop after epoch 3
    assert history.epoch == [0, 1, 2, 3]
    assert stopper.stopped_epoch == 3 and stopper.best_epoch == 1 and stopper.best == 0.8
    np.testing.assert_array_equal(model.weights[0], [1.0, 1.0])


def test_early_stopping_patience_zero_min_delta_and_max_mode():
    model = FakeModel()
    stopper = callbacks.EarlyStopping(monitor="val_accuracy", min_delta=0.05)
    history, _ = fake_fit(model, [stopper], val(0.5, 0.6, 0.62, 0.9, key="val_accuracy"))
    # "auto" reads accuracy as "max"; 0.62 is not 0.05 better than 0.6 -> stop at epoch 2
    assert history.epoch == [0, 1, 2]
    np.testing.assert_array_equal(model.weights[0], [2.0, 2.0])     # no restore asked


def test_early_stopping_baseline_and_start_from_epoch():
    # improvements that do not beat the baseline do not reset the patience count
    logs = val(0.9, 0.8, 0.85, 0.85, 0.85)
    history, _ = fake_fit(FakeModel(), [callbacks.EarlyStopping(patience=2, baseline=0.5)],
                          logs)
    assert history.epoch == [0, 1, 2]
    history, _ = fake_fit(FakeModel(), [callbacks.EarlyStopping(patience=2)], logs)
    assert history.epoch == [0, 1, 2, 3]
    stopper = callbacks.EarlyStopping(patience=1, start_from_epoch=3)
    history, _ = fake_fit(FakeModel(), [stopper], val(0.5, 0.9, 0.9, 0.9, 0.9, 0.9))
    assert history.epoch == [0, 1, 2, 3, 4]


def test_missing_monitor_warns_once_and_does_not_stop():
    stopper = callbacks.EarlyStopping(monitor="val_loss", patience=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history, _ = fake_fit(FakeModel(), [stopper], [{"loss": 1.0}] * 4)
    assert history.epoch == [0, 1, 2, 3]
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "'val_loss'" in messages[0] and "loss" in messages[0]


def test_bad_mode_is_an_error():
    with pytest.raises(ValueError, match="mode must be"):
        callbacks.EarlyStopping(mode="smallest")


# ------------------------------------------------------------------ ReduceLROnPlateau
def test_reduce_lr_on_plateau():
    model = FakeModel(lr=0.1)
    reducer = callbacks.ReduceLROnPlateau(factor=0.5, patience=2)
    history, lrs = fake_fit(model, [reducer], val(1.0, 1.0, 1.0, 1.0, 1.0, 1.0))
    # epoch 0 sets best; epochs 1, 2 wait -> reduce after epoch 2; epochs 3, 4 -> after 4
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.025])
    assert history.history["learning_rate"] == pytest.approx(lrs)
    assert model.optimizer.learning_rate == pytest.approx(0.025)


def test_reduce_lr_cooldown_min_lr_and_improvement():
    model = FakeModel(lr=0.1)
    reducer = callbacks.ReduceLROnPlateau(factor=0.1, patience=1, cooldown=2, min_lr=0.005)
    _, lrs = fake_fit(model, [reducer], val(1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0))
    # reduce after epoch 1; Keras's cooldown counter runs out during epoch 3, which already
    # counts again -> reduce after epoch 3, to the floor 0.005
    assert lrs == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.005, 0.005, 0.005])
    model = FakeModel(lr=0.1)
    _, lrs = fake_fit(model, [callbacks.ReduceLROnPlateau(patience=1)],
                      val(1.0, 0.9, 0.8, 0.7))
    assert lrs == [0.1] * 4
    with pytest.raises(ValueError, match="factor"):
        callbacks.ReduceLROnPlateau(factor=1.5)


# ------------------------------------------------------------------ ModelCheckpoint
def test_checkpoint_save_best_only_saves_on_improvement(tmp_path):
    model = FakeModel()
    path = str(tmp_path / "ckpt" / "model-{epoch:02d}-{val_loss:.2f}.keras")
    checkpoint = callbacks.ModelCheckpoint(path, save_best_only=True)
    fake_fit(model, [checkpoint], val(1.0, 0.8, 0.9, 0.7, 0.75))
    names = [p.rsplit("/", 1)[-1] for p in model.saved]
    assert names == ["model-01-1.00.keras", "model-02-0.80.keras", "model-04-0.70.keras"]
    assert (tmp_path / "ckpt").is_dir()
    assert model.saved_weights == []


def test_checkpoint_every_epoch_weights_only_and_max_mode(tmp_path):
    model = FakeModel()
    checkpoint = callbacks.ModelCheckpoint(str(tmp_path / "w-{epoch}.npz"),
                                           save_weights_only=True)
    fake_fit(model, [checkpoint], val(1.0, 2.0, 3.0))
    assert [p.rsplit("/", 1)[-1] for p in model.saved_weights] == \
        ["w-1.npz", "w-2.npz", "w-3.npz"]
    model = FakeModel()
    checkpoint = callbacks.ModelCheckpoint(str(tmp_path / "best.keras"),
                                           monitor="val_accuracy", save_best_only=True)
    fake_fit(model, [checkpoint], val(0.5, 0.4, 0.7, key="val_accuracy"))
    assert len(model.saved) == 2 and checkpoint.best == 0.7


def test_checkpoint_bad_placeholder(tmp_path):
    checkpoint = callbacks.ModelCheckpoint(str(tmp_path / "m-{val_acc:.2f}"))
    with pytest.raises(ValueError, match="cannot fill in the file path"):
        fake_fit(FakeModel(), [checkpoint], val(1.0))


# ------------------------------------------------------------------ CSVLogger
def test_csv_logger_rows_and_append(tmp_path):
    filename = tmp_path / "log.csv"
    logs = [{"loss": 0.5, "accuracy": 0.8, "val_loss": 0.6, "val_accuracy": 0.7},
            {"loss": 0.25, "accuracy": 0.9, "val_loss": 0.4, "val_accuracy": 0.75}]
    fake_fit(FakeModel(), [callbacks.CSVLogger(filename)], logs)
    with open(filename, newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [["epoch", "accuracy", "loss", "val_accuracy", "val_loss"],
                    ["0", "0.8", "0.5", "0.7", "0.6"],
                    ["1", "0.9", "0.25", "0.75", "0.4"]]
    fake_fit(FakeModel(), [callbacks.CSVLogger(filename, append=True)], logs[:1])
    with open(filename, newline="") as f:
        rows = list(csv.reader(f))
    assert len(rows) == 4 and rows[-1] == ["0", "0.8", "0.5", "0.7", "0.6"]


def test_csv_logger_separator_and_missing_val(tmp_path):
    filename = tmp_path / "log.tsv"
    fake_fit(FakeModel(), [callbacks.CSVLogger(filename, separator="\t")],
             [{"loss": 0.5}, {"loss": 0.4, "val_loss": 0.3}])
    lines = filename.read_text().splitlines()
    assert lines == ["epoch\tloss\tval_loss", "0\t0.5\tNA", "1\t0.4\t0.3"]


# ------------------------------------------------------------------ LearningRateScheduler
def test_learning_rate_scheduler():
    model = FakeModel(lr=0.1)
    scheduler = callbacks.LearningRateScheduler(lambda epoch, lr: lr if epoch < 2 else lr / 2)
    history, lrs = fake_fit(model, [scheduler], val(1, 1, 1, 1))
    assert lrs == pytest.approx([0.1, 0.1, 0.05, 0.025])
    assert history.history["learning_rate"] == pytest.approx(lrs)
    model = FakeModel()
    _, lrs = fake_fit(model, [callbacks.LearningRateScheduler(lambda e: 0.01 * (e + 1))],
                      val(1, 1, 1))
    assert lrs == pytest.approx([0.01, 0.02, 0.03])
    with pytest.raises(ValueError, match="must return a number"):
        fake_fit(FakeModel(), [callbacks.LearningRateScheduler(lambda e, lr: "fast")], val(1))


# ------------------------------------------------------------------ the rest
def test_lambda_callback_subclassing_and_fan_out_order():
    seen = []

    class Recorder(callbacks.Callback):
        def on_batch_end(self, batch, logs=None):          # the old name still fires
            seen.append(("batch", batch))

        def on_epoch_end(self, epoch, logs=None):
            seen.append(("recorder", epoch, logs.get("learning_rate")))

    lam = callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(("lambda", e)),
                                   on_train_end=lambda logs: seen.append(("end",)))
    reducer = callbacks.ReduceLROnPlateau(patience=100)
    fake_fit(FakeModel(lr=0.3), [reducer, Recorder(), lam], val(1.0), steps=2)
    # the reducer's learning_rate entry is visible to the callbacks after it
    assert seen == [("batch", 0), ("batch", 1), ("recorder", 0, 0.3), ("lambda", 0), ("end",)]
    with pytest.raises(ValueError, match="unknown hook"):
        callbacks.LambdaCallback(on_epoch_finish=print)


def test_history_and_callback_list_setup():
    model = FakeModel()
    history, _ = fake_fit(model, [], val(0.5, 0.4))
    assert history.history == {"loss": [1.0, 1.0], "val_loss": [0.5, 0.4]}
    assert model.history is history
    cb = callbacks.Callback()
    callbacks.CallbackList([cb], model=model, epochs=3, steps=7, verbose=1)
    assert cb.model is model and cb.params == {"epochs": 3, "steps": 7, "verbose": 1}
    added = callbacks.CallbackList([], add_history=True, add_progbar=True)
    assert [type(c) for c in added] == [callbacks.History, callbacks.ProgressBarLogger]
    with pytest.raises(ValueError, match="not a Callback"):
        callbacks.CallbackList([print])


def test_terminate_on_nan(capsys):
    model = FakeModel()
    history, _ = fake_fit(model, [callbacks.TerminateOnNaN()],
                          [{"loss": 1.0}, {"loss": float("nan")}, {"loss": 1.0}])
    assert history.epoch == [0, 1] and "invalid loss" in capsys.readouterr().out
