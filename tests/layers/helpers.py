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


def check_config_and_archive(layer, input_shape, rng, tmp_path):
    """``layer`` survives ``get_config``/``from_config`` through JSON (same config, output
    shape, parameter count and outputs) and a save/load of a one-layer model in convkit's
    archive (same outputs and summary). ``input_shape`` has no batch entry."""
    import json

    import convkit as ck
    from convkit import layers as L
    clone = L.deserialize(json.loads(json.dumps(L.serialize(layer))))
    assert type(clone) is type(layer) and clone.get_config() == layer.get_config()
    model = ck.Sequential([L.Input(input_shape), layer])
    clone.build((None,) + tuple(input_shape))
    assert clone.output_shape == layer.output_shape
    assert clone.count_params() == layer.count_params()
    clone.set_weights(layer.get_weights())
    x = rng.standard_normal((2,) + tuple(input_shape)).astype(np.float32)
    np.testing.assert_allclose(clone(x), layer(x), rtol=1e-6, atol=1e-6)
    path = tmp_path / "one_layer.convkit"
    model.save(path)
    loaded = ck.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.layers[-1].get_config() == layer.get_config()
    assert loaded.count_params() == model.count_params()
    model.summary(print_fn=lambda *_: None)
    model.summary(print_fn=lambda *_: None, explain=True)
    ck.explain.explain_model(model)
