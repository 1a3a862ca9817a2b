"""The stride-2 3x3 convolution by Winograd F(4, 2) along the width
(``accel.winograd_s2``): the transform matrices exactly, a hand computed case, a naive
loop reference over shapes, pads and tile cuts (bias, ReLU), many chunks crossing images,
``conv2d``'s hand-off, the planner's choice, bad arguments, and PyTorch where it is
installed. The gradients: ``test_winograd_s2_backward.py``."""
import numpy as np
import pytest

from convkit.errors import ShapeError
from convkit.ops import conv2d
from convkit.fast import kernels as accel
from convkit.fast.kernels import winograd_s2
from convkit.ops.conv import conv_plan, conv2d_relu

pytestmark = pytest.mark.usefixtures("need_accel")


def naive_s2(x, kernel, bias, pads):
    """Loop over output pixels and taps, float64: the definition of the convolution."""
    (top, bottom), (left, right) = pads
    n, h, w, _ = x.shape
    h_out = (h + top + bottom - 3) // 2 + 1
    w_out = (w + left + right - 3) // 2 + 1
    y = np.zeros((n, h_out, w_out, kernel.shape[3]))
    for oh in range(h_out):
        for ow in range(w_out):
            for r in range(3):
                for s in range(3):
                    ih, iw = 2 * oh - top + r, 2 * ow - left + s
                    if 0 <= ih < h and 0 <= iw < w:
                        y[:, oh, ow] += x[:, ih, iw].astype(np.float64) @ kernel[r, s]
    return y if bias is None else y + bias


def test_matrices_compute_the_two_tap_correlation_exactly():
    bt, g, at = winograd_s2.s2_matrices()
    rng = np.random.default_rng(0)
    for _ in range(5):
        e, taps = rng.integers(-9, 10, 5).astype(float), rng.integers(-9, 10, 2).astype(float)
        got = at @ ((g @ taps) * (bt @ e))
        want = [taps[0] * e[j] + taps[1] * e[j + 1] for j in range(4)]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert np.array_equal(bt, np.round(bt))           # integer input transform


def test_hand_computed():
    # ones over 5x5x16, a 3x3 kernel of ones, pad 1, stride 2: outputs at rows/cols 0, 2, 4
    # of the input; a corner window holds 2x2 input pixels, an edge 2x3, the middle 3x3,
    # times 16 channels, plus the bias 1. Three output columns: one tile, one column cut.
    x = np.ones((1, 5, 5, 16), np.float32)
    y = winograd_s2.conv3x3_s2_forward(x, np.ones((3, 3, 16, 16), np.float32),
                                       np.ones(16, np.float32), ((1, 1), (1, 1)))
    counts = np.array([[4, 6, 4], [6, 9, 6], [4, 6, 4]], np.float32)
    np.testing.assert_array_equal(y[0], np.repeat(counts[..., None] * 16 + 1, 16, 2))


# (N, H, W, C, F, pads)
CASES = [
    (2, 9, 11, 16, 32, ((1, 1), (1, 1))),
    (2, 8, 8, 16, 16, ((0, 1), (0, 1))),      # Keras 'same' on an even size
    (1, 7, 5, 24, 16, ((2, 0), (0, 3))),      # uneven pads, a cut tile
    (3, 10, 13, 32, 48, ((0, 0), (0, 0))),    # 'valid'
    (2, 4, 17, 16, 32, ((1, 1), (1, 1))),     # two output rows, tiles of 4 + 1 column
    (1, 3, 3, 16, 16, ((0, 0), (0, 0))),      # one output pixel
    (2, 12, 40, 20, 16, ((3, 2), (4, 1))),    # windows reading padding on both sides
]


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("case", CASES)
def test_matches_naive(case, relu, rng):
    n, h, w, c, filters, pads = case
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, c, filters)).astype(np.float32)
    bias = rng.standard_normal(filters).astype(np.float32)
    y = winograd_s2.conv3x3_s2_forward(x, kernel, bias, pads, relu)
    ref = naive_s2(x, kernel, bias, pads)
    if relu:
        ref = np.maximum(ref, 0)
        assert (y == 0).any()
    assert y.dtype == np.float32 and y.shape == ref.shape
    assert np.abs(y - ref).max() / np.abs(ref).max() < 1e-5


def test_many_chunks_across_images_and_threads(rng, monkeypatch):
    # the smallest chunk (8 output rows for an odd tile count) over images of 3 output rows:
    # chunks start and end inside images; every pixel written (np.empty output)
    monkeypatch.setattr(winograd_s2, "CHUNK_BYTES", 1)
    x = rng.standard_normal((7, 6, 26, 16)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 16, 32)).astype(np.float32)
    y = winograd_s2.conv3x3_s2_forward(x, kernel, None, ((1, 0), (1, 1)))
    ref = naive_s2(x, kernel, None, ((1, 0), (1, 1)))
    assert y.shape == (7, 3, 13, 32)
    assert np.abs(y - ref).max() / np.abs(ref).max() < 1e-5


