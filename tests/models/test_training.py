"""compile / fit / evaluate / predict: learning, reproducibility, Keras semantics, bad input."""
import numpy as np
import pytest

import convkit as ck
from convkit.errors import ConvkitError, ShapeError

from ._nets import L, tiny_cnn, toy_data


def _compiled(seed=0, dropout=0.0, optimizer="adam", metrics=("accuracy",)):
    ck.set_seed(seed)
    model = tiny_cnn(dropout=dropout)
    opt = ck.optimizers.get(optimizer)
    opt.learning_rate = 0.01
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy",
                  metrics=list(metrics))
    return model


def test_tiny_model_overfits_eight_samples():
    x, y = toy_data(n=8)
    model = _compiled()
    history = model.fit(x, y, batch_size=4, epochs=40, verbose=0)
    assert history.history["accuracy"][-1] == 1.0
    assert history.history["loss"][-1] < 0.2 * history.history["loss"][0]
    loss, acc = model.evaluate(x, y, verbose=0)
    assert acc == 1.0 and loss == pytest.approx(model.test_on_batch(x, y)[0], rel=1e-5)
    assert np.array_equal(model.predict(x).argmax(1), y)


def test_same_seed_gives_bit_identical_runs():
    x, y = toy_data(n=24)

    def run():
        model = _compiled(seed=42, dropout=0.3)
        history = model.fit(x, y, batch_size=5, epochs=3, verbose=0, validation_split=0.25)
        return model.get_weights(), history.history

    w1, h1 = run()
    w2, h2 = run()
    assert h1 == h2 and set(h1) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(np.array_equal(a, b) for a, b in zip(w1, w2))
    w3, h3 = (lambda m: (m.get_weights(), None))(_compiled(seed=43))
    assert not np.array_equal(w1[0], w3[0])


def test_history_epochs_and_initial_epoch():
    x, y = toy_data(n=12)
    model = _compiled()
    history = model.fit(x, y, batch_size=4, epochs=5, initial_epoch=2, verbose=0)
    assert history.epoch == [2, 3, 4] and len(history.history["loss"]) == 3
    assert model.history is history


def test_validation_split_takes_the_last_samples_before_shuffling(monkeypatch):
    x, y = toy_data(n=10)
    model = _compiled()
    seen = []
    original = model._evaluate_arrays
    monkeypatch.setattr(model, "_evaluate_arrays",
                        lambda xs, yv, bs, cbs=None: seen.append(xs[0].copy())
                        or original(xs, yv, bs, cbs))
    history = model.fit(x, y, batch_size=3, epochs=1, verbose=0, validation_split=0.3)
    np.testing.assert_array_equal(seen[0], x[7:])          # floor(10 * 0.7) = 7
    val_loss = model.evaluate(x[7:], y[7:], verbose=0)[0]
    # the weights did not change after the validation pass
    assert history.history["val_loss"][0] == pytest.approx(val_loss, rel=1e-6)


def test_validation_data_and_steps_per_epoch():
    x, y = toy_data(n=12)
    model = _compiled()
    calls = []
    cb = ck.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: calls.append(b))
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0, steps_per_epoch=5,
                        validation_data=(x[:4], y[:4]), callbacks=[cb])
    assert calls == [0, 1, 2, 3, 4] * 2
    assert len(history.history["val_accuracy"]) == 2


def test_evaluate_return_forms():
    x, y = toy_data(n=6)
    model = _compiled()
    loss, acc = model.evaluate(x, y, verbose=0)
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert logs == {"loss": loss, "accuracy": acc}
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    assert isinstance(model.evaluate(x, y, batch_size=4, verbose=0), float)


def test_evaluate_loss_is_the_sample_weighted_mean_over_batches():
    x, y = toy_data(n=7)
    model = _compiled()
    whole = model.test_on_batch(x, y)[0]
    assert model.evaluate(x, y, batch_size=3, verbose=0)[0] == pytest.approx(whole, rel=1e-5)


