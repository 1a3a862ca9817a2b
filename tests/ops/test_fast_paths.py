"""The dispatch of conv2d / pooling / dense to their fast paths: each path is chosen where
planned, matches the naive reference and the NumPy backend, keeps float64 in float64, and
the Winograd path stays within its float32 error bound. (Every other test in tests/ops also
runs on both backends, see conftest.py.)"""
import numpy as np
import pytest

import convkit as ck
from convkit.ops import conv2d, conv2d_backward
from convkit.fast import kernels as accel
from convkit.ops.conv import conv2d_relu, conv_plan
from convkit.ops.reference import conv2d_ref
from tests.gradcheck import check_vjp

needs_numba = pytest.mark.skipif(not accel.available(), reason="requires numba (the compiled kernels)")

# (input shape, kernel shape, keyword arguments, plan under "auto" with numba, float32:
# "forward/backward" where the two differ)
CASES = [
    ((2, 9, 10, 8), (3, 3, 8, 8), dict(padding="same"), "winograd"),
    ((2, 7, 6, 8), (3, 3, 8, 9), dict(padding=((0, 2), (1, 0))), "winograd"),
    ((2, 9, 11, 3), (5, 5, 3, 2), dict(padding="same", strides=2), "direct"),
    ((2, 8, 9, 1), (7, 7, 1, 2), dict(padding=3, dilation_rate=1), "direct"),
    ((2, 9, 8, 6), (3, 3, 1, 12), dict(groups=6, strides=2, padding="same"), "depthwise"),
    ((2, 9, 8, 4), (3, 3, 1, 4), dict(groups=4, dilation_rate=2, padding="same"), "depthwise"),
    ((2, 6, 5, 5), (1, 1, 5, 7), dict(), "pointwise"),
    ((2, 9, 8, 8), (3, 3, 8, 8), dict(strides=2, padding=1), "im2col"),
    ((2, 9, 8, 4), (2, 3, 2, 6), dict(groups=2, dilation_rate=(2, 1), padding=1), "im2col"),
    ((2, 8, 8, 1), (3, 3, 1, 32), dict(), "implicit/taps"),
    ((2, 11, 10, 3), (3, 3, 3, 16), dict(padding="same", strides=2), "implicit/taps"),
    ((2, 12, 9, 2), (3, 2, 2, 17), dict(padding=((2, 0), (1, 1)), dilation_rate=(2, 1)),
     "taps"),
    ((2, 8, 8, 1), (3, 3, 1, 12), dict(), "wide"),
    ((2, 12, 11, 1), (5, 5, 1, 6), dict(padding="same"), "wide"),
    ((2, 10, 9, 2), (3, 3, 2, 5), dict(padding="same", dilation_rate=2), "wide"),
    ((2, 7, 9, 1), (3, 2, 1, 4), dict(padding=((2, 0), (1, 1))), "wide"),
    ((2, 6, 7, 1), (1, 3, 1, 3), dict(padding="same"), "wide"),   # < 4 taps and filters
    ((2, 10, 10, 4), (3, 3, 4, 16), dict(), "implicit"),
    ((2, 11, 10, 4), (3, 3, 4, 16), dict(strides=(2, 3)), "implicit"),
]
IDS = [f"{plan}-{i}" for i, (*_, plan) in enumerate(CASES)]
PADDED = [(case, name) for case, name in zip(CASES, IDS)
          if case[2].get("padding", "valid") != "valid"]


def _arrays(rng, x_shape, k_shape, dtype):
    x = rng.standard_normal(x_shape).astype(dtype)
    kernel = rng.standard_normal(k_shape).astype(dtype)
    bias = rng.standard_normal(k_shape[3]).astype(dtype)
    return x, kernel, bias


@needs_numba
@pytest.mark.parametrize("x_shape, k_shape, kwargs, plan", CASES, ids=IDS)
def test_plan_is_the_planned_one(backend, x_shape, k_shape, kwargs, plan):
    forward, _, backward = plan.partition("/")     # "forward/backward" where they differ
    if backend != "auto":
        forward = backward = "numpy"
    assert conv_plan(x_shape, k_shape, **kwargs) == forward
    assert conv_plan(x_shape, k_shape, **kwargs, backward=True) == (backward or forward)
    # float64 never takes the float32 register kernels
    if forward == "implicit":
        assert conv_plan(x_shape, k_shape, **kwargs, dtype=np.float64) != "implicit"


