"""Max pooling's NaN rule and its argmax: a NaN in a window gives NaN and takes the
gradient (the last NaN in row-major window order, as PyTorch does), ties keep the first
maximum, and ``max_pool2d(..., return_argmax=True)`` gives the indices that
``max_pool2d_backward(..., argmax=...)`` scatters to. Runs on both backends (conftest.py)."""
import numpy as np
import pytest

import convkit as ck
from convkit.errors import ShapeError
from convkit.ops import max_pool2d, max_pool2d_backward

# (pool_size, strides, padding, dilation_rate, ceil_mode); torch's padding where it has one
CASES = [
    (2, None, "valid", 1, False, 0),
    (3, 2, 1, 1, False, 1),
    (3, 1, 1, 1, False, 1),                  # overlapping windows
    (2, 2, "valid", 1, True, 0),             # ceil mode on an odd size
    (2, 1, "valid", 2, False, 0),            # dilated
]


def _with_nans(rng, dtype):
    x = rng.standard_normal((2, 7, 9, 3)).astype(dtype)
    x[0, 1, 1, 0] = x[0, 1, 2, 0] = np.nan     # two NaNs in one window
    x[1, 4, 5, 2] = np.nan
    x[0, 5, 6, 1] = x[0, 5, 7, 1] = 9.0      # a tie
    x[1, 0, 0, 1] = -np.inf
    return x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_nan_propagates_and_argmax_feeds_backward(rng, dtype, case):
    pool, strides, padding, dilation, ceil, _ = case
    kw = dict(dilation_rate=dilation, ceil_mode=ceil)
    x = _with_nans(rng, dtype)
    y = max_pool2d(x, pool, strides, padding, **kw)
    y2, argmax = max_pool2d(x, pool, strides, padding, return_argmax=True, **kw)
    assert y.dtype == dtype and argmax.dtype == np.int32 and argmax.shape == y.shape
    np.testing.assert_array_equal(y, y2)
    assert np.isnan(y).any()
    # every output is NaN exactly when its winner is a NaN cell
    n_idx, _, _, c_idx = np.indices(y.shape)
    winners = x.reshape(2, -1, 3)[n_idx, argmax, c_idx]
    np.testing.assert_array_equal(np.isnan(y), np.isnan(winners))
    np.testing.assert_array_equal(y[~np.isnan(y)], winners[~np.isnan(y)])
    dy = rng.standard_normal(y.shape).astype(dtype)
    from_x = max_pool2d_backward(dy, x, pool, strides, padding, **kw)
    from_arg = max_pool2d_backward(dy, x, pool, strides, padding, argmax=argmax, **kw)
    assert from_x.dtype == dtype and from_arg.shape == x.shape
    np.testing.assert_allclose(from_arg, from_x, rtol=1e-6, atol=1e-6)


def test_last_nan_wins_and_ties_keep_the_first():
    nan = np.nan
    x = np.array([[nan, 1.0], [nan, 2.0]]).reshape(1, 2, 2, 1)
    y, argmax = max_pool2d(x, 2, return_argmax=True)
    assert np.isnan(y[0, 0, 0, 0]) and argmax[0, 0, 0, 0] == 2
    dx = max_pool2d_backward(np.ones((1, 1, 1, 1)), x, 2)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0, 0], [1, 0]])
    x = np.array([[1.0, nan], [3.0, 0.5]]).reshape(1, 2, 2, 1)      # NaN after a larger value
    assert np.isnan(max_pool2d(x, 2)[0, 0, 0, 0])
    x = np.array([[4.0, 1.0], [4.0, 2.0]]).reshape(1, 2, 2, 1)
    assert max_pool2d(x, 2, return_argmax=True)[1][0, 0, 0, 0] == 0


@pytest.mark.torch
@pytest.mark.parametrize("case", CASES)
def test_values_indices_and_gradient_match_torch(torch, rng, case):
    pool, strides, _, dilation, ceil, torch_pad = case
    padding = torch_pad if torch_pad else "valid"
    x = _with_nans(rng, np.float32)
    y, argmax = max_pool2d(x, pool, strides, padding, dilation_rate=dilation, ceil_mode=ceil,
                           return_argmax=True)
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    yt, it = torch.nn.functional.max_pool2d(xt, pool, strides or pool, torch_pad, dilation,
                                            ceil_mode=ceil, return_indices=True)
    np.testing.assert_array_equal(y, yt.detach().numpy().transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(argmax, it.numpy().transpose(0, 2, 3, 1))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    yt.backward(torch.tensor(dy.transpose(0, 3, 1, 2)))
    dx = max_pool2d_backward(dy, x, pool, strides, padding, dilation_rate=dilation,
                             ceil_mode=ceil, argmax=argmax)
    np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-6,
                               atol=1e-6)


