import numpy as np
import pytest

from convkit.errors import ShapeError
from convkit.layers import Add, Concatenate, Input, Multiply
from tests.gradcheck import directional_check


def check_merge_gradients(layer, xs, rng):
    """Each input's gradient from ``backward`` against finite differences, others fixed."""
    y = layer(xs)
    g = rng.standard_normal(y.shape)
    grads = layer.backward(g)
    assert isinstance(grads, list) and len(grads) == len(xs)
    for i, grad in enumerate(grads):
        assert grad.shape == xs[i].shape

        def f(v, i=i):
            return layer.forward([v if j == i else x for j, x in enumerate(xs)])
        directional_check(f, xs[i], grad, g, rng)


@pytest.mark.parametrize("cls", [Add, Multiply])
def test_elementwise_forward_and_gradients(rng, cls):
    xs = [rng.standard_normal((2, 3, 4)) for _ in range(3)]
    y = cls()(xs)
    expected = xs[0] + xs[1] + xs[2] if cls is Add else xs[0] * xs[1] * xs[2]
    np.testing.assert_allclose(y, expected)
    check_merge_gradients(cls(), xs, rng)


def test_multiply_gradient_with_zeros(rng):
    xs = [np.zeros((2, 3)), rng.standard_normal((2, 3))]
    layer = Multiply()
    layer(xs)
    grads = layer.backward(np.ones((2, 3)))
    np.testing.assert_allclose(grads[0], xs[1])
    np.testing.assert_allclose(grads[1], 0)


@pytest.mark.parametrize("axis, shapes, out", [
    (-1, [(2, 4, 4, 3), (2, 4, 4, 5)], (2, 4, 4, 8)),
    (1, [(2, 3, 5), (2, 1, 5), (2, 2, 5)], (2, 6, 5)),
])
def test_concatenate(rng, axis, shapes, out):
    xs = [rng.standard_normal(s) for s in shapes]
    layer = Concatenate(axis=axis)
    y = layer(xs)
    assert y.shape == out
    np.testing.assert_array_equal(y, np.concatenate(xs, axis=axis))
    check_merge_gradients(Concatenate(axis=axis), xs, rng)


def test_symbolic_shapes():
    a, b = Input((4, 4, 3)), Input((4, 4, 5))
    assert Concatenate()([a, b]).shape == (None, 4, 4, 8)
    assert Add()([a, Input((4, 4, 3))]).shape == (None, 4, 4, 3)
    with pytest.raises(ShapeError, match=r"Add: all inputs must have the same shape, got "
                                         r"\[\(None, 4, 4, 3\), \(None, 4, 4, 5\)\]"):
        Add()([a, b])
    with pytest.raises(ShapeError, match=r"Concatenate: inputs must match on every axis but "
                                         r"axis=-1"):
        Concatenate()([a, Input((4, 5, 3))])


def test_merge_errors(rng):
    with pytest.raises(ShapeError, match="Multiply: all inputs must have the same shape"):
        Multiply()([np.ones((2, 3)), np.ones((2, 4))])
    with pytest.raises(ShapeError, match="Add: expects a list of inputs"):
        Add()(np.ones((2, 3)))
    with pytest.raises(ShapeError, match="axis=0 is not a feature axis"):
        Concatenate(axis=0)([np.ones((2, 3)), np.ones((2, 3))])
    layer = Add()
    layer([np.ones((2, 3)), np.ones((2, 3))])
    with pytest.raises(ShapeError, match=r"Add: was built for 2 inputs, got 3"):
        layer([np.ones((2, 3))] * 3)


def test_float32_stays_float32():
    y = Add()([np.ones((2, 3), np.float32), np.ones((2, 3), np.float32)])
    assert y.dtype == np.float32
    assert Add()([np.ones((2, 3), np.float32), np.ones((2, 3))]).dtype == np.float64
