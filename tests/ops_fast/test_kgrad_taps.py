"""The kernel and bias gradients of a convolution with few input channels, summed over tiles
of taps x filters in registers (``accel.implicit.kernel_grad_taps``, the generated
``_k_conv_kgrad_taps_regs``): a hand computed case with the ReLU mask, a naive loop
reference over shapes, strides, dilations and zero pads, thread ranges and chunks that
start inside an image, float64 central differences through ``conv2d_relu``, the planner's
hand-off (first layers only: no input gradient), bad arguments, and PyTorch where it is
installed."""
import numpy as np
import pytest

from convkit.errors import ShapeError
from convkit.ops import conv2d_backward
from convkit.fast.runtime import threads as _threads
from convkit.fast import kernels as accel
from convkit.fast.kernels import implicit
from convkit.ops.conv import conv2d, conv2d_relu, conv2d_relu_backward, conv_plan
from convkit.shapes import window_geometry
from tests.ops_fast._naive import check_central_differences

pytestmark = pytest.mark.usefixtures("need_accel")


def naive_kernel_grad(dy, x, kernel_shape, geo, relu_y=None):
    """Loops over output pixels and taps, float64: ``(dkernel, dbias)`` from the
    definition, ``dy`` masked by ``relu_y > 0`` when given."""
    kh, kw, c_in, filters = kernel_shape
    (sh, sw), (dh, dw) = geo.strides, geo.dilation
    (top, _), (left, _) = geo.pads
    n, h, w, _ = x.shape
    dz = dy.astype(np.float64)
    if relu_y is not None:
        dz = dz * (relu_y > 0)
    dk = np.zeros(kernel_shape)
    for oh in range(dy.shape[1]):
        for ow in range(dy.shape[2]):
            for a in range(kh):
                for b in range(kw):
                    ih, iw = oh * sh - top + a * dh, ow * sw - left + b * dw
                    if 0 <= ih < h and 0 <= iw < w:
                        dk[a, b] += x[:, ih, iw].T.astype(np.float64) @ dz[:, oh, ow]
    return dk, dz.sum(axis=(0, 1, 2))


def rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def test_hand_computed_with_the_relu_mask():
    # x[i, j] = 10 i + j on a 4x4 image, 3x3 valid -> 2x2 outputs, dy = 1 everywhere, but
    # only output (0, 1) has y > 0 for filter f < 8 and outputs (0, 1), (1, 0) for the rest:
    # dkernel[a, b] = x[a, 1 + b] (+ x[1 + a, b]), dbias = 1 (2)
    x = (10 * np.arange(4)[:, None] + np.arange(4)).astype(np.float32).reshape(1, 4, 4, 1)
    geo = window_geometry((4, 4), 3, 1, "valid")
    dy = np.ones((1, 2, 2, 16), np.float32)
    y = -np.ones((1, 2, 2, 16), np.float32)
    y[0, 0, 1] = 1.0
    y[0, 1, 0, 8:] = 2.0
    dk, db = implicit.kernel_grad_taps(dy, x, (3, 3, 1, 16), geo, y)
    window = x[0, 0:3, 1:4, 0]
    np.testing.assert_array_equal(dk[..., 0, :8], np.repeat(window[..., None], 8, 2))
    np.testing.assert_array_equal(dk[..., 0, 8:],
                                  np.repeat((window + x[0, 1:4, 0:3, 0])[..., None], 8, 2))
    np.testing.assert_array_equal(db, [1] * 8 + [2] * 8)
    # without the mask every output counts: dbias = 4, dkernel = the sum of four windows
    dk, db = implicit.kernel_grad_taps(dy, x, (3, 3, 1, 16), geo)
    four = sum(x[0, i:i + 3, j:j + 3, 0] for i in (0, 1) for j in (0, 1))
    np.testing.assert_array_equal(dk[..., 0, 0], four)
    np.testing.assert_array_equal(db, np.full(16, 4, np.float32))


# (x shape, kernel (kh, kw, filters), strides, padding, dilation): tap counts 9 (one tile),
# 6 and 25 (tiles cut), 27 (RGB), 45, strides, dilation, odd pads, one image, and a filter
# count the planner leaves to other paths (not whole tiles) but the function takes
CASES = [
    ((3, 11, 9, 1), (3, 3, 16), 1, "valid", 1),
    ((2, 10, 13, 1), (3, 3, 32), 1, "same", 1),
    ((2, 9, 10, 3), (3, 3, 32), 2, "same", 1),
    ((1, 12, 12, 2), (2, 3, 48), 1, ((1, 0), (2, 1)), 1),
    ((2, 11, 12, 1), (5, 5, 16), 1, "same", 1),
    ((2, 13, 11, 3), (5, 5, 16), (2, 1), "valid", 1),
    ((2, 12, 12, 3), (3, 3, 16), 1, "same", 2),
    ((3, 7, 7, 5), (3, 3, 16), 1, "valid", 1),
    ((2, 9, 8, 1), (3, 3, 20), 1, "same", 1),      # 20 filters: a tile and 4 more
]