@pytest.mark.parametrize("x_shape, k_shape, kwargs, plan", CASES, ids=IDS)
def test_float64_matches_reference_and_numpy_backend(rng, x_shape, k_shape, kwargs, plan):
    x, kernel, bias = _arrays(rng, x_shape, k_shape, np.float64)
    y = conv2d(x, kernel, bias, **kwargs)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, conv2d_ref(x, kernel, bias, **kwargs), rtol=1e-12,
                               atol=1e-12 * np.abs(y).max())
    dy = rng.standard_normal(y.shape)
    grads = conv2d_backward(dy, x, kernel, **kwargs)
    with accel.use_backend("numpy"):
        expected = conv2d_backward(dy, x, kernel, **kwargs)
    for ours, ref in zip(grads, expected):
        assert ours.dtype == np.float64 and ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())


@pytest.mark.parametrize("x_shape, k_shape, kwargs, plan", CASES, ids=IDS)
def test_gradients_finite_differences(rng, x_shape, k_shape, kwargs, plan):
    x, kernel, bias = _arrays(rng, x_shape, k_shape, np.float64)
    check_vjp(lambda x_, k_, b_: conv2d(x_, k_, b_, **kwargs),
              lambda g, x_, k_, b_: conv2d_backward(g, x_, k_, **kwargs),
              [x, kernel, bias], rng, n_dirs=2)


@pytest.mark.parametrize("x_shape, k_shape, kwargs, plan", CASES, ids=IDS)
def test_float32_stays_float32_and_close(rng, x_shape, k_shape, kwargs, plan):
    x, kernel, bias = _arrays(rng, x_shape, k_shape, np.float32)
    y = conv2d(x, kernel, bias, **kwargs)
    ref = conv2d_ref(x.astype(np.float64), kernel.astype(np.float64), bias, **kwargs)
    assert y.dtype == np.float32
    assert np.abs(y - ref).max() / np.abs(ref).max() < 2e-5
    grads = conv2d_backward(np.ones_like(y), x, kernel, **kwargs)
    assert all(g.dtype == np.float32 for g in grads)


@pytest.mark.parametrize("x_shape, k_shape, kwargs, plan", [c for c, _ in PADDED],
                         ids=[name for _, name in PADDED])
@pytest.mark.parametrize("mode", ["reflect", "circular"])
def test_padding_modes_pad_first(rng, x_shape, k_shape, kwargs, plan, mode):
    x, kernel, bias = _arrays(rng, x_shape, k_shape, np.float64)
    kwargs = dict(kwargs, padding_mode=mode)
    y = conv2d(x, kernel, bias, **kwargs)
    np.testing.assert_allclose(y, conv2d_ref(x, kernel, bias, **kwargs), rtol=1e-12,
                               atol=1e-12 * np.abs(y).max())
    dy = rng.standard_normal(y.shape)
    with accel.use_backend("numpy"):
        expected = conv2d_backward(dy, x, kernel, **kwargs)
    for ours, ref in zip(conv2d_backward(dy, x, kernel, **kwargs), expected):
        np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())


@pytest.mark.parametrize("x_shape, k_shape, kwargs, plan", CASES[::2], ids=IDS[::2])
def test_fused_relu_equals_relu_of_conv(rng, x_shape, k_shape, kwargs, plan):
    x, kernel, bias = _arrays(rng, x_shape, k_shape, np.float64)
    y = conv2d_relu(x, kernel, bias, **kwargs)
    assert (y >= 0).all() and (y == 0).any()
    np.testing.assert_allclose(y, np.maximum(conv2d_ref(x, kernel, bias, **kwargs), 0),
                               rtol=1e-12, atol=1e-12 * np.abs(y).max())


def test_channels_first_fast_path(rng):
    x = rng.standard_normal((2, 8, 9, 7))                     # NCHW
    kernel = rng.standard_normal((3, 3, 8, 8))
    y = conv2d(x, kernel, padding="same", data_format="channels_first")
    ref = conv2d_ref(x.transpose(0, 2, 3, 1), kernel, padding="same").transpose(0, 3, 1, 2)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-11)


# ------------------------------------------------------------------- Winograd's accuracy
@needs_numba
def test_winograd_float32_error_bound(backend, rng):
    """max |y - exact| / max |exact| < 2e-5 for float32 forward and both gradients, at a
    layer-like size (unit-variance input, Glorot-uniform kernel)."""
    if backend == "numpy":
        pytest.skip("the bound is for the Winograd path")
    n, hw, c = 2, 28, 64
    x = rng.standard_normal((n, hw, hw, c))
    limit = np.sqrt(6 / (9 * c + 9 * c))
    kernel = rng.uniform(-limit, limit, (3, 3, c, c))
    dy = rng.standard_normal((n, hw, hw, c))
    assert conv_plan(x.shape, kernel.shape, padding="same") == "winograd"
    exact = [conv2d(x, kernel, padding="same"), *conv2d_backward(dy, x, kernel, padding="same")]
    x32, k32, dy32 = (a.astype(np.float32) for a in (x, kernel, dy))
    approx = [conv2d(x32, k32, padding="same"), *conv2d_backward(dy32, x32, k32, padding="same")]
    for ours, ref in zip(approx[:3], exact[:3]):
        assert ours.dtype == np.float32
        assert np.abs(ours - ref).max() / np.abs(ref).max() < 2e-5


