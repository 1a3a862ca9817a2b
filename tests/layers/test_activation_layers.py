"""LeakyReLU, ELU, Softmax and PReLU: hand values, float64 gradient checks, configs with
Keras's keys, and parity with Keras 3 (outputs and gradients, same weights)."""
import doctest

import numpy as np
import pytest

import convkit as ck
from convkit.errors import ConvkitError, ShapeError
from convkit.layers import ELU, LeakyReLU, PReLU, Softmax
from tests.layers.helpers import check_layer_gradients
from tests.layers.keras_reference import (assert_layer_matches_keras, assert_same_config_keys,
                                          keras_module)

SHAPES = [(3, 5), (2, 4, 5, 3), (2, 3, 4)]


def test_docstring_examples():
    result = doctest.testmod(ck.layers.activation, extraglobs={"np": np})
    assert result.attempted > 0 and result.failed == 0


def test_by_hand():
    x = np.array([[-2.0, -0.5, 0.0, 3.0]])
    np.testing.assert_allclose(LeakyReLU()(x), [[-0.6, -0.15, 0.0, 3.0]])
    np.testing.assert_allclose(LeakyReLU(negative_slope=0.1)(x), [[-0.2, -0.05, 0.0, 3.0]])
    np.testing.assert_allclose(LeakyReLU(alpha=0.5)(x)[0, 0], -1.0)        # Keras 2's name
    np.testing.assert_allclose(ELU(alpha=2.0)(x), [[2 * np.expm1(-2), 2 * np.expm1(-0.5), 0, 3]])
    np.testing.assert_allclose(Softmax()(np.array([[0.0, np.log(3.0)]])), [[0.25, 0.75]])
    both = Softmax(axis=[1, 2])(np.log(np.array([[[1.0, 2.0], [3.0, 4.0]]])))
    np.testing.assert_allclose(both, [[[0.1, 0.2], [0.3, 0.4]]])
    prelu = PReLU()
    np.testing.assert_array_equal(prelu(x), [[0, 0, 0, 3]])          # alpha starts at 0
    prelu.set_weights([np.array([0.5, 0.25, 1.0, 2.0])])
    np.testing.assert_allclose(prelu(x), [[-1.0, -0.125, 0.0, 3.0]])
    dx = prelu.backward(np.ones((1, 4)))
    np.testing.assert_allclose(dx, [[0.5, 0.25, 1.0, 1.0]])
    np.testing.assert_allclose(prelu.grads[0], [-2.0, -0.5, 0.0, 0.0])  # dy * x where x <= 0


@pytest.mark.parametrize("make", [lambda: LeakyReLU(0.2, dtype="float64"),
                                  lambda: ELU(0.7, dtype="float64"),
                                  lambda: Softmax(dtype="float64"),
                                  lambda: Softmax(axis=1, dtype="float64")])
@pytest.mark.parametrize("shape", SHAPES)
def test_gradients(rng, make, shape):
    x = rng.standard_normal(shape)
    x = np.where(np.abs(x) < 0.05, 0.1, x)
    assert check_layer_gradients(make(), x, rng) == []


@pytest.mark.parametrize("shape, shared_axes, alpha_shape", [
    ((3, 5), None, (5,)), ((2, 4, 5, 3), [1, 2], (1, 1, 3)), ((2, 4, 5, 3), 3, (4, 5, 1)),
    ((2, 3, 4), None, (3, 4))])
def test_prelu_gradients_and_shapes(rng, shape, shared_axes, alpha_shape):
    layer = PReLU(shared_axes=shared_axes, alpha_initializer="random_normal", dtype="float64")
    assert layer.compute_output_shape((None,) + shape[1:]) == (None,) + shape[1:]
    x = rng.standard_normal(shape)
    x = np.where(np.abs(x) < 0.05, 0.1, x)
    assert check_layer_gradients(layer, x, rng) == ["alpha"]
    assert layer.get_weights()[0].shape == alpha_shape and layer.count_params() == np.prod(
        alpha_shape)


def test_softmax_fuses_only_on_the_last_axis():
    assert Softmax().activation.name == "softmax"
    assert Softmax(axis=1).activation.name != "softmax"


def test_errors():
    with pytest.raises(ConvkitError, match="LeakyReLU: negative_slope"):
        LeakyReLU(-1)
    with pytest.raises(ConvkitError, match="Softmax: axis"):
        Softmax(axis="last")
    with pytest.raises(ShapeError, match=r"Softmax: axis=3 .* shape \(2, 3\)"):
        Softmax(axis=3)(np.zeros((2, 3)))
    with pytest.raises(ConvkitError, match="PReLU: shared_axes"):
        PReLU(shared_axes=[0])
    with pytest.raises(ConvkitError, match="PReLU: weight constraints"):
        PReLU(alpha_constraint="non_neg")
    layer = PReLU(shared_axes=[1, 2])
    layer(np.zeros((1, 4, 4, 3)))
    layer(np.zeros((2, 6, 5, 3)))                       # shared axes may change size
    with pytest.raises(ShapeError, match=r"PReLU: was built with alpha of shape \(1, 1, 3\)"):
        layer(np.zeros((2, 4, 4, 2)))


@pytest.mark.parametrize("make, keras_make, shape", [
    (lambda: LeakyReLU(), lambda k: k.layers.LeakyReLU(), (3, 5)),
    (lambda: LeakyReLU(0.05), lambda k: k.layers.LeakyReLU(0.05), (2, 4, 5, 3)),
    (lambda: ELU(), lambda k: k.layers.ELU(), (2, 4, 5, 3)),
    (lambda: ELU(0.5), lambda k: k.layers.ELU(0.5), (3, 7)),
    (lambda: Softmax(), lambda k: k.layers.Softmax(), (2, 4, 5, 3)),
    (lambda: Softmax(axis=1), lambda k: k.layers.Softmax(axis=1), (2, 4, 5)),
    (lambda: Softmax(axis=[1, 2]), lambda k: k.layers.Softmax(axis=[1, 2]), (2, 4, 5, 3)),
    (lambda: PReLU(alpha_initializer="random_normal"), lambda k: k.layers.PReLU(), (3, 6)),
    (lambda: PReLU(alpha_initializer="random_normal", shared_axes=[1, 2]),
     lambda k: k.layers.PReLU(shared_axes=[1, 2]), (2, 5, 4, 3)),
])
def test_matches_keras(rng, make, keras_make, shape):
    keras = keras_module()
    layer, keras_layer = make(), keras_make(keras)
    x = rng.standard_normal(shape)
    x = np.where(np.abs(x) < 0.05, 0.1, x)
    assert_layer_matches_keras(layer, keras_layer, x, rng)
    assert_same_config_keys(layer, keras_layer)
    clone = ck.layers.deserialize(ck.layers.serialize(layer))
    assert clone.get_config() == layer.get_config()


def test_softmax_layer_trains_like_a_softmax_activation(rng):
    x = rng.standard_normal((16, 5)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    models = []
    for head in ([ck.layers.Dense(3, activation="softmax", seed=1)],
                 [ck.layers.Dense(3, seed=1), Softmax()]):
        model = ck.Sequential([ck.layers.Input((5,))] + head)
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        model.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
        models.append(model)
    for a, b in zip(models[0].get_weights(), models[1].get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
