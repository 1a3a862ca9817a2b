"""Layer parity against real Keras 3 on its JAX backend, in float64.

:func:`check_keras_parity` gives a convkit layer and a Keras layer the same weights and the
same float64 input, then compares outputs, the input gradient and every weight gradient of
``L = sum(y * g)`` for a random ``g`` (Keras's through ``jax.grad`` of ``stateless_call``).
"""
import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")


def keras_layers():
    """``keras.layers`` on the JAX backend, or skip."""
    keras = pytest.importorskip("keras")
    pytest.importorskip("jax")
    if keras.backend.backend() != "jax":
        pytest.skip("requires Keras on its JAX backend (KERAS_BACKEND=jax)")
    return keras.layers


def check_keras_parity(layer, make_keras_layer, x, rng, atol=1e-6, rtol=1e-5, grads=True):
    """``layer``: a convkit layer (float64); ``make_keras_layer(dtype)``: builds the Keras
    layer. Weights are copied from ``layer`` to Keras in ``get_weights`` order, so the two
    orders (and shapes) must agree."""
    import jax
    import jax.numpy as jnp
    x = np.asarray(x, dtype=np.float64)
    y = layer(x)
    g = rng.standard_normal(y.shape)
    dx = layer.backward(g) if grads else None
    with jax.enable_x64(True):
        keras_layer = make_keras_layer("float64")
        keras_layer.build(x.shape)
        assert len(keras_layer.weights) == len(layer.weights), (
            [w.path for w in keras_layer.weights], [w.name for w in layer.weights])
        for ours, theirs in zip(layer.weights, keras_layer.weights):
            assert theirs.path.endswith(ours.name), (theirs.path, ours.name)
        keras_layer.set_weights(layer.get_weights())
        trainable = [v.value for v in keras_layer.trainable_variables]
        frozen = [v.value for v in keras_layer.non_trainable_variables]

        def loss(inputs, weights):
            out, _ = keras_layer.stateless_call(weights, frozen, inputs)
            return jnp.sum(out * g), out

        # one compiled function: faster than running the graph op by op
        (_, y_keras), (dx_keras, dweights_keras) = jax.jit(jax.value_and_grad(
            loss, argnums=(0, 1), has_aux=True))(jnp.asarray(x), trainable)
    np.testing.assert_allclose(y, np.asarray(y_keras), rtol=rtol, atol=atol)
    if not grads:
        return
    np.testing.assert_allclose(dx, np.asarray(dx_keras), rtol=rtol, atol=atol)
    ours = [gw for gw in layer.grads if gw is not None]
    assert len(ours) == len(dweights_keras)
    for mine, theirs in zip(ours, dweights_keras):
        np.testing.assert_allclose(mine, np.asarray(theirs), rtol=rtol, atol=atol)
