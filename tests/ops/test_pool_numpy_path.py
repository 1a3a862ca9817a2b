"""The NumPy path's pooling gradients: the argmax scatter (one pass per kernel offset)
against the naive loop reference and the unbuffered add over random geometries, the
finite-``dy`` shortcut against ``inf``/NaN gradients, and the tiling windows' direct writes
(a cropped border stays zero). Runs on both backends (conftest.py)."""
import numpy as np
import pytest

from convkit.ops import avg_pool2d_backward, max_pool2d, max_pool2d_backward
from convkit.ops import pool as pool_module
from convkit.ops.reference import max_pool2d_backward_ref
from tests.ops._cases import pool_case


@pytest.mark.parametrize("seed", range(24))
def test_argmax_scatter_matches_reference_and_add(seed):
    x, pool, strides, padding, dilation, options = pool_case(seed)
    kwargs = dict(dilation_rate=dilation, ceil_mode=options["ceil_mode"],
                  data_format=options["data_format"])
    y, argmax = max_pool2d(x, pool, strides, padding, return_argmax=True, **kwargs)
    dy = np.random.default_rng(seed).standard_normal(y.shape)
    dx = max_pool2d_backward(dy, x, pool, strides, padding, argmax=argmax, **kwargs)
    np.testing.assert_allclose(dx, max_pool2d_backward_ref(dy, x, pool, strides, padding,
                                                           **kwargs), rtol=1e-12, atol=1e-12)
    added = pool_module.max_pool2d_backward_from_argmax(dy, argmax, x.shape,
                                                        options["data_format"])
    np.testing.assert_allclose(dx, added, rtol=1e-12, atol=1e-12)


def test_argmax_scatter_by_hand_with_overlaps_and_padding():
    # 3x3 windows, stride 1, pad 1 on a 3x3 input: the centre 9 wins all nine windows
    x = np.array([[1., 2., 3.], [4., 9., 5.], [6., 7., 8.]]).reshape(1, 3, 3, 1)
    y, argmax = max_pool2d(x, 3, 1, 1, return_argmax=True)
    assert np.array_equal(argmax[0, :, :, 0], np.full((3, 3), 4))
    dx = max_pool2d_backward(np.ones_like(y), x, 3, 1, 1, argmax=argmax)
    assert np.array_equal(dx[0, :, :, 0], [[0, 0, 0], [0, 9, 0], [0, 0, 0]])


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("pool, strides", [(2, None), (3, 1)])
def test_non_finite_dy_reaches_only_the_winner(bad, pool, strides):
    rng = np.random.default_rng(3)
    x = rng.permutation(2 * 6 * 6 * 2).reshape(2, 6, 6, 2).astype(np.float32)
    y, argmax = max_pool2d(x, pool, strides, return_argmax=True)
    dy = np.ones_like(y)
    dy[0, 0, 0, 0] = bad
    for given in (None, argmax):
        dx = max_pool2d_backward(dy, x, pool, strides, argmax=given)
        assert np.count_nonzero(~np.isfinite(dx)) == 1          # the winner, not its window
        assert np.array_equal(np.isfinite(dx).sum(), dx.size - 1)


@pytest.mark.parametrize("shape, pool", [((2, 7, 9, 3), 2), ((1, 8, 7, 2), (3, 2))])
def test_tiling_writes_leave_the_cropped_border_zero(shape, pool):
    rng = np.random.default_rng(5)
    x = rng.permutation(int(np.prod(shape))).reshape(shape).astype(np.float32)
    y = max_pool2d(x, pool)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    kh, kw = (pool, pool) if isinstance(pool, int) else pool
    h_used, w_used = y.shape[1] * kh, y.shape[2] * kw
    for dx in (max_pool2d_backward(dy, x, pool), avg_pool2d_backward(dy, x, pool)):
        assert dx.dtype == np.float32
        assert not dx[:, h_used:].any() and not dx[:, :, w_used:].any()
        np.testing.assert_allclose(dx.sum(axis=(1, 2)), dy.sum(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_array_equal(max_pool2d_backward(dy, x, pool),
                                  max_pool2d_backward_ref(dy, x, pool))


@pytest.mark.parametrize("block_bytes", [1 << 20, 1])         # one block, one row a block
@pytest.mark.parametrize("pool", [2, 3, (2, 3)])
def test_tiling_ties_go_to_the_first_maximum(monkeypatch, pool, block_bytes):
    """After a ReLU whole windows are 0: the first cell in row-major window order wins."""
    from convkit.shapes import window_geometry
    monkeypatch.setattr(pool_module, "BLOCK_BYTES", block_bytes)
    rng = np.random.default_rng(11)
    x = np.maximum(rng.integers(-3, 2, (2, 7, 8, 3)), 0).astype(np.float32)
    geo = window_geometry((7, 8), pool, pool)
    dy = rng.standard_normal((2, *geo.out_hw, 3)).astype(np.float32)
    dx = pool_module._max_backward_tiles(dy, x, geo)
    assert dx is not None
    np.testing.assert_array_equal(dx, max_pool2d_backward_ref(dy, x, pool))
    np.testing.assert_array_equal(max_pool2d_backward(dy, x, pool), dx)


def test_tiling_nan_in_a_later_block_takes_the_offset_loop(monkeypatch):
    from convkit.shapes import window_geometry
    monkeypatch.setattr(pool_module, "BLOCK_BYTES", 1)
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 8, 6, 3)).astype(np.float32)
    x[1, 7, 5, 2] = x[1, 6, 5, 2] = np.nan                     # the last window row
    geo = window_geometry((8, 6), 2, 2)
    dy = rng.standard_normal((2, 4, 3, 3)).astype(np.float32)
    assert pool_module._max_backward_tiles(dy, x, geo) is None
    _, winner = pool_module._max_winners(x, geo)
    want = max_pool2d_backward(dy, x, 2, argmax=pool_module._winner_to_flat(winner, geo))
    np.testing.assert_array_equal(max_pool2d_backward(dy, x, 2), want)
    assert want[1, 7, 5, 2] == dy[1, 3, 2, 2]                   # the last NaN takes it