@pytest.mark.parametrize("case", CASES, ids=[str(i) for i in range(len(CASES))])
@pytest.mark.parametrize("relu", [False, True])
def test_matches_naive_loops(case, relu, rng):
    shape, (kh, kw, filters), strides, padding, dilation = case
    x = rng.standard_normal(shape).astype(np.float32)
    kernel_shape = (kh, kw, shape[3], filters)
    assert implicit.kernel_grad_taps_applies(np.float32, kernel_shape) == (filters % 16 == 0)
    geo = window_geometry(shape[1:3], (kh, kw), strides, padding, dilation)
    dy = rng.standard_normal((shape[0], *geo.out_hw, filters)).astype(np.float32)
    y = rng.standard_normal(dy.shape).astype(np.float32) if relu else None
    dk, db = implicit.kernel_grad_taps(dy, x, kernel_shape, geo, y)
    want_dk, want_db = naive_kernel_grad(dy, x, kernel_shape, geo, y)
    assert dk.dtype == db.dtype == np.float32 and dk.shape == kernel_shape
    assert rel(dk, want_dk) < 1e-5
    assert rel(db, want_db) < 1e-5


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_thread_ranges_and_chunks_inside_images(threads, rng, monkeypatch):
    # 5 images of 9x7 outputs = 315 pixels: chunks of 16 and thread ranges start inside
    # images and rows
    monkeypatch.setattr(implicit, "TN_CHUNK", 16)
    monkeypatch.setattr(_threads, "num_threads", lambda: threads)
    x = rng.standard_normal((5, 11, 9, 1)).astype(np.float32)
    geo = window_geometry((11, 9), 3, 1, "valid")
    dy = rng.standard_normal((5, 9, 7, 32)).astype(np.float32)
    y = rng.standard_normal(dy.shape).astype(np.float32)
    dk, db = implicit.kernel_grad_taps(dy, x, (3, 3, 1, 32), geo, y)
    want_dk, want_db = naive_kernel_grad(dy, x, (3, 3, 1, 32), geo, y)
    assert rel(dk, want_dk) < 1e-5 and rel(db, want_db) < 1e-5


def test_accuracy_at_the_mnist_size(rng):
    # the MNIST convnet's first layer (128 images): float32 sums over 43,000 pixels per
    # thread against float64
    x = rng.random((128, 28, 28, 1)).astype(np.float32)
    geo = window_geometry((28, 28), 3, 1, "valid")
    dy = rng.standard_normal((128, 26, 26, 32)).astype(np.float32)
    y = rng.standard_normal(dy.shape).astype(np.float32)
    dk, db = implicit.kernel_grad_taps(dy, x, (3, 3, 1, 32), geo, y)
    dz = dy.astype(np.float64) * (y > 0)
    cols = np.stack([x[:, a:a + 26, b:b + 26, 0] for a in range(3) for b in range(3)], -1)
    want = cols.reshape(-1, 9).astype(np.float64).T @ dz.reshape(-1, 32)
    assert rel(dk.reshape(9, 32), want) < 1e-5
    assert rel(db, dz.sum(axis=(0, 1, 2))) < 1e-5


def test_central_differences_through_conv2d_relu(rng):
    # a first layer's gradients (no input gradient) of conv2d_relu, float32, against float64
    # central differences of the same function along random directions
    kwargs = dict(strides=1, padding="same")
    x, kernel, bias = (rng.standard_normal(shape).astype(np.float32)
                       for shape in ((2, 9, 11, 3), (3, 3, 3, 16), (16,)))
    y = conv2d_relu(x, kernel, bias, **kwargs)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, dk, db = conv2d_relu_backward(dy, x, kernel, y, input_grad=False, **kwargs)
    assert dx is None
    x64 = x.astype(np.float64)
    check_central_differences(lambda kernel, bias: conv2d_relu(x64, kernel, bias, **kwargs),
                              {"kernel": kernel, "bias": bias}, {"kernel": dk, "bias": db},
                              dy, rng)


