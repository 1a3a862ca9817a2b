"""Compiled depthwise / direct convolution, im2col / col2im and bias+ReLU against the naive
loops, finite differences and PyTorch."""
import numpy as np
import pytest

from convkit.fast import kernels as accel
from convkit.shapes import window_geometry
from tests.gradcheck import directional_check
from tests.ops_fast import _naive

pytestmark = pytest.mark.usefixtures("need_accel")

# (H, W, kernel, strides, padding, dilation)
CASES = [
    (7, 8, 3, 1, "same", 1),
    (9, 7, 3, 2, "same", 1),
    (8, 9, (3, 2), (2, 1), ((2, 1), (0, 1)), (1, 2)),
    (10, 8, 3, 3, "valid", 2),
    (6, 6, 1, 2, ((1, 0), (0, 1)), 1),
]


def geometry(case):
    h, w, kernel, strides, padding, dilation = case
    return window_geometry((h, w), kernel, strides, padding, dilation)


def tolerance(dtype):
    return dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dm", [1, 2])
@pytest.mark.parametrize("case", CASES)
def test_depthwise_matches_naive(case, dm, dtype, rng):
    geo = geometry(case)
    channels = 3
    x = rng.standard_normal((2, case[0], case[1], channels)).astype(dtype)
    k = rng.standard_normal((*geo.kernel, 1, channels * dm)).astype(dtype)
    b = rng.standard_normal(channels * dm).astype(dtype)
    y = accel.depthwise_conv2d_forward(x, k, b, geo, dm)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, _naive.conv(x, k, b, geo, groups=channels), **tolerance(dtype))
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx, dk, db = accel.depthwise_conv2d_backward(dy, x, k, geo, dm)
    assert dx.dtype == dk.dtype == db.dtype == dtype
    assert dk.shape == k.shape and db.shape == b.shape
    # the naive references for the gradients: adjoints through the window copy
    win = _naive.windows(x, geo)                               # (N, Ho, Wo, kh, kw, C)
    dk_ref = np.einsum("nhwabc,nhwcm->abcm", win,
                       dy.reshape(*dy.shape[:3], channels, dm)).reshape(k.shape)
    np.testing.assert_allclose(dk, dk_ref, **tolerance(dtype))
    np.testing.assert_allclose(db, dy.sum(axis=(0, 1, 2)), **tolerance(dtype))
    x64 = x.astype(np.float64)
    directional_check(lambda v: _naive.conv(v, k.astype(np.float64), None, geo, channels),
                      x64, dx.astype(np.float64), dy.astype(np.float64), rng,
                      rtol=1e-4 if dtype == np.float32 else 1e-6, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [(6, 9, 3, 1, "same", 1), (7, 8, 3, 1, "valid", 1),
                                  (9, 10, 3, 2, ((1, 1), (2, 0)), (2, 1))])
def test_depthwise_kernel_grad_vector_channels(case, dtype, rng):
    # 37 channels: the compiled loops run their vector body and their remainder; the kernel
    # gradient's two-pixel pass meets an even and an odd number of pixels per tap column
    geo = geometry(case)
    channels = 37
    x = rng.standard_normal((2, case[0], case[1], channels)).astype(dtype)
    k = rng.standard_normal((*geo.kernel, 1, channels)).astype(dtype)
    dy = rng.standard_normal((2, *geo.out_hw, channels)).astype(dtype)
    dx, dk, db = accel.depthwise_conv2d_backward(dy, x, k, geo, 1)
    win = _naive.windows(x, geo)                               # (N, Ho, Wo, kh, kw, C)
    dk_ref = np.einsum("nhwabc,nhwc->abc", win.astype(np.float64), dy.astype(np.float64))
    np.testing.assert_allclose(dk, dk_ref.reshape(k.shape), **tolerance(dtype))
    np.testing.assert_allclose(db, dy.astype(np.float64).sum(axis=(0, 1, 2)), **tolerance(dtype))
    directional_check(lambda v: _naive.conv(v, k.astype(np.float64), None, geo, channels),
                      x.astype(np.float64), dx.astype(np.float64), dy.astype(np.float64), rng,
                      rtol=1e-4 if dtype == np.float32 else 1e-6, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES + [(13, 15, 7, 1, "same", 1)])