def test_accuracy_at_the_benchmark_size(rng):
    # the documented bound: relative error well inside 1e-5 at 8 x 56x56x64 -> 128
    x = rng.standard_normal((8, 56, 56, 64)).astype(np.float32)
    kernel = (rng.uniform(-1, 1, (3, 3, 64, 128)) * np.sqrt(6 / (9 * 64 + 9 * 128))
              ).astype(np.float32)
    y = winograd_s2.conv3x3_s2_forward(x, kernel, None, ((1, 1), (1, 1)))
    ref = conv2d(x.astype(np.float64), kernel.astype(np.float64), strides=2, padding=1)
    assert np.abs(y - ref).max() / np.abs(ref).max() < 5e-6


def test_conv2d_takes_it(rng):
    # conv2d plans winograd_s2 and gives the NumPy backend's numbers (its gradients:
    # test_winograd_s2_backward.py)
    x = rng.standard_normal((2, 10, 14, 16)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 16, 16)).astype(np.float32)
    bias = rng.standard_normal(16).astype(np.float32)
    kwargs = dict(strides=2, padding="same")
    assert conv_plan(x.shape, kernel.shape, **kwargs) == "winograd_s2"
    y = conv2d(x, kernel, bias, **kwargs)
    with accel.use_backend("numpy"):
        ref = conv2d(x, kernel, bias, **kwargs)
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-5 * np.abs(ref).max())


def test_conv2d_relu_fused(rng):
    x = rng.standard_normal((2, 9, 9, 16)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 16, 32)).astype(np.float32)
    bias = rng.standard_normal(32).astype(np.float32)
    y = conv2d_relu(x, kernel, bias, strides=2, padding=1)
    ref = np.maximum(naive_s2(x, kernel, bias, ((1, 1), (1, 1))), 0)
    assert np.abs(y - ref).max() / np.abs(ref).max() < 1e-5 and (y == 0).any()


def test_planner():
    shape, kernel = (8, 56, 56, 64), (3, 3, 64, 128)
    assert conv_plan(shape, kernel, strides=2, padding=1) == "winograd_s2"
    assert conv_plan(shape, kernel, strides=2, padding="same") == "winograd_s2"
    assert conv_plan(shape, kernel, strides=2, padding=1, dtype=np.float64) == "im2col"
    assert conv_plan(shape, kernel, strides=(2, 1), padding=1) == "implicit"
    assert conv_plan(shape, kernel, strides=2, padding=1, dilation_rate=2) == "implicit"
    assert conv_plan(shape, (3, 3, 64, 120), strides=2, padding=1) == "im2col"   # 120 % 16
    assert conv_plan(shape, (3, 3, 8, 16), strides=2, padding=1) == "implicit"   # 24 per row
    assert conv_plan(shape, (1, 1, 8, 16), strides=2) == "im2col"     # a 1x1 kernel: C < 16
    # 4-wide tiles: 7 output columns in 8 (waste 1.14) yes, 5 in 8 or 13 in 16 no
    assert conv_plan((2, 14, 14, 16), (3, 3, 16, 16), strides=2, padding=1) == "winograd_s2"
    assert conv_plan((2, 10, 10, 16), (3, 3, 16, 16), strides=2, padding=1) == "implicit"
    assert conv_plan((2, 26, 26, 16), (3, 3, 16, 16), strides=2, padding=1) == "implicit"


def test_bad_arguments():
    x = np.zeros((1, 8, 8, 16), np.float32)
    k = np.zeros((3, 3, 16, 16), np.float32)
    f = winograd_s2.conv3x3_s2_forward
    with pytest.raises(ShapeError, match=r"conv3x3_s2_forward: expected a float32.*float64"):
        f(x.astype(np.float64), k, None, ((1, 1), (1, 1)))
    with pytest.raises(ShapeError, match=r"kernel must be \(3, 3, 16, F\).*\(3, 3, 8, 16\)"):
        f(x, k[:, :, :8], None, ((1, 1), (1, 1)))
    with pytest.raises(ShapeError, match="multiple of 16"):
        f(x, np.zeros((3, 3, 16, 12), np.float32), None, ((1, 1), (1, 1)))
    with pytest.raises(ShapeError, match="pads must be"):
        f(x, k, None, 1)
    with pytest.raises(ShapeError, match="must not be negative"):
        f(x, k, None, ((1, -1), (1, 1)))
    with pytest.raises(ShapeError, match="output size would be"):
        f(x[:, :2], k, None, ((0, 0), (0, 0)))
    with pytest.raises(ShapeError, match=r"bias must have shape \(16,\), got \(8,\)"):
        f(x, k, np.zeros(8, np.float32), ((1, 1), (1, 1)))


def test_against_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 20, 22, 32)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 32, 48)).astype(np.float32)
    bias = rng.standard_normal(48).astype(np.float32)
    y = winograd_s2.conv3x3_s2_forward(x, kernel, bias, ((1, 1), (1, 1)))
    ref = torch.nn.functional.conv2d(torch.from_numpy(x).permute(0, 3, 1, 2),
                                     torch.from_numpy(kernel).permute(3, 2, 0, 1),
                                     torch.from_numpy(bias), stride=2, padding=1)
    ref = ref.permute(0, 2, 3, 1).numpy()
    assert np.abs(y - ref).max() / np.abs(ref).max() < 1e-5
