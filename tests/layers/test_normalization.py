import numpy as np
import pytest

from convkit.errors import ConvkitError, ShapeError
from convkit.layers import BatchNormalization
from tests.layers.helpers import check_layer_gradients


def test_weights_and_counts():
    bn = BatchNormalization()
    bn.build((None, 13, 13, 32))
    assert [w.name for w in bn.weights] == ["gamma", "beta", "moving_mean", "moving_variance"]
    assert bn.count_params() == 128
    assert [w.name for w in bn.trainable_weights] == ["gamma", "beta"]
    assert [w.name for w in bn.non_trainable_weights] == ["moving_mean", "moving_variance"]
    gamma, beta, mean, var = bn.get_weights()
    np.testing.assert_array_equal(gamma, 1)
    np.testing.assert_array_equal(beta, 0)
    np.testing.assert_array_equal(mean, 0)
    np.testing.assert_array_equal(var, 1)
    bare = BatchNormalization(center=False, scale=False)
    bare.build((None, 4))
    assert [w.name for w in bare.weights] == ["moving_mean", "moving_variance"]


def test_training_uses_batch_statistics_and_updates_moving_ones(rng):
    x = rng.normal(3.0, 2.0, (16, 4, 4, 3))
    bn = BatchNormalization(momentum=0.9, epsilon=1e-3, dtype="float64")
    bn.build((None, 4, 4, 3))
    bn.set_weights([np.array([1.0, 2.0, 3.0]), np.array([0.0, 1.0, -1.0]), np.zeros(3),
                    np.ones(3)])
    y = bn(x, training=True)
    mean = x.mean(axis=(0, 1, 2))
    var = x.var(axis=(0, 1, 2))                      # biased, as Keras 3
    expected = (x - mean) / np.sqrt(var + 1e-3) * [1.0, 2.0, 3.0] + [0.0, 1.0, -1.0]
    np.testing.assert_allclose(y, expected, rtol=1e-10)
    _, _, moving_mean, moving_var = bn.get_weights()
    np.testing.assert_allclose(moving_mean, 0.1 * mean, rtol=1e-12)
    np.testing.assert_allclose(moving_var, 0.9 + 0.1 * var, rtol=1e-12)


def test_inference_uses_moving_statistics_and_does_not_update(rng):
    x = rng.normal(3.0, 2.0, (8, 5))
    bn = BatchNormalization(dtype="float64")
    bn.build((None, 5))
    moving_mean, moving_var = rng.normal(size=5), rng.uniform(0.5, 2.0, 5)
    bn.set_weights([np.ones(5), np.zeros(5), moving_mean, moving_var])
    y = bn(x)
    np.testing.assert_allclose(y, (x - moving_mean) / np.sqrt(moving_var + 1e-3))
    np.testing.assert_array_equal(bn.get_weights()[2], moving_mean)
    # a frozen layer normalises with the moving statistics even when training
    bn.trainable = False
    np.testing.assert_allclose(bn(x, training=True), y)
    np.testing.assert_array_equal(bn.get_weights()[3], moving_var)


def test_moving_mean_converges_to_the_data_mean(rng):
    bn = BatchNormalization(momentum=0.5)
    for _ in range(30):
        bn(rng.normal(5.0, 1.0, (64, 2)).astype(np.float32), training=True)
    np.testing.assert_allclose(bn.get_weights()[2], 5.0, atol=0.2)
    assert bn.get_weights()[2].dtype == np.float32


@pytest.mark.parametrize("kwargs, shape", [
    ({}, (4, 3, 3, 2)),
    ({"axis": 1}, (4, 2, 3, 3)),
    ({"center": False}, (6, 3)),
    ({"scale": False}, (6, 3)),
])
@pytest.mark.parametrize("training", [True, False])
def test_gradients(rng, kwargs, shape, training):
    bn = BatchNormalization(dtype="float64", **kwargs)
    bn.build((None,) + shape[1:])
    channels = bn.channels
    weights = bn.get_weights()
    weights = [rng.uniform(0.5, 1.5, channels) for _ in weights]   # non-trivial gamma, beta, stats
    bn.set_weights(weights)
    checked = check_layer_gradients(bn, rng.standard_normal(shape) * 2 + 1, rng, training=training)
    expected = [n for n, on in (("gamma", kwargs.get("scale", True)),
                                ("beta", kwargs.get("center", True))) if on]
    assert checked == expected
    assert bn.grads[-2:] == [None, None]


def test_errors():
    bn = BatchNormalization()
    bn(np.zeros((2, 4, 4, 3)))
    with pytest.raises(ShapeError, match=r"BatchNormalization: expected 3 channels on axis -1, "
                                         r"got 5 \(input shape \(2, 4, 4, 5\)\)"):
        bn(np.zeros((2, 4, 4, 5)))
    with pytest.raises(ShapeError, match="axis=0 is not a feature axis"):
        BatchNormalization(axis=0).build((None, 3))
    with pytest.raises(ConvkitError, match="momentum must be in"):
        BatchNormalization(momentum=1.5)


@pytest.mark.torch
def test_against_torch(rng, torch):
    x = rng.normal(1.0, 3.0, (8, 5, 5, 4)).astype(np.float32)
    bn = BatchNormalization()
    bn.build((None, 5, 5, 4))
    gamma, beta = rng.uniform(0.5, 2, 4).astype(np.float32), rng.normal(size=4).astype(np.float32)
    bn.set_weights([gamma, beta, np.zeros(4), np.ones(4)])
    ref = torch.nn.BatchNorm2d(4, eps=1e-3, momentum=0.01)   # torch's momentum = 1 - Keras's
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(gamma))
        ref.bias.copy_(torch.from_numpy(beta))
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    ref.train()
    with torch.no_grad():
        expected = ref(xt).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(bn(x, training=True), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bn.get_weights()[2], ref.running_mean.numpy(), rtol=1e-5,
                               atol=1e-6)
    # PyTorch keeps the unbiased variance in running_var, Keras 3 the biased one
    count = 8 * 5 * 5
    biased_update = (ref.running_var.numpy() - 0.99) * (count - 1) / count + 0.99
    np.testing.assert_allclose(bn.get_weights()[3], biased_update, rtol=1e-5)
    with torch.no_grad():
        ref.running_var.copy_(torch.from_numpy(bn.get_weights()[3]))
    ref.eval()
    with torch.no_grad():
        expected = ref(xt).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(bn(x), expected, rtol=1e-4, atol=1e-4)