def test_conv2d_backward_hand_off(rng, monkeypatch):
    calls = []
    taps = implicit.kernel_grad_taps
    monkeypatch.setattr(implicit, "kernel_grad_taps",
                        lambda *a, **k: calls.append(a[2]) or taps(*a, **k))
    x = rng.standard_normal((2, 10, 10, 3)).astype(np.float32)
    for size, filters, input_grad in ((3, 32, False), (3, 32, True), (3, 8, False),
                                      (5, 32, True)):
        kernel = rng.standard_normal((size, size, 3, filters)).astype(np.float32)
        dy = rng.standard_normal((2, 10, 10, filters)).astype(np.float32)
        got = conv2d_backward(dy, x, kernel, padding="same", input_grad=input_grad)
        geo = window_geometry((10, 10), size, 1, "same")
        want = naive_kernel_grad(dy, x, kernel.shape, geo)
        assert (got[0] is None) == (not input_grad)
        assert rel(got[1], want[0]) < 1e-5 and rel(got[2], want[1]) < 1e-5
        if input_grad:
            with accel.use_backend("numpy"):
                dx = conv2d_backward(dy.astype(np.float64), x.astype(np.float64), kernel,
                                     padding="same")[0]
            assert rel(got[0], dx) < 1e-5
    # without an input gradient; with one where the plan's gradients are the column
    # products (5x5: "implicit"), not where its other paths compute both in one pass (3x3:
    # "taps"); 8 filters would be half a register tile
    assert calls == [(3, 3, 3, 32), (5, 5, 3, 32)]
    assert conv_plan(x.shape, (5, 5, 3, 32), padding="same", backward=True) == "implicit"
    assert conv_plan(x.shape, (3, 3, 3, 32), padding="same", backward=True) == "taps"
    assert not implicit.kernel_grad_taps_applies(np.float32, (3, 3, 3, 8))
    assert not implicit.kernel_grad_taps_applies(np.float64, (3, 3, 3, 32))
    assert not implicit.kernel_grad_taps_applies(np.float32, (3, 3, 16, 32))   # channel tiles
    assert implicit.kernel_grad_taps_applies(np.float32, (5, 5, 6, 16))        # LeNet-5
    assert not implicit.kernel_grad_taps_applies(np.float32, (11, 11, 3, 32))  # 363 taps
    assert not implicit.kernel_grad_taps_applies(np.float32, (3, 3, 3, 32), groups=3)


def test_bad_arguments():
    x = np.zeros((1, 8, 8, 1), np.float32)
    geo = window_geometry((8, 8), 3, 1, "valid")
    dy = np.zeros((1, 6, 6, 16), np.float32)
    f = implicit.kernel_grad_taps
    with pytest.raises(ShapeError, match=r"kernel shape \(3, 3, 2, 16\) does not fit input "
                                         r"shape \(1, 8, 8, 1\)"):
        f(dy, x, (3, 3, 2, 16), geo)
    with pytest.raises(ShapeError, match=r"kernel_grad_taps: dy has shape \(1, 6, 5, 16\), "
                                         r"expected the output shape \(1, 6, 6, 16\)"):
        f(dy[:, :, :5], x, (3, 3, 1, 16), geo)
    with pytest.raises(ShapeError, match=r"relu_y has shape \(1, 5, 6, 16\), expected the "
                                         r"output shape \(1, 6, 6, 16\)"):
        f(dy, x, (3, 3, 1, 16), geo, dy[:, :5])
    with pytest.raises(ShapeError, match="kernel_grad_taps"):
        f(dy, x[0], (3, 3, 1, 16), geo)


def test_against_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((3, 20, 22, 3)).astype(np.float32)
    dy = rng.standard_normal((3, 10, 11, 32)).astype(np.float32)
    geo = window_geometry((20, 22), 3, 2, "same")
    dk, db = implicit.kernel_grad_taps(dy, x, (3, 3, 3, 32), geo)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2)
    kt = torch.zeros((32, 3, 3, 3), requires_grad=True)
    bt = torch.zeros(32, requires_grad=True)
    # 'same' at stride 2 on 20x22 pads (0, 1) rows and (0, 1) columns: pad by hand
    out = torch.nn.functional.conv2d(torch.nn.functional.pad(xt, (0, 1, 0, 1)), kt, bt,
                                     stride=2)
    out.backward(torch.from_numpy(dy).permute(0, 3, 1, 2))
    assert rel(dk, kt.grad.permute(2, 3, 1, 0).numpy()) < 1e-5
    assert rel(db, bt.grad.numpy()) < 1e-5
    assert conv2d(x, dk, None, strides=2, padding="same").shape == dy.shape
