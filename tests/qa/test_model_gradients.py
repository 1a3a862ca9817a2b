"""Whole-model gradients of a functional graph that uses every merging layer (Add, Multiply,
Concatenate), batch normalization in training mode, dropout with a fixed mask and tensors
that feed several layers, against central finite differences in float64."""
import numpy as np
import pytest

import convkit as ck

L = ck.layers
EPS = 1e-6


def _graph():
    inputs = L.Input((5, 5, 2))
    a = L.Conv2D(3, 3, padding="same", activation="tanh")(inputs)     # feeds 3 layers
    b = L.BatchNormalization()(L.Conv2D(3, 3, padding="same")(a))
    gate = L.Conv2D(3, 1, activation="sigmoid")(inputs)               # inputs feeds 3 layers
    added = L.Add()([a, b])
    multiplied = L.Multiply()([added, gate, a])
    side = L.DepthwiseConv2D(3, padding="same")(inputs)
    merged = L.Concatenate()([multiplied, side])                       # (None, 5, 5, 5)
    pooled = L.AveragePooling2D(2, padding="same")(L.MaxPooling2D(2, 1)(merged))
    hidden = L.Dropout(0.3)(L.Flatten()(pooled))
    outputs = L.Dense(4, activation="softmax")(hidden)
    return ck.Model(inputs, outputs)


def _fix_dropout(model):
    for layer in model.layers:
        if type(layer).__name__ == "Dropout":
            layer.rng = np.random.default_rng(3)     # the same mask on every forward pass


def _loss(model, x, y):
    _fix_dropout(model)
    return float(model.loss(y, model(x, training=True)))


def test_graph_with_every_merging_layer_matches_finite_differences(rng):
    ck.set_floatx("float64")
    ck.set_seed(5)
    model = _graph()
    model.compile(optimizer=ck.optimizers.SGD(learning_rate=1.0),
                  loss="sparse_categorical_crossentropy")
    x = rng.standard_normal((4, 5, 5, 2))
    y = rng.integers(0, 4, 4)

    _fix_dropout(model)
    out = model(x, training=True)
    dx = model.backward(model.loss.gradient(y, out))
    layers_with_weights = [layer for layer in model.layers if layer.trainable_weights]
    pairs = [(w, g) for layer in layers_with_weights
             for w, g in zip(layer.weights, layer.grads) if w.trainable]
    assert len(pairs) >= 12
    for weight, grad in pairs:
        assert grad is not None and np.any(grad != 0), weight.name
        v = rng.standard_normal(weight.value.shape)
        weight.value += EPS * v
        up = _loss(model, x, y)
        weight.value -= 2 * EPS * v
        down = _loss(model, x, y)
        weight.value += EPS * v
        assert float(np.sum(grad * v)) == pytest.approx((up - down) / (2 * EPS),
                                                        rel=1e-5, abs=1e-9), weight.name
    for _ in range(2):
        v = rng.standard_normal(x.shape)
        numeric = (_loss(model, x + EPS * v, y) - _loss(model, x - EPS * v, y)) / (2 * EPS)
        assert float(np.sum(dx * v)) == pytest.approx(numeric, rel=1e-5, abs=1e-9)


def test_fit_uses_the_same_gradients_as_backward(rng):
    """One plain-SGD step of train_on_batch (fused softmax + cross-entropy) moves every
    weight by -lr * the gradient of the unfused backward pass."""
    ck.set_floatx("float64")
    ck.set_seed(6)
    model = _graph()
    lr = 0.5
    model.compile(optimizer=ck.optimizers.SGD(learning_rate=lr),
                  loss="sparse_categorical_crossentropy")
    x = rng.standard_normal((4, 5, 5, 2))
    y = rng.integers(0, 4, 4)
    _fix_dropout(model)
    out = model(x, training=True)
    model.backward(model.loss.gradient(y, out))
    expected = [(w.value - lr * g) for layer in model.layers
                for w, g in zip(layer.weights, layer.grads) if w.trainable and g is not None]
    # BatchNormalization's moving statistics moved in that forward pass; train_on_batch moves
    # them again, but they are not trainable, so only trainable weights are compared
    _fix_dropout(model)
    model.train_on_batch(x, y)
    got = [w.value for layer in model.layers for w in layer.weights if w.trainable]
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
