"""Real Keras 3 (JAX backend) as a reference: outputs and gradients of Keras layers and
activations for the same inputs and weights. Gradients come from ``jax.grad`` of
``L = sum(y * g)`` through ``stateless_call``, so weight and input gradients are both exact
JAX derivatives of Keras's own code. Keras computes in float32: compare within 1e-5."""
import numpy as np
import pytest

TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


def keras_module():
    """``keras`` on the JAX backend, or skip (``tests/conftest.py`` sets KERAS_BACKEND)."""
    pytest.importorskip("jax")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "jax":
        pytest.skip("requires Keras on the JAX backend")
    return keras


def keras_function_grad(fn, x, g, jit=True):
    """``(fn(x), dL/dx)`` for ``L = sum(fn(x) * g)``, ``fn`` written with Keras ops;
    ``jit=False`` runs eagerly (faster for the image resampling ops, slow to compile)."""
    import jax
    import jax.numpy as jnp
    x = jnp.asarray(np.asarray(x, np.float32))
    g = jnp.asarray(np.asarray(g, np.float32))
    def value_and_grad(x, g):
        y, vjp = jax.vjp(fn, x)
        return y, vjp(g)[0]

    y, dx = (jax.jit(value_and_grad) if jit else value_and_grad)(x, g)
    return np.asarray(y, np.float64), np.asarray(dx, np.float64)


def keras_layer_grads(layer, inputs, g, training=False):
    """Run a built Keras ``layer`` on ``inputs`` (an array or a list of arrays) and return
    ``(y, input_grads, weight_grads)`` for ``L = sum(y * g)``: ``input_grads`` a list
    aligned with the inputs, ``weight_grads`` aligned with ``layer.trainable_variables``."""
    import jax
    import jax.numpy as jnp
    several = isinstance(inputs, (list, tuple))
    xs = [jnp.asarray(np.asarray(x, np.float32)) for x in (inputs if several else [inputs])]
    g = jnp.asarray(np.asarray(g, np.float32))
    if not layer.built:
        layer.build([x.shape for x in xs] if several else xs[0].shape)
    trainable = [v.value for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]

    flags = {"training": True} if training else {}     # not every call() takes it

    def run(weights, xs):
        y, _ = layer.stateless_call(weights, non_trainable, xs if several else xs[0], **flags)
        return y

    def value_and_grads(weights, xs, g):
        y, vjp = jax.vjp(run, weights, xs)
        return y, vjp(g)

    # one compiled program instead of many small eager ones: several times faster
    y, (weight_grads, input_grads) = jax.jit(value_and_grads)(trainable, xs, g)
    as64 = [np.asarray(v, np.float64) for v in input_grads]
    return (np.asarray(y, np.float64), as64, [np.asarray(v, np.float64) for v in weight_grads])


def assert_same_config_keys(layer, keras_layer, ours_only=()):
    """``layer.get_config()`` uses exactly Keras's keys (``ours_only``: documented extras)."""
    ours = set(layer.get_config()) - set(ours_only)
    theirs = set(keras_layer.get_config())
    assert ours == theirs, f"only convkit: {sorted(ours - theirs)}, only Keras: " \
                           f"{sorted(theirs - ours)}"


def assert_layer_matches_keras(layer, keras_layer, inputs, rng, training=False):
    """Same weights in both (copied from ``layer``), then outputs, input gradients and
    trainable-weight gradients within :data:`TOLERANCE`. ``inputs``: array or list."""
    several = isinstance(inputs, (list, tuple))
    xs = [np.asarray(x, np.float32).astype(np.float64) for x in (inputs if several else
                                                                 [inputs])]
    y = layer(xs if several else xs[0], training=training)
    g = rng.standard_normal(y.shape)
    dxs = layer.backward(g)
    dxs = dxs if several else [dxs]
    keras_layer.build([x.shape for x in xs] if several else xs[0].shape)
    keras_layer.set_weights(layer.get_weights())
    y_k, dxs_k, dws_k = keras_layer_grads(keras_layer, xs if several else xs[0], g, training)
    np.testing.assert_allclose(y, y_k, **TOLERANCE)
    for dx, dx_k in zip(dxs, dxs_k, strict=True):
        np.testing.assert_allclose(dx, dx_k, **TOLERANCE)
    ours = [grad for grad, w in zip(layer.grads, layer.weights) if w.trainable]
    for dw, dw_k in zip(ours, dws_k, strict=True):
        np.testing.assert_allclose(dw, dw_k, **TOLERANCE)
