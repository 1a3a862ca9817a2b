import numpy as np
import pytest

from convkit.errors import ShapeError
from convkit.ops import (avg_pool2d, avg_pool2d_backward, global_avg_pool2d,
                         global_avg_pool2d_backward, global_max_pool2d,
                         global_max_pool2d_backward, max_pool2d, max_pool2d_backward)
from convkit.ops.reference import avg_pool2d_ref, max_pool2d_backward_ref, max_pool2d_ref
from tests.gradcheck import check_vjp
from tests.ops._cases import pool_case


# ------------------------------------------------------------------ hand-computed cases
def test_max_pool_by_hand():
    x = np.array([[1, 3, 2, 0],
                  [4, 2, 1, 5],
                  [0, 1, 7, 2],
                  [3, 2, 1, 1]], dtype=float).reshape(1, 4, 4, 1)
    assert np.array_equal(max_pool2d(x, 2)[0, :, :, 0], [[4, 5], [3, 7]])
    # 3x3 windows, stride 1, 'same': the -inf padding never wins, even against negatives
    y = max_pool2d(-x, 3, 1, "same")[0, :, :, 0]
    assert y[0, 0] == -1 and y[3, 3] == -1 and y[1, 1] == 0


def test_max_pool_same_stride_2_on_5x5():
    # out 3x3; total pad 1 -> bottom/right only; the last row/column of windows are 1 cell high/wide
    x = np.arange(25.0).reshape(1, 5, 5, 1)
    y = max_pool2d(x, 2, padding="same")
    assert np.array_equal(y[0, :, :, 0], [[6, 8, 9], [16, 18, 19], [21, 23, 24]])


def test_avg_pool_same_divisor_excludes_padding():
    x = np.arange(9.0).reshape(1, 3, 3, 1)
    y = avg_pool2d(x, 2, padding="same")[0, :, :, 0]
    # windows [0 1 3 4], [2 5], [6 7], [8]: divided by 4, 2, 2 and 1 real cells
    assert np.array_equal(y, [[2.0, 3.5], [6.5, 8.0]])


def test_avg_pool_count_include_pad_and_ceil_mode():
    x = np.arange(9.0).reshape(1, 3, 3, 1) + 1        # 1..9
    # explicit pad 1, 2x2 windows, stride 2: the corner window holds one real cell (1) and
    # three padding cells
    excluded = avg_pool2d(x, 2, 2, 1)[0, :, :, 0]
    included = avg_pool2d(x, 2, 2, 1, count_include_pad=True)[0, :, :, 0]
    assert excluded[0, 0] == 1 and included[0, 0] == 0.25
    # ceil_mode on a 3x3 input, 2x2 windows, stride 2, no padding: 2x2 output; the windows
    # reaching beyond the input are divided by their real cells, even with count_include_pad
    for include in (False, True):
        y = avg_pool2d(x, 2, 2, ceil_mode=True, count_include_pad=include)[0, :, :, 0]
        assert np.array_equal(y, [[(1 + 2 + 4 + 5) / 4, (3 + 6) / 2], [(7 + 8) / 2, 9]])


def test_max_pool_ceil_mode_drops_window_starting_in_padding():
    # 4 wide, pad 1, pool 2, stride 2: floor -> 3 outputs, ceil -> 4 would start in the right
    # padding (start 6 >= 4 + 1), so it is dropped: still 3
    x = np.arange(4.0).reshape(1, 1, 4, 1)
    assert max_pool2d(x, (1, 2), (1, 2), ((0, 0), (1, 1)), ceil_mode=True).shape == (1, 1, 3, 1)
    # 5 wide, no pad, pool 2, stride 2: floor 2, ceil 3 (the last window holds one real cell)
    x = np.arange(5.0).reshape(1, 1, 5, 1)
    y = max_pool2d(x, (1, 2), ceil_mode=True)
    assert np.array_equal(y[0, 0, :, 0], [1, 3, 4])


def test_max_pool_dilation_by_hand():
    x = np.arange(25.0).reshape(1, 5, 5, 1)
    x[0, 1, 1, 0] = 100                                # skipped by the dilated window
    y = max_pool2d(x, 2, 1, dilation_rate=2)
    assert y.shape == (1, 3, 3, 1) and y[0, 0, 0, 0] == 12


def test_max_pool_backward_ties_go_to_first_and_overlaps_add():
    x = np.array([[1, 4, 4],
                  [4, 2, 0],
                  [0, 3, 1]], dtype=float).reshape(1, 3, 3, 1)
    dx = max_pool2d_backward(np.ones((1, 2, 2, 1)), x, 2, 1)[0, :, :, 0]
    # windows: top-left max 4 first at (0, 1); top-right 4 first at (0, 1) too -> adds to 2;
    # bottom-left 4 at (1, 0); bottom-right 3 at (2, 1)
    assert np.array_equal(dx, [[0, 2, 0], [1, 0, 0], [0, 1, 0]])
    assert np.array_equal(dx, max_pool2d_backward_ref(np.ones((1, 2, 2, 1)), x, 2, 1)[0, :, :, 0])


