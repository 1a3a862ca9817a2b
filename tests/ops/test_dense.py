import numpy as np
import pytest

from convkit.errors import ShapeError
from convkit.ops import dense, dense_backward
from tests.gradcheck import check_vjp


def test_by_hand():
    x = np.array([[1.0, 2.0], [3.0, -1.0]])
    kernel = np.array([[1.0, 0.0, 2.0], [10.0, 1.0, 0.0]])
    y = dense(x, kernel, np.array([0.5, 0.0, -1.0]))
    assert np.array_equal(y, [[21.5, 2.0, 1.0], [-6.5, -1.0, 5.0]])
    dx, dkernel, dbias = dense_backward(np.ones((2, 3)), x, kernel)
    assert np.array_equal(dx, [[3.0, 11.0], [3.0, 11.0]])
    assert np.array_equal(dkernel, [[4.0] * 3, [1.0] * 3])
    assert np.array_equal(dbias, [2.0, 2.0, 2.0])


@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 5), (5,)])
def test_gradients(rng, shape):
    x = rng.standard_normal(shape)
    kernel = rng.standard_normal((5, 3))
    bias = rng.standard_normal(3)
    check_vjp(lambda x_, k_, b_: dense(x_, k_, b_),
              lambda g, x_, k_, b_: dense_backward(g, x_, k_), [x, kernel, bias], rng)


@pytest.mark.torch
def test_matches_torch(torch, rng):
    x, kernel, bias = rng.standard_normal((4, 6)), rng.standard_normal((6, 3)), rng.standard_normal(3)
    expected = torch.nn.functional.linear(torch.tensor(x), torch.tensor(kernel.T),
                                          torch.tensor(bias)).numpy()
    np.testing.assert_allclose(dense(x, kernel, bias), expected, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype(dtype):
    x, kernel = np.ones((2, 3), dtype=dtype), np.ones((3, 4), dtype=dtype)
    assert dense(x, kernel, np.zeros(4, dtype=dtype)).dtype == dtype
    assert all(g.dtype == dtype for g in dense_backward(np.ones((2, 4), dtype=dtype), x, kernel))


def test_errors():
    with pytest.raises(ShapeError, match=r"dense: .*\(2, 3\).*\(4, 5\)"):
        dense(np.zeros((2, 3)), np.zeros((4, 5)))
    with pytest.raises(ShapeError, match=r"dense: .*bias shape \(4,\)"):
        dense(np.zeros((2, 3)), np.zeros((3, 5)), np.zeros(4))
    with pytest.raises(ShapeError, match=r"dense_backward: dy has shape \(2, 4\)"):
        dense_backward(np.zeros((2, 4)), np.zeros((2, 3)), np.zeros((3, 5)))
    with pytest.raises(ShapeError, match=r"dense: .*kernel.*\(3,\)"):
        dense(np.zeros((2, 3)), np.zeros(3))
