"""LayerNormalization: hand case, a per-sample loop reference, float64 gradient checks for
the input, gamma and beta, Keras's config keys, and Keras 3 parity."""
import doctest

import numpy as np
import pytest

import convkit as ck
from convkit.errors import ConvkitError, ShapeError
from convkit.layers import LayerNormalization
from tests.layers.helpers import check_layer_gradients
from tests.layers.keras_reference import (assert_layer_matches_keras, assert_same_config_keys,
                                          keras_module)

CASES = [((3, 5), -1), ((2, 4, 5, 3), -1), ((2, 4, 5, 3), [1, 2, 3]), ((2, 4, 5, 3), [1, 2]),
         ((2, 3, 6), 1)]


def test_docstring_examples():
    for module in (ck.layers.normalization, ck.ops.normalization):
        result = doctest.testmod(module, extraglobs={"np": np})
        assert result.attempted > 0 and result.failed == 0


def test_by_hand():
    layer = LayerNormalization(epsilon=0.0)
    x = np.array([[1.0, 2.0, 3.0, 6.0]])         # mean 3, variance 3.5
    y = layer(x)
    np.testing.assert_allclose(y, (x - 3) / np.sqrt(3.5))
    layer.set_weights([np.array([1.0, 2.0, 0.5, 1.0]), np.array([0.0, 1.0, 0.0, -1.0])])
    np.testing.assert_allclose(layer(x), (x - 3) / np.sqrt(3.5) * [1, 2, 0.5, 1] + [0, 1, 0, -1])
    assert layer(x, training=True).tolist() == layer(x, training=False).tolist()


@pytest.mark.parametrize("shape, axis", CASES)
def test_against_loop_reference(rng, shape, axis):
    layer = LayerNormalization(axis=axis, gamma_initializer="random_normal",
                               beta_initializer="random_normal", dtype="float64")
    x = rng.standard_normal(shape) * 3 + 1
    y = layer(x)
    gamma, beta = layer.get_weights()
    axes = sorted(a % len(shape) for a in (axis if isinstance(axis, list) else [axis]))
    others = [a for a in range(len(shape)) if a not in axes]
    moved = np.moveaxis(x, axes, range(len(shape) - len(axes), len(shape)))
    expected = np.empty_like(moved)
    for index in np.ndindex(*[shape[a] for a in others]):
        group = moved[index]
        expected[index] = (group - group.mean()) / np.sqrt(group.var() + 1e-3) * gamma + beta
    expected = np.moveaxis(expected, range(len(shape) - len(axes), len(shape)), axes)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape, axis", CASES)
@pytest.mark.parametrize("center, scale", [(True, True), (False, True), (True, False)])
def test_gradients(rng, shape, axis, center, scale):
    layer = LayerNormalization(axis=axis, center=center, scale=scale,
                               gamma_initializer="random_normal", dtype="float64")
    checked = check_layer_gradients(layer, rng.standard_normal(shape), rng)
    assert checked == ["gamma"] * scale + ["beta"] * center


def test_shapes_and_errors():
    layer = LayerNormalization(axis=[1, 2])
    assert layer.compute_output_shape((None, 4, 5, 3)) == (None, 4, 5, 3)
    layer.build((None, 4, 5, 3))
    assert [w.shape for w in layer.get_weights()] == [(4, 5), (4, 5)]
    assert layer.count_params() == 40
    with pytest.raises(ShapeError, match=r"was built for sizes \(4, 5\)"):
        layer(np.zeros((2, 4, 6, 3)))
    with pytest.raises(ShapeError, match=r"axis=0 is not a feature axis .*\(2, 3\)"):
        LayerNormalization(axis=0)(np.zeros((2, 3)))
    with pytest.raises(ShapeError, match="known sizes"):
        LayerNormalization().build((None, None))
    with pytest.raises(ConvkitError, match="rms_scaling=True is not supported"):
        LayerNormalization(rms_scaling=True)
    with pytest.raises(ConvkitError, match="epsilon must be"):
        LayerNormalization(epsilon=-1)


@pytest.mark.parametrize("shape, axis", CASES)
def test_matches_keras(rng, shape, axis):
    keras = keras_module()
    layer = LayerNormalization(axis=axis, gamma_initializer="random_normal",
                               beta_initializer="random_normal")
    keras_layer = keras.layers.LayerNormalization(axis=axis)
    assert_layer_matches_keras(layer, keras_layer, rng.standard_normal(shape) * 2 + 1, rng)
    assert_same_config_keys(layer, keras_layer)
    clone = ck.layers.deserialize(ck.layers.serialize(layer))
    assert clone.get_config() == layer.get_config()