def test_avg_pool_backward_by_hand():
    dx = avg_pool2d_backward(np.ones((1, 2, 2, 1)), np.zeros((1, 3, 3, 1)), 2, padding="same")
    # divisors 4, 2, 2, 1 (real cells only)
    assert np.array_equal(dx[0, :, :, 0], [[0.25, 0.25, 0.5], [0.25, 0.25, 0.5], [0.5, 0.5, 1]])


def test_global_pools_by_hand():
    x = np.arange(8.0).reshape(1, 2, 2, 2)
    assert np.array_equal(global_avg_pool2d(x), [[3.0, 4.0]])
    assert np.array_equal(global_max_pool2d(x, keepdims=True), [[[[6.0, 7.0]]]])
    xf = x.transpose(0, 3, 1, 2)
    assert global_avg_pool2d(xf, True, "channels_first").shape == (1, 2, 1, 1)
    assert np.array_equal(global_max_pool2d(xf, data_format="channels_first"), [[6.0, 7.0]])
    tied = np.ones((1, 2, 2, 1))
    dx = global_max_pool2d_backward(np.array([[5.0]]), tied)
    assert np.array_equal(dx[0, :, :, 0], [[5, 0], [0, 0]])
    dx = global_avg_pool2d_backward(np.array([[4.0, 8.0]]), x)
    assert np.array_equal(dx[0, :, :, 1], [[2, 2], [2, 2]])


# ----------------------------------------------------------------- against reference
@pytest.mark.parametrize("seed", range(40))
def test_max_pool_matches_reference(seed):
    x, pool, strides, padding, dilation, options = pool_case(seed)
    kwargs = dict(dilation_rate=dilation, ceil_mode=options["ceil_mode"],
                  data_format=options["data_format"])
    expected = max_pool2d_ref(x, pool, strides, padding, **kwargs)
    y = max_pool2d(x, pool, strides, padding, **kwargs)
    assert y.shape == expected.shape
    np.testing.assert_array_equal(y, expected)
    dy = np.random.default_rng(seed).standard_normal(y.shape)
    np.testing.assert_allclose(max_pool2d_backward(dy, x, pool, strides, padding, **kwargs),
                               max_pool2d_backward_ref(dy, x, pool, strides, padding, **kwargs),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(40))
def test_avg_pool_matches_reference(seed):
    x, pool, strides, padding, _, options = pool_case(seed, with_dilation=False)
    expected = avg_pool2d_ref(x, pool, strides, padding, **options)
    y = avg_pool2d(x, pool, strides, padding, **options)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


# -------------------------------------------------------------------- gradient checks
@pytest.mark.parametrize("seed", range(0, 40, 4))
def test_max_pool_gradients(seed, rng):
    x, pool, strides, padding, dilation, options = pool_case(seed)
    kwargs = dict(dilation_rate=dilation, ceil_mode=options["ceil_mode"],
                  data_format=options["data_format"])
    check_vjp(lambda x_: max_pool2d(x_, pool, strides, padding, **kwargs),
              lambda g, x_: (max_pool2d_backward(g, x_, pool, strides, padding, **kwargs),),
              [x], rng, eps=1e-7)


@pytest.mark.parametrize("seed", range(1, 40, 4))
def test_avg_pool_gradients(seed, rng):
    x, pool, strides, padding, _, options = pool_case(seed, with_dilation=False)
    check_vjp(lambda x_: avg_pool2d(x_, pool, strides, padding, **options),
              lambda g, x_: (avg_pool2d_backward(g, x_, pool, strides, padding, **options),),
              [x], rng)


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_global_pool_gradients(rng, keepdims, data_format):
    x = rng.permutation(60).reshape(2, 5, 3, 2) / 7.0
    if data_format == "channels_first":
        x = x.transpose(0, 3, 1, 2)
    for forward, backward in ((global_avg_pool2d, global_avg_pool2d_backward),
                              (global_max_pool2d, global_max_pool2d_backward)):
        check_vjp(lambda x_: forward(x_, keepdims, data_format),
                  lambda g, x_: (backward(g, x_, keepdims, data_format),), [x], rng, eps=1e-7)


def test_tiling_fast_path_matches_windows():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 9, 8, 3))
    # pool 3x2 with strides 3x2 tiles the input (one row dropped by floor); same windows via
    # a stride that only equals the pool by value in one layout
    for fn, ref in ((max_pool2d, max_pool2d_ref), (avg_pool2d, avg_pool2d_ref)):
        np.testing.assert_allclose(fn(x, (3, 2)), ref(x, (3, 2)), rtol=1e-12)
        np.testing.assert_allclose(fn(x, (2, 2), padding="same"), ref(x, (2, 2), padding="same"),
                                   rtol=1e-12)