def test_direct_conv_matches_naive(case, dtype, rng):
    geo = geometry(case)
    x = rng.standard_normal((2, case[0], case[1], 3)).astype(dtype)
    k = rng.standard_normal((*geo.kernel, 3, 2)).astype(dtype)
    b = rng.standard_normal(2).astype(dtype)
    y_ref = _naive.conv(x, k, b, geo)
    y = accel.conv2d_direct_forward(x, k, b, geo)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, y_ref, **tolerance(dtype))
    np.testing.assert_allclose(accel.conv2d_direct_forward(x, k, b, geo, relu=True),
                               np.maximum(y_ref, 0), **tolerance(dtype))
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx, dk, db = accel.conv2d_direct_backward(dy, x, k, geo)
    assert dx.dtype == dk.dtype == db.dtype == dtype
    win = _naive.windows(x, geo)
    np.testing.assert_allclose(dk, np.einsum("nhwabc,nhwf->abcf", win, dy), **tolerance(dtype))
    np.testing.assert_allclose(db, dy.sum(axis=(0, 1, 2)), **tolerance(dtype))
    if dtype == np.float64:
        directional_check(lambda v: _naive.conv(v, k, None, geo), x, dx, dy, rng)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_im2col_col2im(case, dtype, rng):
    geo = geometry(case)
    x = rng.standard_normal((2, case[0], case[1], 3)).astype(dtype)
    cols = accel.im2col(x, geo)
    kh, kw = geo.kernel
    expected = _naive.windows(x, geo).reshape(-1, kh * kw * 3)   # (N*Ho*Wo, kh*kw*C)
    assert cols.dtype == dtype and cols.flags.c_contiguous
    np.testing.assert_array_equal(cols, expected)
    # col2im is the adjoint of im2col: <im2col(x), c> == <x, col2im(c)>
    c = rng.standard_normal(cols.shape).astype(dtype)
    dx = accel.col2im(c, geo, x.shape)
    assert dx.dtype == dtype
    np.testing.assert_allclose(np.sum(cols.astype(np.float64) * c),
                               np.sum(x.astype(np.float64) * dx), rtol=1e-5)
    # and adds every column entry onto its own cell
    ones = accel.col2im(np.ones_like(cols), geo, x.shape)
    counts = accel.col2im(expected * 0 + 1, geo, x.shape)
    np.testing.assert_array_equal(ones, counts)


def test_im2col_col2im_out_buffers(rng):
    # a reused buffer is written and returned; a wrong one is refused by name and shapes
    geo = geometry(CASES[0])
    x = rng.standard_normal((2, 7, 8, 3))
    buf = np.full((2 * 7 * 8, 27), np.nan)
    assert accel.im2col(x, geo, out=buf) is buf
    np.testing.assert_array_equal(buf, accel.im2col(x, geo))
    dx = np.full(x.shape, np.nan)
    assert accel.col2im(buf, geo, x.shape, out=dx) is dx
    np.testing.assert_array_equal(dx, accel.col2im(buf, geo, x.shape))
    with pytest.raises(ValueError, match=r"im2col: out must be a C-contiguous float64 array "
                                         r"of shape \(112, 27\), got float32 \(112, 27\)"):
        accel.im2col(x, geo, out=buf.astype(np.float32))
    with pytest.raises(ValueError, match=r"col2im: out must be a C-contiguous float64 array "
                                         r"of shape \(2, 7, 8, 3\), got float64 \(2, 8, 7, 3\)"):
        accel.col2im(buf, geo, x.shape, out=np.empty((2, 8, 7, 3)))
    with pytest.raises(ValueError, match=r"col2im: out must be a C-contiguous"):
        accel.col2im(buf, geo, x.shape, out=np.empty((2, 7, 8, 6))[..., ::2])


