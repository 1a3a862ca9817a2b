"""Lambda: forward on arrays and lists, shape inference, training when no trainable layer
precedes it, a clear error when its gradient is needed, and refusal to be saved."""
import doctest

import numpy as np
import pytest

import convkit as ck
from convkit.errors import ConvkitError, ShapeError
from convkit.layers import Dense, Flatten, Input, Lambda


def test_docstring_examples():
    result = doctest.testmod(ck.layers.lambda_layer, extraglobs={"np": np})
    assert result.attempted > 0 and result.failed == 0


def test_forward_shapes_and_arguments(rng):
    x = rng.standard_normal((3, 4, 5, 2))
    scale = Lambda(lambda t, factor: t * factor, arguments={"factor": 3.0})
    np.testing.assert_allclose(scale(x), 3 * x)
    mean = Lambda(lambda t: t.mean(axis=(1, 2)))
    assert mean.compute_output_shape((None, 4, 5, 2)) == (None, 2)
    np.testing.assert_allclose(mean(x), x.mean(axis=(1, 2)))
    assert Lambda(lambda t: t[:, :2], output_shape=(2,)).compute_output_shape((None, 7)) == \
        (None, 2)
    assert Lambda(np.square, output_shape=lambda s: s).compute_output_shape((None, 7)) == \
        (None, 7)
    pair = Lambda(lambda ts: ts[0] - ts[1])
    np.testing.assert_allclose(pair([x, 2 * x]), -x)


def test_in_a_functional_model_it_trains_when_first(rng):
    inputs = Input((6,))
    rescaled = Lambda(lambda t: t / 10.0)(inputs)
    assert rescaled.shape == (None, 6)
    model = ck.Model(inputs, Dense(1)(rescaled))
    model.compile(optimizer="sgd", loss="mse")
    x = rng.standard_normal((16, 6)).astype(np.float32)
    model.fit(x, x[:, :1], epochs=2, batch_size=8, verbose=0)
    np.testing.assert_allclose(model.predict(x, verbose=0), model.layers[-1](x / 10.0),
                               rtol=1e-5, atol=1e-6)
    sequential = ck.Sequential([Input((2, 3)), Lambda(lambda t: t * 2), Flatten(), Dense(1)])
    sequential.compile(optimizer="sgd", loss="mse")
    sequential.fit(rng.standard_normal((8, 2, 3)), rng.standard_normal((8, 1)), epochs=1,
                   verbose=0)


def test_gradient_needed_is_a_clear_error(rng):
    model = ck.Sequential([Input((4,)), Dense(3), Lambda(np.tanh, name="squash"), Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ConvkitError, match=r"Lambda 'squash': a plain function has no "
                                           r"gradient"):
        model.fit(rng.standard_normal((8, 4)), rng.standard_normal((8, 1)), verbose=0)


def test_a_function_with_its_own_backward(rng):
    def cube(t):
        return t ** 3
    cube.backward = lambda dy, x, y: 3 * x ** 2 * dy
    layer = Lambda(cube)
    x = rng.standard_normal((2, 3))
    layer(x)
    np.testing.assert_allclose(layer.backward(np.ones((2, 3))), 3 * x ** 2)


def test_saving_is_refused(tmp_path):
    layer = Lambda(np.abs, name="absolute")
    with pytest.raises(ConvkitError, match=r"Lambda 'absolute': its function absolute is "
                                           r"Python code.*register"):
        ck.layers.serialize(layer)
    model = ck.Sequential([Input((3,)), layer, Dense(1)])
    with pytest.raises(ConvkitError, match="Lambda 'absolute'"):
        model.save(tmp_path / "model.ckz")
    assert "Lambda(function='absolute'" in repr(layer)
    keras_style = {"class_name": "Lambda", "config": {
        "name": "lambda", "function": {"class_name": "__lambda__", "config": {"code": "4wEA"}},
        "arguments": {}}}
    with pytest.raises(ConvkitError, match="Lambda 'lambda': a function is never loaded"):
        ck.layers.deserialize(keras_style)


def test_errors():
    with pytest.raises(ConvkitError, match="Lambda: function must be callable"):
        Lambda(3)
    with pytest.raises(ConvkitError, match="Lambda: output_shape must be"):
        Lambda(np.abs, output_shape="same")
    with pytest.raises(ConvkitError, match=r"Lambda 'boom': the function raised ValueError"):
        Lambda(lambda t: (_ for _ in ()).throw(ValueError("bad")), name="boom")(np.ones((1, 2)))
    with pytest.raises(ShapeError, match="could not infer the output shape"):
        Lambda(lambda t: t.sum()).compute_output_shape((None, 3))