# --------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept(dtype):
    x = np.arange(2 * 5 * 5 * 3, dtype=dtype).reshape(2, 5, 5, 3)
    for fn, back in ((max_pool2d, max_pool2d_backward), (avg_pool2d, avg_pool2d_backward)):
        for padding in ("valid", "same"):
            y = fn(x, 2, padding=padding)
            assert y.dtype == dtype
            assert back(np.ones_like(y), x, 2, padding=padding).dtype == dtype
    assert global_avg_pool2d(x).dtype == dtype and global_max_pool2d(x).dtype == dtype
    assert max_pool2d(x.astype(int), 2).dtype == np.float32


# ------------------------------------------------------------------------- PyTorch
@pytest.mark.torch
@pytest.mark.parametrize("pool, strides, padding, dilation, ceil_mode", [
    (2, 2, 0, 1, False),
    (3, 2, 1, 1, True),
    (3, 2, (1, 0), 2, False),
    ((2, 3), (1, 2), (1, 1), (2, 1), True),
    (3, 3, 1, 1, True),
    (2, 1, 0, 2, True),
])
def test_max_pool_matches_torch(torch, rng, pool, strides, padding, dilation, ceil_mode):
    x = rng.permutation(2 * 3 * 9 * 8).reshape(2, 3, 9, 8) / 10.0      # NCHW, distinct values
    kwargs = dict(dilation_rate=dilation, ceil_mode=ceil_mode, data_format="channels_first")
    y = max_pool2d(x, pool, strides, padding, **kwargs)
    dy = rng.standard_normal(y.shape)
    dx = max_pool2d_backward(dy, x, pool, strides, padding, **kwargs)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.max_pool2d(xt, pool, strides, padding, dilation, ceil_mode)
    yt.backward(torch.tensor(dy))
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.torch
@pytest.mark.parametrize("pool, strides, padding, ceil_mode, count_include_pad", [
    (2, 2, 0, False, False),
    (3, 2, 1, True, True),
    (3, 2, 1, True, False),
    ((2, 3), (2, 2), (1, 1), True, True),
    (3, 3, (1, 0), False, True),
    (2, 2, 0, True, True),
])
def test_avg_pool_matches_torch(torch, rng, pool, strides, padding, ceil_mode, count_include_pad):
    x = rng.standard_normal((2, 9, 8, 3))                             # NHWC
    kwargs = dict(ceil_mode=ceil_mode, count_include_pad=count_include_pad)
    y = avg_pool2d(x, pool, strides, padding, **kwargs)
    dy = rng.standard_normal(y.shape)
    dx = avg_pool2d_backward(dy, x, pool, strides, padding, **kwargs)
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    yt = torch.nn.functional.avg_pool2d(xt, pool, strides, padding, ceil_mode, count_include_pad)
    yt.backward(torch.tensor(dy.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- errors
def _raises(parts, fn, *args, **kwargs):
    with pytest.raises(ShapeError) as info:
        fn(*args, **kwargs)
    for part in parts:
        assert part in str(info.value), f"{part!r} not in {str(info.value)!r}"


@pytest.mark.parametrize("fn", [max_pool2d, avg_pool2d])
def test_errors(fn):
    name = fn.__name__
    _raises([name, "(6, 6, 2)"], fn, np.zeros((6, 6, 2)), 2)
    _raises([name, "(1, 2, 2, 2)"], fn, np.zeros((1, 2, 2, 2)), 3)
    _raises([name, "more than half", "(1, 6, 6, 2)"], fn, np.zeros((1, 6, 6, 2)), 3, padding=2)
    _raises([name, "strides"], fn, np.zeros((1, 6, 6, 2)), 2, 0)
    _raises([name, "padding", "full"], fn, np.zeros((1, 6, 6, 2)), 2, padding="full")
    _raises([name, "data_format"], fn, np.zeros((1, 6, 6, 2)), 2, data_format="NCHW")
    _raises([name, "empty", "(1, 0, 6, 2)"], fn, np.zeros((1, 0, 6, 2)), 2)
    _raises([name, "numeric"], fn, np.full((1, 6, 6, 2), None), 2)


@pytest.mark.parametrize("back", [max_pool2d_backward, avg_pool2d_backward])
def test_backward_dy_shape_error(back):
    _raises([back.__name__, "(1, 2, 2, 2)", "(1, 3, 3, 2)"], back, np.zeros((1, 2, 2, 2)),
            np.zeros((1, 6, 6, 2)), 2)


def test_global_errors():
    _raises(["global_avg_pool2d", "(4, 4)"], global_avg_pool2d, np.zeros((4, 4)))
    _raises(["global_max_pool2d_backward", "(1, 3)", "(1, 2)"], global_max_pool2d_backward,
            np.zeros((1, 3)), np.zeros((1, 4, 4, 2)))