def test_bias_act_in_place(rng):
    y = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    expected = np.maximum(y + b, 0)
    out = accel.bias_act_(y, b, relu=True)
    assert out is y
    np.testing.assert_array_equal(y, expected)
    y64 = rng.standard_normal((7, 3))
    np.testing.assert_array_equal(accel.bias_act_(y64.copy(), np.ones(3)), y64 + 1)
    with pytest.raises(ValueError, match=r"bias_act_rows: bias must have shape \(5,\) for 5 "
                                         r"channels, got \(4,\)"):
        accel.bias_act_rows(np.ones(4), False, 5, np.float32)
    with pytest.raises(ValueError, match=r"bias_act_ \(y shape \(7, 3\)\): bias must have"):
        accel.bias_act_(y64, np.ones(2))


@pytest.mark.torch
def test_depthwise_and_direct_match_torch(torch, rng):
    x = rng.standard_normal((2, 11, 12, 4)).astype(np.float32)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).requires_grad_(True)
    geo = window_geometry((11, 12), 3, 2, 1, 2)
    k = rng.standard_normal((3, 3, 1, 8)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    wt = torch.from_numpy(k.transpose(3, 2, 0, 1).copy()).requires_grad_(True)
    yt = torch.nn.functional.conv2d(xt, wt, torch.from_numpy(b), 2, 1, 2, groups=4)
    y = accel.depthwise_conv2d_forward(x, k, b, geo, 2)
    np.testing.assert_allclose(y, yt.permute(0, 2, 3, 1).detach().numpy(), rtol=1e-5, atol=1e-5)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dxt, dwt = torch.autograd.grad(yt, (xt, wt), torch.from_numpy(dy).permute(0, 3, 1, 2))
    dx, dk, _ = accel.depthwise_conv2d_backward(dy, x, k, geo, 2)
    np.testing.assert_allclose(dx, dxt.permute(0, 2, 3, 1).numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dk, dwt.permute(2, 3, 1, 0).numpy(), rtol=1e-4, atol=1e-4)

    geo = window_geometry((11, 12), 7, 1, "same")
    k = rng.standard_normal((7, 7, 4, 2)).astype(np.float32)
    wt = torch.from_numpy(k.transpose(3, 2, 0, 1).copy()).requires_grad_(True)
    yt = torch.nn.functional.conv2d(xt, wt, None, 1, 3)
    y = accel.conv2d_direct_forward(x, k, None, geo)
    np.testing.assert_allclose(y, yt.permute(0, 2, 3, 1).detach().numpy(), rtol=1e-4, atol=1e-4)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dxt, dwt = torch.autograd.grad(yt, (xt, wt), torch.from_numpy(dy).permute(0, 3, 1, 2))
    dx, dk, _ = accel.conv2d_direct_backward(dy, x, k, geo)
    np.testing.assert_allclose(dx, dxt.permute(0, 2, 3, 1).numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dk, dwt.permute(2, 3, 1, 0).numpy(), rtol=1e-4, atol=1e-3)


def test_conv_bad_arguments_raise_clear_errors():
    geo = window_geometry((5, 5), 3)
    x = np.zeros((1, 5, 5, 3), np.float32)
    with pytest.raises(ValueError, match=r"depthwise_conv2d_forward: kernel must be"):
        accel.depthwise_conv2d_forward(x, np.zeros((3, 3, 3, 3)), None, geo)
    with pytest.raises(ValueError, match=r"conv2d_direct_forward: kernel must be \(kh, kw, 3"):
        accel.conv2d_direct_forward(x, np.zeros((3, 3, 2, 1)), None, geo)
    with pytest.raises(ValueError, match="does not match the geometry's kernel size"):
        accel.conv2d_direct_forward(x, np.zeros((5, 5, 3, 1)), None, geo)
    with pytest.raises(ValueError, match="col2im: dcols must be"):
        accel.col2im(np.zeros((3, 3)), geo, x.shape)
    with pytest.raises(ValueError, match="must be float32 or float64"):
        accel.im2col(x.astype(np.int32), geo)
