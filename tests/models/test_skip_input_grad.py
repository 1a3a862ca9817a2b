"""A training step computes no gradient for the model's input: the first layer with
trainable weights skips its input gradient and the layers before it skip backward. The
weight gradients must be exactly those of the full backward pass."""
import numpy as np
import pytest

import convkit as ck

from ._nets import residual_net

L = ck.layers


def _padded_net():
    # a weightless layer before the first trainable one: its backward is skipped too
    return ck.Sequential([L.Input((9, 9, 2)), L.ZeroPadding2D(1),
                          L.Conv2D(8, 3, activation="relu"), L.MaxPooling2D(2),
                          L.Conv2D(8, 3, padding="same", activation="relu"),
                          L.Flatten(), L.Dense(3, activation="softmax")])


def _grads_both_ways(build, x, y):
    """Weight gradients of the training step, and of ``model.backward`` (full pass)."""
    ck.set_seed(0)
    model = build()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model._loss_and_backward([x], y)
    fast = [[None if g is None else g.copy() for g in layer.grads] for layer in model.layers]
    y_pred = model(x, training=True)
    dx = model.backward(model.loss.gradient(y, y_pred))
    full = [list(layer.grads) for layer in model.layers]
    return model, fast, full, dx


@pytest.mark.parametrize("build, shape", [(_padded_net, (9, 9, 2)),
                                          (residual_net, (6, 6, 2))])
def test_training_gradients_equal_the_full_backward(rng, build, shape):
    x = rng.standard_normal((5, *shape))
    y = rng.integers(0, 3, 5)
    model, fast, full, dx = _grads_both_ways(build, x, y)
    compared = 0
    for layer, gs_fast, gs_full in zip(model.layers, fast, full):
        for g_fast, g_full in zip(gs_fast, gs_full):
            if g_full is None:
                continue
            np.testing.assert_allclose(g_fast, g_full, rtol=1e-4,
                                       atol=1e-5 * np.abs(g_full).max(),
                                       err_msg=layer.name)
            compared += 1
    assert compared >= 6
    # the flag is only set during the step; model.backward still returns d(loss)/d(input)
    assert all(layer.input_gradient for layer in model.layers)
    assert dx.shape == x.shape and np.abs(dx).max() > 0


def test_first_layer_skips_its_input_gradient(rng):
    model = _padded_net()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    seen = {}
    conv = model.layers[1]
    original = conv.backward

    def spy(dy, **kwargs):
        seen["flag"] = conv.input_gradient
        seen["dx"] = original(dy, **kwargs)
        return seen["dx"]
    conv.backward = spy
    model.train_on_batch(rng.standard_normal((4, 9, 9, 2)), rng.integers(0, 3, 4))
    assert seen == {"flag": False, "dx": None}
    assert conv.input_gradient is True
