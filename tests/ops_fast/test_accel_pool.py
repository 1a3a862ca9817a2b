"""Compiled max / average pooling against the naive loops, finite differences and PyTorch."""
import numpy as np
import pytest

from convkit.fast import kernels as accel
from convkit.shapes import window_geometry
from tests.gradcheck import directional_check
from tests.ops_fast import _naive

pytestmark = pytest.mark.usefixtures("need_accel")

# (H, W, pool, strides, padding, dilation, ceil_mode)
CASES = [
    (6, 7, 2, 2, "valid", 1, False),
    (7, 7, 3, 2, "same", 1, False),
    (7, 8, 3, 2, ((1, 1), (1, 0)), 1, True),
    (9, 6, (3, 2), (2, 1), ((1, 0), (0, 1)), (2, 1), False),
    (5, 9, 2, 3, ((1, 1), (1, 1)), 1, True),
    (8, 8, 3, 1, ((1, 1), (0, 1)), 2, True),
    (11, 7, 3, 3, "valid", 1, False),        # windows tile the input, a row and a column left
]


def geometry(case):
    h, w, pool, strides, padding, dilation, ceil = case
    return window_geometry((h, w), pool, strides, padding, dilation, ceil,
                           max_pad_half_window=True)


def distinct(rng, shape, dtype):
    """Values with no ties, so max pooling has a unique winner per window."""
    return (rng.permutation(int(np.prod(shape))).reshape(shape) / 7.0 - 3.0).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_max_pool_matches_naive(case, dtype, rng):
    geo = geometry(case)
    x = distinct(rng, (2, case[0], case[1], 3), dtype)
    y, arg = accel.max_pool2d_forward(x, geo)
    y_ref, arg_ref = _naive.max_pool(x, geo)
    assert y.dtype == dtype and arg.dtype == np.int32
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(arg, arg_ref)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = accel.max_pool2d_backward(dy, arg, x.shape)
    assert dx.dtype == dtype
    np.testing.assert_allclose(dx, _naive.max_pool_backward(dy, arg_ref, x.shape), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES + [(13, 13, 2, 2, "valid", 1, False),
                                          (8, 10, 2, 2, "valid", 1, False)])
def test_max_pool_values_match_naive(case, dtype, rng):
    """The values-only kernels (inference; 2x2 tiling windows have their own) against the
    naive loop, NaN included: a NaN anywhere in a window gives NaN."""
    geo = geometry(case)
    x = distinct(rng, (3, case[0], case[1], 5), dtype)
    x[0, 1, 1, 2] = np.nan
    x[2, -1, -1, 4] = np.nan
    y_ref, _ = _naive.max_pool(np.nan_to_num(x, nan=-np.inf), geo)
    has_nan, _ = _naive.max_pool(np.isnan(x).astype(dtype), geo)
    y_ref[has_nan > 0] = np.nan
    y = accel.max_pool2d_values(x, geo)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, y_ref)
    windows = accel.max_pool2d_values(np.full((1, case[0], case[1], 2), 1.5, dtype), geo)
    assert np.all(windows == 1.5) or geo.pads != ((0, 0), (0, 0))


def test_max_pool_ties_pick_first_and_padding_never_wins():
    x = np.array([[1., 4.], [4., 2.]]).reshape(1, 2, 2, 1)
    y, arg = accel.max_pool2d_forward(x, window_geometry((2, 2), 2))
    assert (y[0, 0, 0, 0], arg[0, 0, 0, 0]) == (4.0, 1)
    # all-negative input with padding: a padded cell (which would read 0) must not win
    x = -np.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    y, arg = accel.max_pool2d_forward(x, window_geometry((3, 3), 2, 2, "same"))
    np.testing.assert_array_equal(y[0, :, :, 0], [[-1., -3.], [-7., -9.]])
    np.testing.assert_array_equal(arg[0, :, :, 0], [[0, 2], [6, 8]])


