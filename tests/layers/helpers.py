"""Shared checks for layer tests: float64 finite differences for the input and every
trainable weight of a layer."""
import numpy as np

from tests.gradcheck import directional_check


def check_layer_gradients(layer, x, rng, training=False, skip_activation=False, rtol=1e-5,
                          atol=1e-8):
    """``layer`` (float64 weights) run on ``x``: its ``backward`` must match central
    differences of ``L = sum(layer(x) * g)`` along random directions, for ``x`` and for each
    weight that gets a gradient. Returns the weight gradients that were checked."""
    x = np.asarray(x, dtype=np.float64)
    y = layer(x, training=training)
    g = rng.standard_normal(y.shape)
    if skip_activation:
        dx = layer.backward(g, skip_activation=True)

        def f(xv):
            layer.forward(xv, training=training)
            return layer.cache[2]          # the pre-activation output z
    else:
        dx = layer.backward(g)

        def f(xv):
            return layer.forward(xv, training=training)
    grads = list(layer.grads)
    directional_check(f, x, dx, g, rng, rtol=rtol, atol=atol)
    checked = []
    for weight, grad in zip(layer.weights, grads):
        if grad is None:
            continue
        assert grad.shape == weight.value.shape
        original = weight.value.copy()

        def fw(value, weight=weight):
            weight.value[...] = value
            return f(x)
        directional_check(fw, original, grad, g, rng, rtol=rtol, atol=atol)
        weight.value[...] = original
        checked.append(weight.name)
    return checked
