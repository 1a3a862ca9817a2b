"""fit / evaluate / predict as the training issue describes them: the progress output for
verbose 0, 1 and 2, the History, batch norm and dropout in training versus inference, and a
model that is both Sequential-built with .add and compiled from objects."""
import re

import numpy as np
import pytest

import convkit as ck

L = ck.layers


def _data(n=20, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 6, 6, 1)).astype(np.float32), rng.integers(0, 3, n)


def _model():
    ck.set_seed(0)
    model = ck.Sequential()
    model.add(L.Input((6, 6, 1)))
    model.add(L.Conv2D(4, 3, activation="relu"))
    model.add(L.BatchNormalization())
    model.add(L.Flatten())
    model.add(L.Dropout(0.5))
    model.add(L.Dense(3, activation="softmax"))
    model.compile(optimizer=ck.optimizers.SGD(learning_rate=0.05, momentum=0.9, nesterov=True),
                  loss=ck.losses.SparseCategoricalCrossentropy(),
                  metrics=[ck.metrics.SparseCategoricalAccuracy(),
                           ck.metrics.SparseTopKCategoricalAccuracy(k=2)])
    return model


def test_verbose_levels(capsys):
    x, y = _data()
    model = _model()
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert capsys.readouterr().out == ""
    model.fit(x, y, batch_size=8, epochs=2, verbose=2, validation_split=0.2)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2" and len(lines) == 4
    assert re.match(r"^2/2 - \d+s - \d+(?:ms|us|s)/step - loss: [\d.]+ - sparse_categorical_accuracy: "
                    r"[\d.]+ - sparse_top_k_categorical_accuracy: [\d.]+ - val_loss: ", lines[1])
    model.fit(x, y, batch_size=8, epochs=1, verbose=1)
    out = capsys.readouterr().out
    final = out.splitlines()[-1]
    assert re.match(r"^3/3 ━+ \d+s \d+(?:ms|us|s)/step - loss: ", final), final
    assert "Epoch" not in out                  # one epoch: no "Epoch 1/1" line, as in Keras


def test_history_and_evaluate_forms():
    x, y = _data()
    model = _model()
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0, validation_data=(x[:6], y[:6]))
    assert history is model.history and history.epoch == [0, 1, 2]
    assert set(history.history) == {"loss", "sparse_categorical_accuracy",
                                    "sparse_top_k_categorical_accuracy", "val_loss",
                                    "val_sparse_categorical_accuracy",
                                    "val_sparse_top_k_categorical_accuracy"}
    assert all(len(v) == 3 for v in history.history.values())
    loss, acc, top2 = model.evaluate(x[:6], y[:6], verbose=0)
    assert loss == pytest.approx(history.history["val_loss"][-1], rel=1e-6)
    assert model.evaluate(x[:6], y[:6], verbose=0, return_dict=True)["loss"] == \
        pytest.approx(loss)
    assert 0 <= acc <= top2 <= 1


def test_batch_norm_and_dropout_switch_between_training_and_inference():
    x, y = _data()
    model = _model()
    model.fit(x, y, batch_size=10, epochs=2, verbose=0)
    bn = model.layers[1]
    gamma, beta, mean, var = bn.get_weights()
    # inference: moving statistics, dropout off, the same output every time
    conv_out = model.layers[0](x, training=False)
    expected_bn = gamma * (conv_out - mean) / np.sqrt(var + bn.epsilon) + beta
    np.testing.assert_allclose(bn(conv_out, training=False), expected_bn, rtol=1e-5, atol=1e-6)
    first = model.predict(x, batch_size=7)
    np.testing.assert_allclose(first, model.predict(x, batch_size=20), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(first, model(x, training=False), rtol=1e-5, atol=1e-6)
    # training: batch statistics and a random dropout mask
    batch = bn(conv_out, training=True)
    axes = (0, 1, 2)
    np.testing.assert_allclose(batch.mean(axis=axes), beta, atol=1e-4)
    a, b = model(x, training=True), model(x, training=True)
    assert not np.allclose(a, b)
    # predicting and evaluating do not move the moving statistics; a training pass does
    moving = bn.get_weights()[2]
    model.predict(x)
    model.evaluate(x, y, verbose=0)
    np.testing.assert_array_equal(bn.get_weights()[2], moving)
    model.train_on_batch(x, y)
    assert not np.array_equal(bn.get_weights()[2], moving)


def test_same_seed_gives_bit_identical_fit_and_predictions():
    x, y = _data()
    runs = []
    for _ in range(2):
        model = _model()
        history = model.fit(x, y, batch_size=6, epochs=2, verbose=0, validation_split=0.25)
        runs.append((model.get_weights(), history.history, model.predict(x)))
    (w1, h1, p1), (w2, h2, p2) = runs
    assert all(np.array_equal(a, b) for a, b in zip(w1, w2))
    assert h1 == h2
    np.testing.assert_array_equal(p1, p2)
