import numpy as np
import pytest

from convkit import layers as L
from convkit import regularizers
from convkit.errors import ConvkitError
from tests.gradcheck import directional_check


@pytest.mark.parametrize("reg, penalty", [
    (regularizers.L1(0.1), 0.1 * 6.5),
    (regularizers.L2(0.1), 0.1 * 14.25),
    (regularizers.L1L2(0.1, 0.2), 0.1 * 6.5 + 0.2 * 14.25),
])
def test_penalties_and_gradients(rng, reg, penalty):
    w = np.array([[1.0, -2.0], [0.5, -3.0]])
    assert reg(w) == pytest.approx(penalty)
    directional_check(lambda v: np.array(reg(v)), w, reg.gradient(w), np.array(1.0), rng)
    assert regularizers.deserialize(regularizers.serialize(reg)) == reg


def test_names_give_keras_default_factor():
    assert regularizers.get("l1") == regularizers.L1(0.01)
    assert regularizers.get("L2") == regularizers.L2(0.01)
    assert regularizers.get("l1_l2") == regularizers.L1L2(0.01, 0.01)
    assert regularizers.get(None) is None
    with pytest.raises(ConvkitError, match="unknown regularizer 'l3'"):
        regularizers.get("l3")
    with pytest.raises(ConvkitError, match="l2 must be a finite number >= 0"):
        regularizers.L2(-1)


def test_layer_exposes_its_regularizers(rng):
    layer = L.Dense(3, kernel_regularizer="l2", bias_regularizer=regularizers.L1(0.5))
    layer.build((None, 4))
    losses = layer.regularization_losses()
    assert [i for i, _ in losses] == [0, 1]
    kernel, bias = layer.get_weights()
    bias[:] = [1.0, -1.0, 2.0]
    layer.set_weights([kernel, bias])
    assert layer.regularization_penalty() == pytest.approx(
        0.01 * np.sum(kernel.astype(np.float64) ** 2) + 0.5 * 4.0, rel=1e-5)
    grads = layer.regularization_gradients()
    np.testing.assert_allclose(grads[0], 0.02 * kernel)
    np.testing.assert_allclose(grads[1], [0.5, -0.5, 0.5])
    # backward keeps only the data gradient
    x = rng.standard_normal((2, 4)).astype(np.float32)
    layer(x)
    layer.backward(np.ones((2, 3), np.float32))
    np.testing.assert_allclose(layer.grads[1], [2.0, 2.0, 2.0])


def test_unregularized_layer_has_none():
    layer = L.Conv2D(2, 3)
    layer.build((None, 5, 5, 1))
    assert layer.regularization_losses() == []
    assert layer.regularization_penalty() == 0.0
    assert layer.regularization_gradients() == [None, None]
