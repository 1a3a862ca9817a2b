"""The gradients of the stride-2 3x3 convolution by the adjoints of the F(4, 2) transforms
(``accel.winograd_s2.conv3x3_s2_backward``): a hand computed case, a naive loop reference
over shapes, pads and tile cuts (ReLU mask, no input gradient), thread ranges and chunks
that start inside an image, the adjoint identity and central differences through
``conv2d``, the planner's hand-off, bad arguments, and PyTorch where it is installed."""
import numpy as np
import pytest

from convkit.errors import ShapeError
from convkit.ops import conv2d, conv2d_backward
from convkit.fast.runtime import threads as _threads
from convkit.fast import kernels as accel
from convkit.fast.kernels import winograd_s2
from convkit.ops.conv import conv2d_relu, conv2d_relu_backward, conv_plan
from tests.ops_fast._naive import check_central_differences

pytestmark = pytest.mark.usefixtures("need_accel")


def naive_s2_backward(dy, x, kernel, pads):
    """Loops over output pixels and taps, float64: ``(dx, dkernel, dbias)`` of the
    stride-2 3x3 convolution with zero ``pads``, straight from its definition."""
    (top, _), (left, _) = pads
    n, h, w, _ = x.shape
    dy = dy.astype(np.float64)
    dx = np.zeros(x.shape)
    dk = np.zeros(kernel.shape)
    for oh in range(dy.shape[1]):
        for ow in range(dy.shape[2]):
            for r in range(3):
                for s in range(3):
                    ih, iw = 2 * oh - top + r, 2 * ow - left + s
                    if 0 <= ih < h and 0 <= iw < w:
                        dx[:, ih, iw] += dy[:, oh, ow] @ kernel[r, s].T.astype(np.float64)
                        dk[r, s] += x[:, ih, iw].T.astype(np.float64) @ dy[:, oh, ow]
    return dx, dk, dy.sum(axis=(0, 1, 2))


def rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def test_hand_computed():
    # ones over 5x5x16, a kernel of ones, dy of ones, pad 1: the output rows (and columns)
    # read input rows -1..1, 1..3, 3..5, so input rows 0, 2, 4 lie under one window and
    # rows 1, 3 under two; dx = windows over the pixel x 16 filters. Kernel row 0 reads
    # rows -1, 1, 3 (two inside), row 1 rows 0, 2, 4 (three), row 2 rows 1, 3, 5 (two).
    x = np.ones((1, 5, 5, 16), np.float32)
    dx, dk, db = winograd_s2.conv3x3_s2_backward(np.ones((1, 3, 3, 16), np.float32), x,
                                                 np.ones((3, 3, 16, 16), np.float32),
                                                 ((1, 1), (1, 1)))
    cover = np.array([1, 2, 1, 2, 1], np.float32)
    np.testing.assert_array_equal(dx[0, ..., 0], np.outer(cover, cover) * 16)
    assert (dx == dx[..., :1]).all()
    taps = np.array([2, 3, 2], np.float32)
    np.testing.assert_array_equal(dk[..., 0, 0], np.outer(taps, taps))
    assert (dk == dk[..., :1, :1]).all()
    np.testing.assert_array_equal(db, np.full(16, 9, np.float32))


# (N, H, W, C, F, pads)
CASES = [
    (2, 9, 11, 16, 32, ((1, 1), (1, 1))),
    (2, 8, 8, 16, 16, ((0, 1), (0, 1))),      # Keras 'same' on an even size
    (1, 7, 5, 32, 16, ((2, 0), (0, 3))),      # uneven pads, a cut tile
    (3, 10, 13, 32, 48, ((0, 0), (0, 0))),    # 'valid': the last input row unread
    (2, 4, 17, 16, 32, ((1, 1), (1, 1))),     # two output rows, tiles of 4 + 1 column
    (1, 3, 3, 16, 16, ((0, 0), (0, 0))),      # one output pixel
    (2, 12, 40, 16, 16, ((3, 2), (4, 1))),    # windows reading padding on both sides
    (1, 14, 18, 16, 16, ((0, 0), (0, 0))),    # the last row and column unread, whole tiles
]


@pytest.mark.parametrize("case,relu", [(case, relu) for case in CASES
                                        for relu in (False, True)])