def test_max_pool_window_of_padding_only_gives_minus_one():
    # kernel 2 dilated by 3 with pad 1 on a 2x2 input: cells at -1 and 2, both outside
    geo = window_geometry((2, 2), 2, 1, ((1, 1), (1, 1)), 3)
    assert geo.out_hw == (1, 1)
    y, arg = accel.max_pool2d_forward(np.ones((1, 2, 2, 2)), geo)
    assert np.all(arg == -1) and np.all(np.isneginf(y))
    dx = accel.max_pool2d_backward(np.ones_like(y), arg, (1, 2, 2, 2))
    np.testing.assert_array_equal(dx, 0.0)


def test_max_pool_nan_wins():
    x = np.array([1.0, np.nan, 3.0, 2.0]).reshape(1, 2, 2, 1)
    y, arg = accel.max_pool2d_forward(x, window_geometry((2, 2), 2))
    assert np.isnan(y[0, 0, 0, 0]) and arg[0, 0, 0, 0] == 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("include_pad", [False, True])
@pytest.mark.parametrize("case", [c for c in CASES if c[5] == 1])
def test_avg_pool_matches_naive(case, include_pad, dtype, rng):
    geo = geometry(case)
    x = rng.standard_normal((2, case[0], case[1], 3)).astype(dtype)
    y = accel.avg_pool2d_forward(x, geo, include_pad)
    tol = 1e-6 if dtype == np.float32 else 1e-13
    assert y.dtype == dtype
    np.testing.assert_allclose(y, _naive.avg_pool(x, geo, include_pad), rtol=tol, atol=tol)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = accel.avg_pool2d_backward(dy, geo, x.shape, include_pad)
    np.testing.assert_allclose(dx, _naive.avg_pool_backward(dy, geo, x.shape, include_pad),
                               rtol=tol, atol=tol)


def test_avg_pool_hand_computed():
    x = np.arange(9.0).reshape(1, 3, 3, 1)
    geo = window_geometry((3, 3), 2, 2, "same")
    np.testing.assert_allclose(accel.avg_pool2d_forward(x, geo)[0, :, :, 0],
                               [[2.0, 3.5], [6.5, 8.0]])
    # PyTorch rule: pad 1 counts, ceil-mode extra cells do not
    geo = window_geometry((3, 3), 2, 2, 1, ceil_mode=True, max_pad_half_window=True)
    y = accel.avg_pool2d_forward(x, geo, count_include_pad=True)[0, :, :, 0]
    np.testing.assert_allclose(y, [[0 / 4, (1 + 2) / 4], [(3 + 6) / 4, (4 + 5 + 7 + 8) / 4]])


def test_pool_gradients_finite_differences(rng):
    geo = geometry(CASES[3])
    x = distinct(rng, (2, 9, 6, 2), np.float64)
    _, arg = accel.max_pool2d_forward(x, geo)
    g = rng.standard_normal((2, *geo.out_hw, 2))
    directional_check(lambda v: accel.max_pool2d_forward(v, geo)[0], x,
                      accel.max_pool2d_backward(g, arg, x.shape), g, rng, eps=1e-7)
    geo = geometry(CASES[2])
    x = rng.standard_normal((2, 7, 8, 2))
    g = rng.standard_normal((2, *geo.out_hw, 2))
    directional_check(lambda v: accel.avg_pool2d_forward(v, geo, True), x,
                      accel.avg_pool2d_backward(g, geo, x.shape, True), g, rng)


@pytest.mark.torch
@pytest.mark.parametrize("case", [(7, 8, 3, 2, 1, 1, True), (9, 9, 3, 2, 1, 2, False),
                                  (6, 7, 2, 2, 0, 1, False)])
