"""The gradient options training uses: ``input_grad=False`` (no input gradient),
``conv2d_relu_backward`` (the ReLU mask fused into the gradient) and the max-pool gradient
computed without an argmax array. Each is compared with the plain computation it replaces,
on both backends (see conftest.py)."""
import numpy as np
import pytest

from convkit import ops
from convkit.ops import conv
from convkit.fast import kernels as accel

CASES = [  # (x shape, kernel shape, strides, padding): one per path of conv_plan
    ((3, 12, 12, 1), (3, 3, 1, 8), 1, "valid"),         # wide grid
    ((3, 12, 12, 1), (3, 3, 1, 16), 1, "valid"),        # tap-major columns
    ((2, 11, 12, 3), (3, 3, 3, 16), 2, "same"),         # tap-major columns, strided
    ((2, 12, 12, 1), (5, 5, 1, 6), 1, "same"),           # wide grid, padded
    ((3, 10, 10, 4), (3, 3, 4, 16), 1, "valid"),        # im2col, one-pass kernel gradient
    ((2, 10, 9, 2), (3, 3, 2, 8), 2, 1),                 # strided, one-pass kernel gradient
    ((2, 9, 9, 6), (5, 5, 6, 16), 1, "valid"),           # im2col, columns
    ((2, 12, 12, 1), (7, 7, 1, 2), 1, "same"),           # direct
    ((2, 9, 9, 8), (3, 3, 8, 8), 1, "same"),             # Winograd
    ((2, 6, 6, 4), (1, 1, 4, 8), 1, "valid"),            # pointwise
    ((2, 7, 7, 4), (3, 3, 1, 4), 1, "same"),             # depthwise (groups = 4)
]


def _data(rng, x_shape, k_shape, strides, padding, dtype):
    groups = x_shape[3] // k_shape[2]
    x = rng.standard_normal(x_shape).astype(dtype)
    k = rng.standard_normal(k_shape).astype(dtype)
    b = rng.standard_normal(k_shape[3]).astype(dtype)
    y = conv.conv2d_relu(x, k, b, strides=strides, padding=padding, groups=groups)
    dy = rng.standard_normal(y.shape).astype(dtype)
    return x, k, y, dy, groups


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, k_shape, strides, padding", CASES)
def test_relu_backward_matches_masked_conv_backward(rng, dtype, x_shape, k_shape, strides,
                                                    padding):
    x, k, y, dy, groups = _data(rng, x_shape, k_shape, strides, padding, dtype)
    assert (y == 0).any() and (y > 0).any()               # the mask matters
    kwargs = dict(strides=strides, padding=padding, groups=groups)
    ref = ops.conv2d_backward(dy * (y > 0), x, k, **kwargs)
    got = conv.conv2d_relu_backward(dy, x, k, y, **kwargs)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    for g, r in zip(got, ref):
        assert g.dtype == dtype and g.shape == r.shape
        np.testing.assert_allclose(g, r, rtol=tol, atol=tol * np.abs(r).max())


@pytest.mark.parametrize("x_shape, k_shape, strides, padding", CASES)
def test_input_grad_false_skips_dx_only(rng, x_shape, k_shape, strides, padding):
    x, k, y, dy, groups = _data(rng, x_shape, k_shape, strides, padding, np.float64)
    kwargs = dict(strides=strides, padding=padding, groups=groups)
    full = conv.conv2d_relu_backward(dy, x, k, y, **kwargs)
    dx, dk, db = conv.conv2d_relu_backward(dy, x, k, y, input_grad=False, **kwargs)
    assert dx is None
    np.testing.assert_allclose(dk, full[1], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, full[2], rtol=1e-12, atol=1e-12)
    dx, dk2, _ = ops.conv2d_backward(dy, x, k, input_grad=False, **kwargs)
    assert dx is None and dk2.shape == k.shape


def test_relu_backward_checks_y_shape(rng):
    x, k, y, dy, _ = _data(rng, (1, 5, 5, 1), (3, 3, 1, 8), 1, "valid", np.float32)
    with pytest.raises(ValueError, match="conv2d_relu_backward: y has shape"):
        conv.conv2d_relu_backward(dy, x, k, y[:, :2])


def test_dense_backward_without_input_grad(rng):
    x, k, dy = rng.standard_normal((4, 5)), rng.standard_normal((5, 3)), rng.standard_normal((4, 3))
    dx, dk, db = ops.dense_backward(dy, x, k, input_grad=False)
    assert dx is None
    np.testing.assert_allclose(dk, x.T @ dy)
    np.testing.assert_allclose(db, dy.sum(axis=0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pool, strides, padding, ceil_mode", [
    (2, 2, "valid", False), (2, 3, "valid", False), (3, 3, "same", False),
    (2, 2, "valid", True), (3, 2, "valid", False)])     # the last one overlaps
def test_max_pool_backward_matches_reference(rng, dtype, pool, strides, padding, ceil_mode):
    # small integers: many ties, where the first maximum must win
    x = rng.integers(0, 3, (2, 9, 7, 5)).astype(dtype)
    kwargs = dict(padding=padding, ceil_mode=ceil_mode)
    y = ops.max_pool2d(x, pool, strides, **kwargs)
    dy = rng.standard_normal(y.shape).astype(dtype)
    got = ops.max_pool2d_backward(dy, x, pool, strides, **kwargs)
    with accel.use_backend("numpy"):
        ref = ops.max_pool2d_backward(dy, x, pool, strides, **kwargs)
    np.testing.assert_array_equal(got, ref)
    assert got.dtype == dtype


@pytest.mark.skipif(not accel.available(), reason="requires numba (the compiled kernels)")
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_max_pool_backward_direct_matches_argmax_kernels(rng, padding):
    from convkit.shapes import window_geometry
    x = rng.integers(0, 3, (2, 9, 7, 5)).astype(np.float32)
    x[0, 0, 0, 0] = x[1, 4, 3, 2] = np.nan                 # a NaN wins its window
    geo = window_geometry((9, 7), 3, 3, padding)
    y, argmax = accel.max_pool2d_forward(x, geo)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_array_equal(accel.max_pool2d_backward_direct(dy, x, geo),
                                  accel.max_pool2d_backward(dy, argmax, x.shape))
    with pytest.raises(ValueError, match="overlap"):
        accel.max_pool2d_backward_direct(dy, x, window_geometry((9, 7), 3, 2))