def test_gradients_match_naive(case, relu, rng):
    n, h, w, c, filters, pads = case
    kernel = rng.standard_normal((3, 3, c, filters)).astype(np.float32)
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    y = winograd_s2.conv3x3_s2_forward(x, kernel, None, pads, relu)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, dk, db = winograd_s2.conv3x3_s2_backward(dy, x, kernel, pads, y if relu else None)
    want = naive_s2_backward(dy * (y > 0) if relu else dy, x, kernel, pads)
    for got, ref in zip((dx, dk, db), want):
        assert got.dtype == np.float32 and got.shape == ref.shape
        assert rel(got, ref) < 1e-5
    none, dk2, db2 = winograd_s2.conv3x3_s2_backward(dy, x, kernel, pads,
                                                     y if relu else None, input_grad=False)
    assert none is None
    np.testing.assert_array_equal(dk2, dk)
    np.testing.assert_array_equal(db2, db)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_thread_ranges_and_chunks_inside_images(threads, rng, monkeypatch):
    # one chunk of 8 output rows at a time over images of 5 output rows, and thread ranges
    # that start inside an image: the input row shared with the previous range goes
    # through the side buffer; dx starts as np.empty, so every pixel must be written
    monkeypatch.setattr(winograd_s2, "CHUNK_BYTES", 1)
    monkeypatch.setattr(_threads, "num_threads", lambda: threads)
    for n in (1, 3):
        x = rng.standard_normal((n, 10, 26, 16)).astype(np.float32)
        kernel = rng.standard_normal((3, 3, 16, 32)).astype(np.float32)
        dy = rng.standard_normal((n, 5, 13, 32)).astype(np.float32)
        got = winograd_s2.conv3x3_s2_backward(dy, x, kernel, ((1, 0), (1, 1)))
        for g, ref in zip(got, naive_s2_backward(dy, x, kernel, ((1, 0), (1, 1)))):
            assert rel(g, ref) < 1e-5


def test_accuracy_at_the_benchmark_size(rng):
    x = rng.standard_normal((8, 56, 56, 64)).astype(np.float32)
    kernel = (rng.uniform(-1, 1, (3, 3, 64, 128)) * np.sqrt(6 / (9 * 64 + 9 * 128))
              ).astype(np.float32)
    dy = rng.standard_normal((8, 28, 28, 128)).astype(np.float32)
    dx, dk, db = winograd_s2.conv3x3_s2_backward(dy, x, kernel, ((1, 1), (1, 1)))
    ref = conv2d_backward(dy.astype(np.float64), x.astype(np.float64),
                          kernel.astype(np.float64), strides=2, padding=1)
    assert rel(dx, ref[0]) < 5e-6 and rel(dk, ref[1]) < 5e-6 and rel(db, ref[2]) < 1e-6


def test_adjoint_identity_and_central_differences(rng):
    # <conv(x), dy> = <x, dx> and = <kernel, dkernel> (no bias); then the float32
    # gradients of conv2d_relu (mask, bias) against float64 central differences of the
    # same function along random directions
    kwargs = dict(strides=2, padding="same")
    x, kernel, bias = (rng.standard_normal(shape).astype(np.float32)
                       for shape in ((2, 12, 14, 16), (3, 3, 16, 32), (32,)))
    assert conv_plan(x.shape, kernel.shape, **kwargs) == "winograd_s2"
    y = conv2d(x, kernel, None, **kwargs)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, dk, db = conv2d_backward(dy, x, kernel, **kwargs)
    inner = np.sum(y.astype(np.float64) * dy)
    np.testing.assert_allclose(np.sum(x.astype(np.float64) * dx), inner, rtol=1e-5)
    np.testing.assert_allclose(np.sum(kernel.astype(np.float64) * dk), inner, rtol=1e-5)
    np.testing.assert_allclose(db, dy.sum(axis=(0, 1, 2)), rtol=1e-5, atol=1e-5)

    y_relu = conv2d_relu(x, kernel, bias, **kwargs)
    dx, dk, db = conv2d_relu_backward(dy, x, kernel, y_relu, **kwargs)
    check_central_differences(lambda x, kernel, bias: conv2d_relu(x, kernel, bias, **kwargs),
                              {"x": x, "kernel": kernel, "bias": bias},
                              {"x": dx, "kernel": dk, "bias": db}, dy, rng)


