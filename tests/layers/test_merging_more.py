"""Subtract, Average, Maximum, Minimum and the functional shortcuts (add, subtract, ...):
hand cases, a loop reference, float64 gradient checks, Keras's tie rule, and Keras 3
parity of outputs and gradients."""
import doctest

import numpy as np
import pytest

import convkit as ck
from convkit.errors import ShapeError
from convkit import layers as L
from convkit.layers.base import SymbolicTensor
from tests.layers.keras_reference import (TOLERANCE, assert_layer_matches_keras,
                                          assert_same_config_keys, keras_layer_grads,
                                          keras_module)
from tests.layers.test_merging import check_merge_gradients

NEW = {"Subtract": L.Subtract, "Average": L.Average, "Maximum": L.Maximum,
       "Minimum": L.Minimum}


def test_docstring_examples():
    result = doctest.testmod(ck.layers.merging, extraglobs={"np": np})
    assert result.attempted >= 7 and result.failed == 0


def test_by_hand():
    a, b, c = np.array([[1.0, 5.0, 2.0]]), np.array([[3.0, 2.0, 2.0]]), np.array([[0.0, 9.0, 2.0]])
    np.testing.assert_array_equal(L.Subtract()([a, b]), [[-2, 3, 0]])
    np.testing.assert_allclose(L.Average()([a, b, c]), [[4 / 3, 16 / 3, 2]])
    np.testing.assert_array_equal(L.Maximum()([a, b, c]), [[3, 9, 2]])
    np.testing.assert_array_equal(L.Minimum()([a, b, c]), [[0, 2, 2]])


@pytest.mark.parametrize("name, count", [("Subtract", 2), ("Average", 2), ("Average", 3),
                                         ("Maximum", 2), ("Maximum", 4), ("Minimum", 2),
                                         ("Minimum", 3)])
def test_against_loop_and_gradients(rng, name, count):
    xs = [rng.standard_normal((2, 3, 4)) for _ in range(count)]
    y = NEW[name]()(xs)
    expected = np.empty_like(xs[0])
    for index in np.ndindex(expected.shape):
        values = [x[index] for x in xs]
        expected[index] = {"Subtract": lambda v: v[0] - v[1], "Average": lambda v: sum(v) / len(v),
                           "Maximum": max, "Minimum": min}[name](values)
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    check_merge_gradients(NEW[name](), xs, rng)


@pytest.mark.parametrize("name", ["Maximum", "Minimum"])
def test_ties_split_like_jax(name):
    layer = NEW[name]()
    xs = [np.ones((1, 2)), np.ones((1, 2)), np.ones((1, 2))]
    layer(xs)
    grads = layer.backward(np.ones((1, 2)))
    np.testing.assert_allclose([g[0, 0] for g in grads], [0.25, 0.25, 0.5])
    layer([np.array([[1.0]]), np.array([[2.0]]), np.array([[2.0]])])
    expected = [0.0, 0.5, 0.5] if name == "Maximum" else [1.0, 0.0, 0.0]
    np.testing.assert_allclose([g[0, 0] for g in layer.backward(np.ones((1, 1)))], expected)


def test_errors():
    with pytest.raises(ShapeError, match=r"Subtract: takes exactly 2 inputs, got 3"):
        L.Subtract()([np.ones((1, 2))] * 3)
    with pytest.raises(ShapeError, match=r"Maximum: all inputs must have the same shape"):
        L.Maximum()([np.ones((1, 2)), np.ones((1, 3))])
    with pytest.raises(ShapeError, match="Average: expects a list"):
        L.Average()(np.ones((2, 2)))


def test_shortcuts_on_arrays_and_symbolic_tensors(rng):
    a, b = rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    np.testing.assert_allclose(L.add([a, b]), a + b)
    np.testing.assert_allclose(L.subtract([a, b]), a - b)
    np.testing.assert_allclose(L.multiply([a, b]), a * b)
    np.testing.assert_allclose(L.average([a, b]), (a + b) / 2)
    np.testing.assert_allclose(L.maximum([a, b]), np.maximum(a, b))
    np.testing.assert_allclose(L.minimum([a, b]), np.minimum(a, b))
    np.testing.assert_allclose(L.concatenate([a, b], axis=1), np.concatenate([a, b], axis=1))
    first, second = L.Input((4,)), L.Input((4,))
    for shortcut, cls in [(L.add, L.Add), (L.subtract, L.Subtract), (L.multiply, L.Multiply),
                          (L.average, L.Average), (L.maximum, L.Maximum),
                          (L.minimum, L.Minimum)]:
        out = shortcut([first, second], name=f"merge_{cls.__name__.lower()}")
        assert isinstance(out, SymbolicTensor) and type(out.layer) is cls
        assert out.shape == (None, 4) and out.layer.name == f"merge_{cls.__name__.lower()}"
    joined = L.concatenate([first, second], axis=-1)
    assert joined.shape == (None, 8) and joined.layer.axis == -1


def test_a_functional_model_with_shortcuts_trains(rng):
    inputs = L.Input((6,))
    left = L.Dense(4, activation="relu")(inputs)
    right = L.Dense(4)(inputs)
    merged = L.concatenate([L.maximum([left, right]), L.subtract([left, right]),
                            L.average([left, right])])
    model = ck.Model(inputs, L.Dense(1)(merged))
    model.compile(optimizer="adam", loss="mse")
    x = rng.standard_normal((32, 6)).astype(np.float32)
    y = x[:, :1] * 2
    history = model.fit(x, y, epochs=5, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


@pytest.mark.parametrize("name", sorted(NEW))
def test_matches_keras(rng, name):
    keras = keras_module()
    count = 2 if name == "Subtract" else 3
    xs = [rng.standard_normal((2, 5, 3)) for _ in range(count)]
    layer, keras_layer = NEW[name](), getattr(keras.layers, name)()
    assert_layer_matches_keras(layer, keras_layer, xs, rng)
    assert_same_config_keys(layer, keras_layer)


def test_ties_match_keras(rng):
    keras = keras_module()
    xs = [np.array([[1.0, 2.0, 2.0, 0.0]]), np.array([[1.0, 2.0, 1.0, 0.0]]),
          np.array([[1.0, 0.0, 2.0, 0.0]])]
    g = np.array([[1.0, 2.0, 3.0, 4.0]])
    for name in ("Maximum", "Minimum"):
        layer = NEW[name]()
        layer(xs)
        ours = layer.backward(g)
        keras_layer = getattr(keras.layers, name)()
        _, theirs, _ = keras_layer_grads(keras_layer, xs, g)
        for got, want in zip(ours, theirs, strict=True):
            np.testing.assert_allclose(got, want, **TOLERANCE)
