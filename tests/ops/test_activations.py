import math

import numpy as np
import pytest

import convkit as ck
from convkit.errors import ConvkitError
from convkit.ops import activations
from tests.gradcheck import check_vjp

NAMES = ["linear", "relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "gelu_tanh",
         "sigmoid", "hard_sigmoid", "swish", "silu", "tanh", "softplus", "softsign",
         "exponential", "softmax", "log_softmax"]


def _away_from_kinks(rng, shape):
    x = rng.uniform(-5.0, 7.0, size=shape)
    for kink in (-3.0, 0.0, 3.0, 6.0):
        x = np.where(np.abs(x - kink) < 0.05, x + 0.1, x)
    return x


def test_values_by_hand():
    x = np.array([-2.0, -0.5, 0.0, 1.0, 7.0])
    get = activations.get
    assert np.array_equal(get("relu").forward(x), [0, 0, 0, 1, 7])
    assert np.array_equal(get("relu6").forward(x), [0, 0, 0, 1, 6])
    assert np.allclose(get("leaky_relu").forward(x), [-0.4, -0.1, 0, 1, 7])     # slope 0.2
    assert np.allclose(get("elu").forward(x)[:2], [math.exp(-2) - 1, math.exp(-0.5) - 1])
    assert np.allclose(get("hard_sigmoid").forward(x), [1 / 6, 5 / 12, 0.5, 2 / 3, 1])
    assert np.allclose(get("gelu").forward(np.array([1.0])), 0.5 * (1 + math.erf(1 / math.sqrt(2))))
    assert not np.allclose(get("gelu_tanh").forward(x), get("gelu").forward(x), rtol=1e-6)
    assert np.allclose(get("gelu", approximate=True).forward(x), get("gelu_tanh").forward(x))
    assert np.allclose(get("selu").forward(np.array([1.0])), 1.0507009873554805)
    assert np.allclose(get("softsign").forward(x), x / (1 + np.abs(x)))
    assert np.allclose(get("softplus").forward(np.array([0.0, 1000.0])), [math.log(2), 1000.0])
    assert np.allclose(get("sigmoid").forward(np.array([-1000.0, 0.0, 1000.0])), [0, 0.5, 1])
    probs = get("softmax").forward(np.array([[1.0, 2.0, 3.0], [1000.0, 1000.0, 1000.0]]))
    assert np.allclose(probs[0], np.exp([1, 2, 3]) / np.exp([1, 2, 3]).sum())
    assert np.allclose(probs[1], 1 / 3)
    assert np.allclose(ck.ops.log_softmax(np.array([0.0, 0.0])), math.log(0.5))
    assert np.allclose(ck.ops.softmax(np.array([[0.0], [math.log(3)]]), axis=0).ravel(), [0.25, 0.75])


@pytest.mark.parametrize("name", NAMES)
def test_gradients(rng, name):
    act = activations.get(name)
    x = _away_from_kinks(rng, (3, 4))
    check_vjp(act.forward, lambda g, x_: (act.backward(g, x_, act.forward(x_)),), [x], rng)
    # y is optional in backward
    g = rng.standard_normal(x.shape)
    np.testing.assert_allclose(act.backward(g, x), act.backward(g, x, act.forward(x)), rtol=1e-12)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept(name, dtype):
    act = activations.get(name)
    x = np.linspace(-3, 3, 8).astype(dtype)
    y = act.forward(x)
    assert y.dtype == dtype
    assert act.backward(np.ones_like(x), x, y).dtype == dtype


@pytest.mark.torch
@pytest.mark.parametrize("name, torch_fn", [
    ("relu", lambda t, x: t.relu(x)),
    ("relu6", lambda t, x: t.nn.functional.relu6(x)),
    ("leaky_relu", lambda t, x: t.nn.functional.leaky_relu(x, 0.2)),
    ("elu", lambda t, x: t.nn.functional.elu(x)),
    ("selu", lambda t, x: t.selu(x)),
    ("gelu", lambda t, x: t.nn.functional.gelu(x)),
    ("gelu_tanh", lambda t, x: t.nn.functional.gelu(x, approximate="tanh")),
    ("sigmoid", lambda t, x: t.sigmoid(x)),
    ("hard_sigmoid", lambda t, x: t.nn.functional.hardsigmoid(x)),
    ("swish", lambda t, x: t.nn.functional.silu(x)),
    ("tanh", lambda t, x: t.tanh(x)),
    ("softplus", lambda t, x: t.nn.functional.softplus(x)),
    ("softsign", lambda t, x: t.nn.functional.softsign(x)),
    ("exponential", lambda t, x: t.exp(x)),
    ("softmax", lambda t, x: t.softmax(x, -1)),
    ("log_softmax", lambda t, x: t.log_softmax(x, -1)),
])
def test_matches_torch(torch, rng, name, torch_fn):
    x = _away_from_kinks(rng, (4, 5))
    dy = rng.standard_normal(x.shape)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch_fn(torch, xt)
    yt.backward(torch.tensor(dy))
    act = activations.get(name)
    np.testing.assert_allclose(act.forward(x), yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    # PyTorch's hardsigmoid backward multiplies by a float32 1/6, hence rtol 1e-7
    np.testing.assert_allclose(act.backward(dy, x), xt.grad.numpy(), rtol=1e-7, atol=1e-12)


def test_lookup_rules():
    assert activations.get("ReLU").name == "relu"
    assert activations.get(None).name == "linear"
    assert activations.get("silu").forward(np.array([1.0])) == activations.get("swish").forward(np.array([1.0]))
    leaky = activations.get("leaky_relu", negative_slope=0.1)
    assert np.allclose(leaky.forward(np.array([-1.0])), -0.1)
    assert activations.get(leaky) is leaky
    assert "leaky_relu" in repr(leaky) and "0.1" in repr(leaky)
    with pytest.raises(ConvkitError) as info:
        activations.get("relu7")
    message = str(info.value)
    assert "relu7" in message and all(n in message for n in ("relu", "gelu", "softmax", "swish"))
    with pytest.raises(ConvkitError, match="takes no parameter"):
        activations.get("relu", alpha=2)
    with pytest.raises(ConvkitError, match="must be a name"):
        activations.get(3)


def test_callables():
    def double(x):
        return 2 * x

    act = activations.get(double)
    assert act.name == "double" and np.array_equal(act.forward(np.array([1.0, 2.0])), [2, 4])
    with pytest.raises(ConvkitError, match="double.*backward"):
        act.backward(np.ones(2), np.ones(2))
    double.backward = lambda dy, x, y: 2 * dy
    assert np.array_equal(activations.get(double).backward(np.ones(2), np.ones(2)), [2, 2])


def test_errors():
    with pytest.raises(ConvkitError, match="relu: input must be numeric"):
        ck.ops.relu(np.array(["a"]))
    with pytest.raises(ConvkitError, match=r"dy has shape \(3,\).*\(2,\)"):
        activations.get("tanh").backward(np.ones(3), np.ones(2))


def test_module_level_functions():
    for name in ("relu", "sigmoid", "tanh", "softmax", "gelu", "elu", "selu", "swish", "silu",
                 "softplus", "softsign", "relu6", "hard_sigmoid", "exponential", "linear",
                 "leaky_relu", "log_softmax"):
        assert callable(getattr(ck.ops, name))
    assert np.array_equal(ck.ops.relu([-1, 2]), [0.0, 2.0])