def test_conv2d_backward_hands_off_and_falls_back(rng, monkeypatch):
    # 16 input channels: the adjoint path; 24: the forward still takes winograd_s2, the
    # gradients the im2col ones; reflect padding: the padded input, folded back after
    calls = []
    adjoint = winograd_s2.conv3x3_s2_backward
    monkeypatch.setattr(winograd_s2, "conv3x3_s2_backward",
                        lambda *a, **k: calls.append(a[1].shape) or adjoint(*a, **k))
    for c, mode in ((16, "zeros"), (24, "zeros"), (16, "reflect")):
        x = rng.standard_normal((2, 9, 14, c)).astype(np.float32)
        kernel = rng.standard_normal((3, 3, c, 16)).astype(np.float32)
        kwargs = dict(strides=2, padding=1, padding_mode=mode)
        assert conv_plan(x.shape, kernel.shape, strides=2, padding=1) == "winograd_s2"
        assert winograd_s2.backward_applies(kernel.shape, (2, 2), (1, 1), 1, np.float32) \
            == (c % 16 == 0)
        dy = rng.standard_normal(conv2d(x, kernel, **kwargs).shape).astype(np.float32)
        got = conv2d_backward(dy, x, kernel, **kwargs)
        with accel.use_backend("numpy"):
            want = conv2d_backward(dy.astype(np.float64), x.astype(np.float64),
                                   kernel.astype(np.float64), **kwargs)
        for g, ref in zip(got, want):
            assert g.dtype == np.float32 and rel(g, ref) < 1e-5
    # the adjoint path ran for 16 channels (reflect: on the input padded by one pixel)
    assert calls == [(2, 9, 14, 16), (2, 11, 16, 16)]


def test_bad_arguments():
    x = np.zeros((1, 8, 8, 16), np.float32)
    k = np.zeros((3, 3, 16, 16), np.float32)
    dy = np.zeros((1, 4, 4, 16), np.float32)
    f = winograd_s2.conv3x3_s2_backward
    pads = ((1, 1), (1, 1))
    with pytest.raises(ShapeError, match=r"conv3x3_s2_backward: expected a float32.*float64"):
        f(dy, x.astype(np.float64), k, pads)
    with pytest.raises(ShapeError, match=r"input channels must be a multiple of 16.*24\)"):
        f(dy, np.zeros((1, 8, 8, 24), np.float32), np.zeros((3, 3, 24, 16), np.float32),
          pads)
    with pytest.raises(ShapeError, match=r"kernel must be \(3, 3, 16, F\).*\(3, 3, 8, 16\)"):
        f(dy, x, k[:, :, :8], pads)
    with pytest.raises(ShapeError, match=r"dy must be float32 \(1, 4, 4, 16\).*\(1, 4, 3, 16\)"):
        f(dy[:, :, :3], x, k, pads)
    with pytest.raises(ShapeError, match=r"dy must be float32.*float64"):
        f(dy.astype(np.float64), x, k, pads)
    with pytest.raises(ShapeError, match=r"y must be float32 \(1, 4, 4, 16\) like dy.*\(1, 3, 4"):
        f(dy, x, k, pads, y=dy[:, :3])
    with pytest.raises(ShapeError, match="pads must be"):
        f(dy, x, k, 1)
    with pytest.raises(ShapeError, match="output size would be"):
        f(dy, x[:, :2], k, ((0, 0), (0, 0)))


def test_against_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 20, 22, 32)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 32, 48)).astype(np.float32)
    dy = rng.standard_normal((2, 10, 11, 48)).astype(np.float32)
    dx, dk, db = winograd_s2.conv3x3_s2_backward(dy, x, kernel, ((1, 1), (1, 1)))
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).requires_grad_()
    kt = torch.from_numpy(kernel).permute(3, 2, 0, 1).contiguous().requires_grad_()
    bt = torch.zeros(48, requires_grad=True)
    out = torch.nn.functional.conv2d(xt, kt, bt, stride=2, padding=1)
    out.backward(torch.from_numpy(dy).permute(0, 3, 1, 2))
    assert rel(dx, xt.grad.permute(0, 2, 3, 1).numpy()) < 1e-5
    assert rel(dk, kt.grad.permute(2, 3, 1, 0).numpy()) < 1e-5
    assert rel(db, bt.grad.numpy()) < 1e-5