def test_dropout_is_on_only_in_training_steps(monkeypatch):
    x, y = toy_data(n=8)
    model = _compiled(dropout=0.5)
    dropout = next(layer for layer in model.layers if type(layer).__name__ == "Dropout")
    flags = []
    original = dropout.forward
    monkeypatch.setattr(dropout, "forward", lambda v, training=False: flags.append(training)
                        or original(v, training=training))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, validation_split=0.5)
    model.evaluate(x, y, verbose=0)
    model.predict(x)
    assert flags == [True, False, False, False]


def test_verbose_prints_progress(capsys):
    x, y = toy_data(n=8)
    model = _compiled()
    model.fit(x, y, batch_size=4, epochs=2, verbose=2)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out and "loss" in out
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert capsys.readouterr().out == ""


def test_early_stopping_stops_training():
    x, y = toy_data(n=8)
    model = _compiled()
    stop = ck.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: setattr(model, "stop_training", epoch == 1))
    history = model.fit(x, y, batch_size=4, epochs=10, verbose=0, callbacks=[stop])
    assert history.epoch == [0, 1] and "callback" in model.stop_reason


# ----------------------------------------------------------------------------- bad input
def test_fit_before_compile():
    model = tiny_cnn()
    x, y = toy_data(n=4)
    with pytest.raises(ConvkitError, match="compile"):
        model.fit(x, y, verbose=0)
    with pytest.raises(ConvkitError, match="compile"):
        model.evaluate(x, y, verbose=0)


@pytest.mark.parametrize("x_shape,y,match", [
    ((6, 8, 8, 1), np.zeros(5, int), r"same number of samples.*6 inputs.*5 targets"),
    ((6, 8, 8, 3), np.zeros(6, int), r"channels 3 instead of 1"),
    ((6, 8, 8), np.zeros(6, int), r"rank 4.*\(None, 8, 8, 1\).*channel axis"),
    ((8, 8, 1), np.zeros(8, int), r"rank 4"),
    ((6, 9, 8, 1), np.zeros(6, int), r"size along axis 1 9 instead of 8"),
    ((6, 8, 8, 1), np.eye(3)[[0, 1, 2, 0, 1, 2]], r"sparse_categorical_crossentropy.*"
                                                   r"\(6, 3\).*one-hot"),
    ((6, 8, 8, 1), np.array([0, 1, 2, 3, 0, 1]), r"\[0, 3\)"),
    ((6, 8, 8, 1), np.array([0, 1.5, 2, 0, 1, 2]), r"integer"),
    ((0, 8, 8, 1), np.zeros(0, int), r"empty"),
])
def test_fit_bad_input_gives_clear_errors(x_shape, y, match):
    model = _compiled()
    with pytest.raises(ShapeError, match=match):
        model.fit(np.zeros(x_shape, np.float32), y, verbose=0)


def test_categorical_loss_with_integer_labels():
    ck.set_seed(0)
    model = tiny_cnn()
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    x, y = toy_data(n=6)
    with pytest.raises(ShapeError, match=r"\(None, 3\).*\(6,\).*sparse_categorical"):
        model.fit(x, y, verbose=0)


def test_bad_arguments():
    model = _compiled()
    x, y = toy_data(n=6)
    for kwargs, match in [({"batch_size": 0}, "batch_size"), ({"epochs": -1}, "epochs"),
                          ({"validation_split": 1.5}, "validation_split"),
                          ({"validation_data": (x,)}, "validation_data")]:
        with pytest.raises(ConvkitError, match=match):
            model.fit(x, y, verbose=0, **kwargs)
    with pytest.raises(ConvkitError, match="too few"):
        model.fit(x[:1], y[:1], verbose=0, validation_split=0.5)


def test_nan_loss_stops_training_and_keeps_history(capsys):
    x, y = toy_data(n=12)
    model = _compiled()
    x = x.copy()
    x[9] = np.nan                                   # third batch of 4 (no shuffling)
    history = model.fit(x, y, batch_size=4, epochs=5, verbose=0, shuffle=False)
    err = capsys.readouterr().err
    assert "epoch 1, batch 3" in err and "nan" in err.lower()
    assert model.stop_training and "epoch 1, batch 3" in model.stop_reason
    assert history.epoch == [0] and np.isnan(history.history["loss"][0])
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())