@pytest.mark.torch
def test_winograd_and_direct_match_torch(torch, rng):
    F = torch.nn.functional
    for x_shape, k_shape, pad in [((2, 12, 11, 8), (3, 3, 8, 16), 1),
                                  ((2, 15, 13, 3), (7, 7, 3, 2), 3),
                                  ((3, 14, 13, 1), (3, 3, 1, 32), 0),      # wide grid
                                  ((2, 12, 12, 1), (5, 5, 1, 6), 2),       # wide, padded
                                  ((2, 11, 10, 6), (5, 5, 6, 16), 0)]:     # cached im2col
        x, kernel, bias = _arrays(rng, x_shape, k_shape, np.float32)
        y = conv2d(x, kernel, bias, padding=pad)
        xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
        kt = torch.tensor(kernel.transpose(3, 2, 0, 1), requires_grad=True)
        yt = F.conv2d(xt, kt, torch.tensor(bias), padding=pad)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        yt.backward(torch.tensor(dy.transpose(0, 3, 1, 2)))
        dx, dk, _ = conv2d_backward(dy, x, kernel, padding=pad)
        for ours, theirs in [(y, yt.detach().numpy().transpose(0, 2, 3, 1)),
                             (dx, xt.grad.numpy().transpose(0, 2, 3, 1)),
                             (dk, kt.grad.numpy().transpose(2, 3, 1, 0))]:
            assert np.abs(ours - theirs).max() / np.abs(theirs).max() < 2e-5


# ----------------------------------------------------------------------------- pooling
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool_argmax_route_matches_numpy(rng, dtype):
    x = rng.permutation(2 * 7 * 9 * 3).astype(dtype).reshape(2, 7, 9, 3)
    y, argmax = ck.ops.pool.max_pool2d_with_argmax(x, 3, 2, "same")
    dy = rng.standard_normal(y.shape).astype(dtype)
    with accel.use_backend("numpy"):
        y_ref = ck.ops.max_pool2d(x, 3, 2, "same")
        dx_ref = ck.ops.max_pool2d_backward(dy, x, 3, 2, "same")
    np.testing.assert_array_equal(y, y_ref)
    assert y.dtype == dtype
    if argmax is None:
        assert not accel.enabled()
        return
    dx = ck.ops.pool.max_pool2d_backward_from_argmax(dy, argmax, x.shape)
    assert dx.dtype == dtype
    # overlapping windows add in another order: equal up to rounding
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-6 if dtype == np.float32 else 1e-14)


def test_dense_threaded_matches_numpy(rng):
    x = rng.standard_normal((300, 70))
    kernel = rng.standard_normal((70, 40))
    dy = rng.standard_normal((300, 40))
    with accel.use_backend("numpy"):
        expected = (ck.ops.dense(x, kernel), *ck.ops.dense_backward(dy, x, kernel))
    got = (ck.ops.dense(x, kernel), *ck.ops.dense_backward(dy, x, kernel))
    for ours, ref in zip(got, expected):
        np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)


def test_backend_switch_and_errors():
    assert accel.get_backend() in accel.BACKENDS
    with accel.use_backend("numpy"):
        assert accel.get_backend() == "numpy" and not accel.enabled()
        assert conv_plan((2, 9, 9, 8), (3, 3, 8, 8)) == "numpy"
    with pytest.raises(ck.errors.ConvkitError, match="set_backend: backend must be one of"):
        accel.set_backend("gpu")


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_wide_grid_with_padding_modes(rng, mode):
    """Other padding modes pad first, then take the zero-pad plan (the wide grid here) and
    fold the input gradient back through the padding's adjoint."""
    x, kernel, bias = _arrays(rng, (2, 9, 8, 1), (3, 3, 1, 12), np.float64)
    kwargs = dict(padding="same", padding_mode=mode)
    y = conv2d(x, kernel, bias, **kwargs)
    np.testing.assert_allclose(y, conv2d_ref(x, kernel, bias, **kwargs), rtol=1e-12,
                               atol=1e-12 * np.abs(y).max())
    check_vjp(lambda x_, k_, b_: conv2d(x_, k_, b_, **kwargs),
              lambda g, x_, k_, b_: conv2d_backward(g, x_, k_, **kwargs),
              [x, kernel, bias], rng, n_dirs=2)
