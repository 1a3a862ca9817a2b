"""The activations Keras 3 lists, against ``keras.activations`` (values and JAX gradients),
plus hand values and float64 gradient checks for the ones added with them."""
import math

import numpy as np
import pytest

from convkit.ops import activations
from tests.gradcheck import check_vjp
from tests.layers.keras_reference import TOLERANCE, keras_function_grad, keras_module

# convkit name -> (Keras function name, keyword arguments)
KERAS_NAMES = {
    "linear": ("linear", {}), "relu": ("relu", {}), "relu6": ("relu6", {}),
    "leaky_relu": ("leaky_relu", {}), "elu": ("elu", {}), "selu": ("selu", {}),
    "gelu": ("gelu", {}), "gelu_tanh": ("gelu", {"approximate": True}),
    "sigmoid": ("sigmoid", {}), "hard_sigmoid": ("hard_sigmoid", {}), "swish": ("swish", {}),
    "silu": ("silu", {}), "hard_silu": ("hard_silu", {}), "hard_swish": ("hard_swish", {}),
    "mish": ("mish", {}), "celu": ("celu", {}), "tanh": ("tanh", {}),
    "hard_tanh": ("hard_tanh", {}), "tanh_shrink": ("tanh_shrink", {}),
    "softplus": ("softplus", {}), "softsign": ("softsign", {}),
    "log_sigmoid": ("log_sigmoid", {}), "exponential": ("exponential", {}),
    "softmax": ("softmax", {}), "log_softmax": ("log_softmax", {}),
}


@pytest.fixture(autouse=True)
def backend():
    """Activations have no compiled kernels: run once, not once per backend."""
    yield "numpy"


NEW = ["hard_silu", "hard_swish", "mish", "celu", "hard_tanh", "tanh_shrink", "log_sigmoid"]


def _away_from_kinks(rng, shape, low=-5.0, high=7.0):
    x = rng.uniform(low, high, size=shape)
    for kink in (-3.0, -1.0, 0.0, 1.0, 3.0, 6.0):
        x = np.where(np.abs(x - kink) < 0.05, x + 0.1, x)
    return x


def test_new_ones_by_hand():
    x = np.array([-4.0, -1.5, 0.0, 0.5, 2.0, 4.0])
    get = activations.get
    np.testing.assert_allclose(get("hard_silu").forward(x),
                               [0, -1.5 * 1.5 / 6, 0, 0.5 * 3.5 / 6, 2 * 5 / 6, 4])
    np.testing.assert_array_equal(get("hard_swish").forward(x), get("hard_silu").forward(x))
    softplus_1 = math.log(1 + math.e)
    np.testing.assert_allclose(get("mish").forward(np.array([1.0])), math.tanh(softplus_1))
    np.testing.assert_allclose(get("celu", alpha=2.0).forward(np.array([-2.0, 3.0])),
                               [2 * (math.exp(-1) - 1), 3.0])
    np.testing.assert_array_equal(get("hard_tanh").forward(x), [-1, -1, 0, 0.5, 1, 1])
    np.testing.assert_allclose(get("tanh_shrink").forward(np.array([1.0])), 1 - math.tanh(1))
    np.testing.assert_allclose(get("log_sigmoid").forward(np.array([0.0, -1000.0, 1000.0])),
                               [math.log(0.5), -1000.0, 0.0])


@pytest.mark.parametrize("name", NEW)
def test_new_ones_gradients(rng, name):
    act = activations.get(name)
    x = _away_from_kinks(rng, (3, 4))
    check_vjp(act.forward, lambda g, x_: (act.backward(g, x_),), [x], rng)
    assert act.forward(x.astype(np.float32)).dtype == np.float32
    assert act.backward(np.ones((3, 4), np.float32), x.astype(np.float32)).dtype == np.float32


def test_keras_default_parameters():
    """Keras's activation defaults: exact gelu, leaky slope 0.2, elu and celu alpha 1."""
    assert activations.get("gelu").params == {"approximate": False}
    assert activations.get("leaky_relu").params == {"negative_slope": 0.2}
    assert activations.get("elu").params == {"alpha": 1.0}
    assert activations.get("celu").params == {"alpha": 1.0}


@pytest.mark.parametrize("name", sorted(KERAS_NAMES))
def test_matches_keras(rng, name):
    keras = keras_module()
    keras_name, kwargs = KERAS_NAMES[name]
    function = getattr(keras.activations, keras_name)
    for shape in [(2, 3, 4, 6)]:
        x = _away_from_kinks(rng, shape).astype(np.float32).astype(np.float64)
        g = rng.standard_normal(shape)
        y_keras, dx_keras = keras_function_grad(lambda t: function(t, **kwargs), x, g)
        act = activations.get(name)
        y = act.forward(x)
        scale = max(1.0, float(np.abs(y_keras).max()))     # exponential reaches e^7
        np.testing.assert_allclose(y, y_keras, rtol=TOLERANCE["rtol"],
                                   atol=TOLERANCE["atol"] * scale)
        np.testing.assert_allclose(act.backward(g, x), dx_keras, rtol=TOLERANCE["rtol"],
                                   atol=TOLERANCE["atol"] * scale)
