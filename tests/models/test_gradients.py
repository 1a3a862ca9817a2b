"""Whole-model gradients in float64 against central finite differences, along random
directions, for every weight and for the input; and the fused softmax + cross-entropy path
against the unfused one."""
import numpy as np
import pytest

import convkit as ck

from ._nets import L, residual_net

EPS = 1e-6


def _conv_bn_dropout_model():
    return ck.Sequential([L.Input((6, 6, 2)),
                          L.Conv2D(3, 3, padding="same"),
                          L.BatchNormalization(),
                          L.ReLU(),
                          L.MaxPooling2D(2),
                          L.Dropout(0.4),
                          L.Flatten(),
                          L.Dense(4, activation="softmax")])


def _residual_model():
    return residual_net(input_shape=(6, 6, 2), classes=4)


def _fix_dropout(model):
    """Give every Dropout the same generator state before each forward: a fixed mask."""
    for layer in model.layers:
        if type(layer).__name__ == "Dropout":
            layer.rng = np.random.default_rng(7)


def _loss(model, x, y):
    _fix_dropout(model)
    return model.loss(y, model(x, training=True))


def _sgd_gradients(model, x, y, lr=1e-2):
    """The gradient fit uses, read back from one plain-SGD step: g = (w_before - w_after) / lr."""
    before = [w.value.copy() for w in model.trainable_weights]
    _fix_dropout(model)
    model.train_on_batch(x, y)
    after = [w.value.copy() for w in model.trainable_weights]
    for w, value in zip(model.trainable_weights, before):   # undo the step
        w.value[...] = value
    return [(b - a) / lr for b, a in zip(before, after)]


@pytest.mark.parametrize("build", [_conv_bn_dropout_model, _residual_model],
                         ids=["conv-bn-pool-dropout-dense", "residual-add-concat"])
def test_whole_model_gradients_match_finite_differences(build, rng):
    ck.set_floatx("float64")
    ck.set_seed(11)
    model = build()
    model.compile(optimizer=ck.optimizers.SGD(learning_rate=1e-2),
                  loss="sparse_categorical_crossentropy")
    x = rng.standard_normal((5, 6, 6, 2))
    y = rng.integers(0, 4, 5)
    assert model.dtype == "float64"

    # weights: the fused path used by fit
    grads = _sgd_gradients(model, x, y)
    weights = model.trainable_weights
    assert len(grads) == len(weights) >= 6
    for w, g in zip(weights, grads):
        assert np.any(g != 0), w.name
        for _ in range(2):
            v = rng.standard_normal(w.value.shape)
            w.value += EPS * v
            up = _loss(model, x, y)
            w.value -= 2 * EPS * v
            down = _loss(model, x, y)
            w.value += EPS * v
            numeric = (up - down) / (2 * EPS)
            analytic = float(np.sum(g * v))
            assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-9), w.name

    # input: model.backward with the unfused loss gradient
    _fix_dropout(model)
    out = model(x, training=True)
    dx = model.backward(model.loss.gradient(y, out))
    assert dx.shape == x.shape and dx.dtype == np.float64
    for _ in range(3):
        v = rng.standard_normal(x.shape)
        numeric = (_loss(model, x + EPS * v, y) - _loss(model, x - EPS * v, y)) / (2 * EPS)
        assert float(np.sum(dx * v)) == pytest.approx(numeric, rel=1e-5, abs=1e-9)


def test_softmax_cross_entropy_fusion_equals_unfused_path(rng):
    ck.set_floatx("float64")
    ck.set_seed(5)
    model = _residual_model()
    model.compile(optimizer=ck.optimizers.SGD(learning_rate=1e-2),
                  loss="sparse_categorical_crossentropy")
    x = rng.standard_normal((6, 6, 6, 2))
    y = rng.integers(0, 4, 6)
    fused = _sgd_gradients(model, x, y)
    out = model(x, training=True)
    model.backward(model.loss.gradient(y, out))            # through softmax's own backward
    unfused = [g for layer in model.layers for w, g in zip(layer.weights, layer.grads)
               if w.trainable]
    assert len(fused) == len(unfused)
    for a, b in zip(fused, unfused):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-12)


def test_fusion_is_used_only_when_the_loss_allows_it(rng, monkeypatch):
    model = ck.Sequential([L.Input((3,)), L.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="mse")
    calls = []
    dense = model.layers[0]
    original = dense.backward
    monkeypatch.setattr(dense, "backward",
                        lambda dy, skip_activation=False: calls.append(skip_activation)
                        or original(dy, skip_activation=skip_activation))
    x = rng.random((4, 3)).astype(np.float32)
    model.train_on_batch(x, np.zeros((4, 2), np.float32))
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    model.train_on_batch(x, np.eye(2, dtype=np.float32)[[0, 1, 0, 1]])
    assert calls == [False, True]


def test_regularization_adds_penalty_and_gradient(rng):
    ck.set_floatx("float64")
    model = ck.Sequential([L.Input((3,)), L.Dense(2, kernel_regularizer=ck.regularizers.L2(0.5))])
    model.compile(optimizer=ck.optimizers.SGD(learning_rate=1.0), loss="mse")
    x = rng.standard_normal((4, 3))
    y = rng.standard_normal((4, 2))
    kernel = model.layers[0].weights[0].value
    expected_loss = model.loss(y, model(x)) + 0.5 * np.sum(kernel ** 2)
    assert model.test_on_batch(x, y) == pytest.approx(expected_loss)
    before = kernel.copy()
    out = model(x)
    model.backward(model.loss.gradient(y, out))
    data_grad = model.layers[0].grads[0].copy()
    model.train_on_batch(x, y)
    np.testing.assert_allclose(before - kernel, data_grad + 2 * 0.5 * before, rtol=1e-10)