def test_channels_first_gives_channels_last_argmax(rng):
    x = rng.standard_normal((2, 3, 6, 5))                       # (N, C, H, W)
    y, argmax = max_pool2d(x, 2, data_format="channels_first", return_argmax=True)
    assert y.shape == (2, 3, 3, 2) and argmax.shape == (2, 3, 2, 3)
    dy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(
        max_pool2d_backward(dy, x, 2, data_format="channels_first", argmax=argmax),
        max_pool2d_backward(dy, x, 2, data_format="channels_first"), rtol=1e-12)


def test_bad_argmax_is_rejected(rng):
    x = rng.standard_normal((2, 6, 6, 3))
    y, argmax = max_pool2d(x, 2, return_argmax=True)
    dy = np.ones_like(y)
    with pytest.raises(ShapeError, match=r"max_pool2d_backward: argmax must be an integer "
                                         r"array shaped like the channels_last output"):
        max_pool2d_backward(dy, x, 2, argmax=argmax[:, :2])
    with pytest.raises(ShapeError, match="max_pool2d_backward: argmax holds indices outside"):
        max_pool2d_backward(dy, x, 2, argmax=argmax + 36)
    with pytest.raises(ShapeError, match="max_pool2d_backward: argmax holds indices outside"):
        max_pool2d_backward(dy, x, 2, argmax=np.where(argmax == argmax.max(), -2, argmax))
    no_winner = np.where(argmax == argmax.max(), -1, argmax)          # -1 sends nothing
    assert np.count_nonzero(max_pool2d_backward(dy, x, 2, argmax=no_winner)) \
        == np.count_nonzero(no_winner >= 0)
    with pytest.raises(ShapeError, match="argmax must be an integer"):
        max_pool2d_backward(dy, x, 2, argmax=argmax.astype(np.float32))


def test_layer_backward_after_an_inference_forward(rng):
    layer = ck.layers.MaxPooling2D(2)
    x = _with_nans(rng, np.float32)
    dy = rng.standard_normal((2, 3, 4, 3)).astype(np.float32)
    y_train = layer(x, training=True)
    dx_train = layer.backward(dy)
    y_infer = layer(x, training=False)          # no argmax kept: backward finds the winners
    np.testing.assert_array_equal(y_infer, y_train)
    np.testing.assert_array_equal(layer.backward(dy), dx_train)


@pytest.mark.parametrize("pool", [2, 3, (2, 3)])
def test_tiling_backward_matches_the_winners_of_the_offset_loop(rng, pool):
    """The NumPy path's backward for tiling windows (ties, NaNs, a cropped border: the
    offset loop's winners decide) and without them against the offset loop's winners
    scattered by the argmax path."""
    from convkit.ops import pool as pool_module
    from convkit.shapes import window_geometry
    x = rng.integers(0, 3, (2, 7, 8, 3)).astype(np.float32)
    x[0, 0, 0, 0] = x[0, 1, 1, 0] = x[1, 3, 4, 2] = np.nan
    geo = window_geometry((7, 8), pool, pool)
    _, winner = pool_module._max_winners(x, geo)
    argmax = pool_module._winner_to_flat(winner, geo)
    dy = rng.standard_normal((2, *geo.out_hw, 3)).astype(np.float32)
    want = max_pool2d_backward(dy, x, pool, argmax=argmax)
    np.testing.assert_array_equal(max_pool2d_backward(dy, x, pool), want)
    distinct = rng.permutation(x.size).reshape(x.shape).astype(np.float32)   # no ties, no NaN
    _, winner = pool_module._max_winners(distinct, geo)
    want = max_pool2d_backward(dy, distinct, pool,
                               argmax=pool_module._winner_to_flat(winner, geo))
    assert pool_module._max_backward_tiles(dy, distinct, geo) is not None
    np.testing.assert_array_equal(max_pool2d_backward(dy, distinct, pool), want)