def test_pools_match_torch(case, torch, rng):
    h, w, pool, stride, pad, dilation, ceil = case
    geo = window_geometry((h, w), pool, stride, pad, dilation, ceil, max_pad_half_window=True)
    x = distinct(rng, (2, h, w, 3), np.float32)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).requires_grad_(True)
    yt, it = torch.nn.functional.max_pool2d(xt, pool, stride, pad, dilation, ceil,
                                            return_indices=True)
    y, arg = accel.max_pool2d_forward(x, geo)
    np.testing.assert_array_equal(y, yt.permute(0, 2, 3, 1).detach().numpy())
    np.testing.assert_array_equal(arg, it.permute(0, 2, 3, 1).numpy())
    dy = rng.standard_normal(y.shape).astype(np.float32)
    (dxt,) = torch.autograd.grad(yt, xt, torch.from_numpy(dy).permute(0, 3, 1, 2))
    np.testing.assert_allclose(accel.max_pool2d_backward(dy, arg, x.shape),
                               dxt.permute(0, 2, 3, 1).numpy(), rtol=1e-6, atol=1e-6)
    if dilation == 1:
        for include_pad in (False, True):
            yt = torch.nn.functional.avg_pool2d(xt, pool, stride, pad, ceil, include_pad)
            y = accel.avg_pool2d_forward(x, geo, include_pad)
            np.testing.assert_allclose(y, yt.permute(0, 2, 3, 1).detach().numpy(), rtol=1e-5,
                                       atol=1e-5)
            (dxt,) = torch.autograd.grad(yt, xt, torch.from_numpy(dy).permute(0, 3, 1, 2))
            np.testing.assert_allclose(accel.avg_pool2d_backward(dy, geo, x.shape, include_pad),
                                       dxt.permute(0, 2, 3, 1).numpy(), rtol=1e-5, atol=1e-6)


def test_pool_bad_arguments_raise_clear_errors():
    geo = window_geometry((4, 4), 2)
    with pytest.raises(ValueError, match="max_pool2d_forward: input shape"):
        accel.max_pool2d_forward(np.zeros((1, 5, 4, 1)), geo)
    with pytest.raises(ValueError, match="avg_pool2d_forward: expected a 4-D"):
        accel.avg_pool2d_forward(np.zeros((5, 4, 1)), geo)
    with pytest.raises(ValueError, match="max_pool2d_backward: argmax must be int32"):
        accel.max_pool2d_backward(np.zeros((1, 2, 2, 1)), np.zeros((1, 2, 2, 1)), (1, 4, 4, 1))
    with pytest.raises(ValueError, match="avg_pool2d_backward: dy has shape"):
        accel.avg_pool2d_backward(np.zeros((1, 3, 2, 1)), geo, (1, 4, 4, 1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_tiling_avg_pool_threaded_matches_numpy_ops(rng, dtype):
    """Above ``SMALL_POOL`` elements the tiling kernels split rows over the threads."""
    from convkit import ops
    x = rng.standard_normal((4, 65, 64, 33)).astype(dtype)
    assert x.size >= accel.SMALL_POOL
    y = ops.avg_pool2d(x, 2)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = ops.avg_pool2d_backward(dy, x, 2)
    with accel.use_backend("numpy"):
        y_ref = ops.avg_pool2d(x, 2)
        dx_ref = ops.avg_pool2d_backward(dy, x, 2)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    assert y.dtype == dtype and dx.dtype == dtype
    np.testing.assert_allclose(y, y_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(dx, dx_ref, rtol=tol, atol=tol)
    assert np.all(dx[:, 64] == 0)                  # the row no window reaches


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hw, pool", [((7, 9), 2), ((9, 8), (3, 2)), ((6, 6), 3)])
def test_max_pool_backward_tiles_equals_scatter(rng, dtype, hw, pool):
    """With the geometry of windows that tile the input, the gradient is written cell by
    cell (no scatter, no zeroing pass): the same numbers, 0 where no window reaches."""
    geo = window_geometry(hw, pool, pool)
    x = distinct(rng, (3, *hw, 5), dtype)
    x[0, 0, 0, 0] = np.nan
    _, arg = accel.max_pool2d_forward(x, geo)
    dy = rng.standard_normal((3, *geo.out_hw, 5)).astype(dtype)
    scatter = accel.max_pool2d_backward(dy, arg, x.shape)
    tiles = accel.max_pool2d_backward(dy, arg, x.shape, geo)
    assert tiles.dtype == dtype
    np.testing.assert_array_equal(tiles, scatter)
    np.testing.assert_array_equal(tiles, _naive.max_pool_backward(dy, arg, x.shape))
