"""The implicit-product convolution forward with its output tile in registers
(``accel.implicit``, ``_conv_regs``): the generated module against its generator, the inner
window and the border pixels (hand computed and by brute force), hand computed cases for
both kernels (short last tiles, pixels outside the range untouched), the naive reference
over geometries that split between the two kernels, every variant (padding, ReLU), the
planner's choice and bad arguments."""
import numpy as np
import pytest

from convkit.errors import ShapeError
from convkit.ops import conv2d, conv2d_backward
from convkit.fast import kernels as accel
from convkit.fast.kernels import implicit
from convkit.fast._generated import conv_regs as _conv_regs
from convkit.fast.runtime.backend import jit
from convkit.fast._generated.conv_regs import LANES, ROWS
from convkit.ops.conv import conv2d_relu, conv_plan
from convkit.ops.reference import conv2d_ref
from convkit.shapes import window_geometry
from tests.ops_fast._generated import assert_current

pytestmark = pytest.mark.usefixtures("need_accel")


def test_generated_module_is_current():
    assert_current("gen_conv_regs", "conv_regs")


def test_hand_computed_same_padding():
    # ones over a 3x3 image, 3x3 kernel of ones, 'same': each output counts the taps inside
    # the image times 16 channels -- 4 at a corner, 6 on an edge, 9 in the middle -- plus the
    # bias 1. The middle pixel is the inner window (a short tile of one pixel), the other
    # eight one tile of the border kernel.
    geo = window_geometry((3, 3), 3, 1, "same")
    x = np.ones((1, 3, 3, 16), np.float32)
    y = accel.conv2d_implicit_forward(x, np.ones((3, 3, 16, LANES), np.float32),
                                      np.ones(LANES, np.float32), geo)
    counts = np.array([[4, 6, 4], [6, 9, 6], [4, 6, 4]], np.float32)
    np.testing.assert_array_equal(y[0], np.repeat(counts[..., None] * 16 + 1, LANES, 2))


# (N, H, W, C, kernel, strides, padding, dilation, filters)
GEOMETRIES = [
    (2, 6, 7, 16, (1, 1), 1, "valid", 1, 32),                   # a plain product
    (3, 5, 3, 16, (1, 1), 1, "valid", 1, 37),                   # ... 37 filters: zeros added
    (2, 9, 8, 16, (3, 3), 2, ((1, 1), (1, 1)), 1, 32),          # stride 2, pad 1
    (3, 7, 9, 24, (3, 3), 1, "same", 1, 16),
    (1, 10, 11, 17, (2, 3), (1, 2), ((1, 0), (0, 2)), (2, 1), 48),
    (2, 9, 10, 16, (5, 5), 1, "valid", 1, 16),                  # no border pixels
    (2, 5, 6, 16, (3, 3), 1, "same", 2, 37),                    # dilation 2: tap by tap
    (2, 9, 10, 16, (3, 2), 1, ((2, 2), (1, 3)), (1, 3), 32),    # column dilation 3
    (1, 3, 3, 16, (3, 3), 1, "valid", 1, 16),                   # one pixel: a short tile
    (2, 3, 4, 16, (5, 5), 1, "same", 1, 16),                    # no inner pixels
    # fewer than 16 channels: zero-padded first, then every pixel is an inner one
    (3, 9, 8, 1, (3, 3), 1, "valid", 1, 32),                    # a first layer, grey
    (2, 11, 10, 3, (3, 3), 2, "same", 1, 16),                   # RGB, stride 2, odd pads
    (2, 10, 9, 6, (5, 5), 1, "same", 1, 16),                    # LeNet-5's second layer
    (2, 9, 10, 3, (3, 3), 1, ((2, 0), (1, 3)), (2, 2), 20),     # dilated: tap by tap
    (1, 2, 3, 2, (5, 5), 1, "same", 1, 16),                     # padding wider than x
]


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("case", GEOMETRIES)
def test_matches_naive(case, relu, rng):
    n, h, w, c, ksize, strides, padding, dilation, filters = case
    geo = window_geometry((h, w), ksize, strides, padding, dilation)
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    kernel = rng.standard_normal((*ksize, c, filters)).astype(np.float32)
    bias = rng.standard_normal(filters).astype(np.float32)
    y = accel.conv2d_implicit_forward(x, kernel, bias, geo, relu)
    ref = conv2d_ref(x.astype(np.float64), kernel, bias, strides=strides,
                     padding=geo.pads, dilation_rate=dilation)
    if relu:
        ref = np.maximum(ref, 0)
        assert (y == 0).any()
    assert y.dtype == np.float32 and y.shape == ref.shape
    assert np.abs(y - ref).max() / np.abs(ref).max() < 1e-5


def test_without_bias_and_every_pixel_written(rng):
    # more pixels than one tile per thread, none left unwritten (np.empty output)
    geo = window_geometry((11, 13), 3, 1, "same")
    x = rng.standard_normal((3, 11, 13, 16)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 16, 32)).astype(np.float32)
    y = accel.conv2d_implicit_forward(x, kernel, None, geo)
    ref = conv2d_ref(x.astype(np.float64), kernel, padding="same")
    assert (x.shape[0] * 11 * 13) % ROWS != 0
    assert np.abs(y - ref).max() / np.abs(ref).max() < 1e-5


def _inner_out_naive(geo):
    # the output rows / columns none of whose taps falls outside the input, one by one
    spans = []
    for n, k, s, d, (before, _), out in zip(geo.in_hw, geo.kernel, geo.strides, geo.dilation,
                                            geo.pads, geo.out_hw):
        inside = [o for o in range(out)
                  if all(0 <= o * s - before + t * d < n for t in range(k))]
        spans.append((inside[0], inside[-1] + 1) if inside else None)
    return spans


def test_inner_window_hand_computed():
    # 56 inputs, 3x3, stride 2, pads 1: output 0 reads input -1, output 27 reads 53..55
    assert window_geometry((56, 56), 3, 2, ((1, 1), (1, 1))).inner_out == ((1, 28), (1, 28))
    # 'same' for stride 2 on 56 pads (0, 1): output 27 reads 54..56, 56 is padding
    assert window_geometry((56, 56), 3, 2, "same").inner_out == ((0, 27), (0, 27))
    # pads (5, 0) over 5 rows, 3 tall: outputs 5..7 read rows 0..4; pads (0, 5) across
    assert window_geometry((5, 5), 3, 1, ((5, 0), (0, 5))).inner_out == ((5, 8), (0, 3))
    # a 7x7 window never fits in 5x5: the window is empty (start == stop)
    (a, b), (c, d) = window_geometry((5, 5), 7, 1, ((3, 3), (3, 3))).inner_out
    assert a == b and c == d


def test_inner_window_matches_naive(rng):
    for _ in range(300):
        h, w = rng.integers(1, 12, 2)
        k = rng.integers(1, 5, 2)
        s = rng.integers(1, 4, 2)
        d = rng.integers(1, 3, 2)
        pads = tuple(tuple(int(v) for v in rng.integers(0, 4, 2)) for _ in range(2))
        if any(n + p[0] + p[1] < dd * (kk - 1) + 1 for n, p, kk, dd in zip((h, w), pads, k, d)):
            continue
        geo = window_geometry((int(h), int(w)), tuple(int(v) for v in k),
                              tuple(int(v) for v in s), pads, tuple(int(v) for v in d))
        for (start, stop), want in zip(geo.inner_out, _inner_out_naive(geo)):
            assert (start, stop) == want if want else start == stop, geo


def test_border_pixels_are_the_rest():
    # 2 images of 3x4 outputs, inner window rows 1:3, columns 1:3: the border is row 0,
    # and columns 0 and 3 of rows 1 and 2
    rows = implicit._border_pixels(2, (3, 4), ((1, 3), (1, 3)))
    np.testing.assert_array_equal(rows, [0, 1, 2, 3, 4, 7, 8, 11, 12, 13, 14, 15, 16, 19,
                                         20, 23])
    assert not rows.flags.writeable
    assert implicit._border_pixels(1, (2, 2), ((0, 2), (0, 2))).size == 0


def _forward_kernel(padded, relu=False):
    name = "_k_conv_fwd_regs" + ("_pad" if padded else "") + ("_relu" if relu else "")
    return jit(getattr(_conv_regs, name), "test", fastmath=implicit.REGISTER_FASTMATH,
               slp=True)


def test_inner_kernel_hand_computed():
    # image n of ones scaled by (n - 1), 3x3 valid over 5x5 (3x3 outputs), kernel of ones,
    # 16 channels, bias 1: each output holds 144 * (n - 1) + 1. The inner window is every
    # output; of its 27 pixels (3 images), 3:14 are asked for: a tile of 8, then a short
    # tile of 3 that repeats its last pixel. The others keep NaN; ReLU zeroes image 0.
    x = np.ones((3, 5, 5, 16), np.float32) * (np.arange(3, dtype=np.float32)[:, None, None,
                                                                             None] - 1)
    w2 = np.ones((144, 16), np.float32)
    for relu in (False, True):
        y = np.full((27, 16), np.nan, np.float32)
        _forward_kernel(False, relu)(x, w2, np.ones(16, np.float32), 3, 3, 1, 1, 1, 1, 0, 0,
                                     3, 3, y, 0, 3, 0, 3, 3, 14)
        want = 144 * (np.arange(27) // 9 - 1.0) + 1
        if relu:
            want = np.maximum(want, 0)
        np.testing.assert_array_equal(y[3:14], np.repeat(want[3:14, None], 16, 1))
        assert np.isnan(y[:3]).all() and np.isnan(y[14:]).all()


def test_border_kernel_hand_computed():
    # ones over a 3x3 image, 3x3 kernel of ones, pads 1 (3x3 outputs), 16 channels, no
    # bias: a corner counts 4 taps, an edge 6, the middle 9 (times 16). Pixels [8, 0, 4] of
    # the list are asked for: one short tile. The rest keep NaN.
    x = np.ones((1, 3, 3, 16), np.float32)
    y = np.full((9, 16), np.nan, np.float32)
    pixels = np.array([5, 8, 0, 4, 2])
    _forward_kernel(True)(x, np.ones((144, 16), np.float32), np.zeros(16, np.float32),
                          np.zeros(16, np.float32), 3, 3, 1, 1, 1, 1, 1, 1, 3, 3, y, pixels,
                          1, 4)
    np.testing.assert_array_equal(y[[8, 0, 4]], np.repeat([[64.0], [64.0], [144.0]], 16, 1))
    assert np.isnan(np.delete(y, [8, 0, 4], axis=0)).all()


def test_kernel_grad_hand_computed():
    # x of ones, 3x3 kernel, pads 1 over a 4x4 image (4x4 outputs), dy of ones: the
    # gradient of tap (a, b) counts the outputs whose tap (a, b) falls inside the image --
    # 3 rows x 3 columns for a corner tap, 3 x 4 for an edge tap, 4 x 4 for the middle one.
    # The inner window is outputs 1:3 x 1:3 (kernel), the 12 others are gathered.
    geo = window_geometry((4, 4), 3, 1, ((1, 1), (1, 1)))
    assert geo.inner_out == ((1, 3), (1, 3))
    out = np.full((9 * 8, 16), 0.5, np.float32)              # added to
    implicit.kernel_grad_add(np.ones((1, 4, 4, 8), np.float32), np.ones((16, 16), np.float32),
                             geo, out)
    counts = np.array([[9, 12, 9], [12, 16, 12], [9, 12, 9]], np.float32).ravel()
    np.testing.assert_array_equal(out, np.repeat(counts, 8)[:, None] * np.ones(16) + 0.5)


# (N, H, W, C, kernel, strides, padding, dilation, filters)
KGRAD_GEOMETRIES = [
    (2, 9, 8, 16, (3, 3), 2, ((1, 1), (1, 1)), 1, 32),          # stride 2, pad 1
    (3, 7, 9, 24, (3, 3), 1, "same", 1, 16),
    (1, 10, 11, 8, (2, 3), (1, 2), ((1, 0), (0, 2)), (2, 1), 48),
    (2, 9, 10, 16, (5, 5), 1, "valid", 1, 16),                  # no border pixels
    (2, 9, 10, 16, (3, 2), 1, ((2, 2), (1, 3)), (1, 3), 32),    # column dilation 3
    (2, 3, 4, 16, (5, 5), 1, "same", 1, 16),                    # no inner pixels
    (5, 30, 31, 8, (3, 3), 1, "same", 1, 16),                   # several 96-pixel chunks
]


@pytest.mark.parametrize("case", KGRAD_GEOMETRIES)
def test_kernel_grad_matches_float64(case, rng):
    n, h, w, c, ksize, strides, padding, dilation, filters = case
    geo = window_geometry((h, w), ksize, strides, padding, dilation)
    assert implicit.kernel_grad_applies(np.float32, c, filters)
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    dy = rng.standard_normal((n * geo.out_hw[0] * geo.out_hw[1], filters)).astype(np.float32)
    start = rng.standard_normal((ksize[0] * ksize[1] * c, filters)).astype(np.float32)
    out = start.copy()
    implicit.kernel_grad_add(x, dy, geo, out)
    cols = accel.im2col(x.astype(np.float64), geo)
    want = start + cols.T @ dy
    assert np.abs(out - want).max() / np.abs(want).max() < 1e-5


def test_kernel_grad_applies_to_whole_tiles_only():
    assert implicit.kernel_grad_applies(np.float32, 64, 128)
    assert not implicit.kernel_grad_applies(np.float64, 64, 128)
    assert not implicit.kernel_grad_applies(np.float32, 12, 128)     # C % 8
    assert not implicit.kernel_grad_applies(np.float32, 64, 40)      # F % 16


def test_border_taps_hand_computed():
    # 1 image, 3x3 input, 2x2 kernel, pads 1 top/left (3x3 outputs): the inner window is
    # outputs 1:3 x 1:3, the border rows 0, 1, 2, 3, 6. Output 0 reads input (-1, -1),
    # (-1, 0), (0, -1), (0, 0): only the last is inside (input pixel 0).
    geo = window_geometry((3, 3), 2, 1, ((1, 0), (1, 0)))
    rows, taps, inside = implicit._border_taps(1, geo)
    np.testing.assert_array_equal(rows, [0, 1, 2, 3, 6])
    np.testing.assert_array_equal(inside[0], [False, False, False, True])
    assert taps[0, 3] == 0
    np.testing.assert_array_equal(inside[1], [False, False, True, True])    # output (0, 1)
    np.testing.assert_array_equal(taps[1, 2:], [0, 1])
    np.testing.assert_array_equal(inside[4], [False, True, False, True])     # output (2, 0)
    np.testing.assert_array_equal(taps[4][inside[4]], [3, 6])
    assert ((taps >= 0) & (taps < 9)).all() and not taps.flags.writeable


def test_planner_takes_it_for_float32_only():
    shape, kernel = (8, 56, 56, 64), (3, 3, 64, 128)
    assert conv_plan(shape, kernel, strides=2, padding=1) == "winograd_s2"
    assert conv_plan(shape, kernel, strides=2, padding=1, dilation_rate=2) == "implicit"
    assert conv_plan(shape, (5, 5, 64, 128), strides=2, padding=1) == "implicit"
    assert conv_plan(shape, kernel, strides=2, padding=1, dtype=np.float64) == "im2col"
    assert conv_plan(shape, (3, 3, 64, 120), strides=2, padding=1) == "im2col"   # 120 % 16
    assert conv_plan(shape, (3, 3, 8, 16), strides=2, padding=1) == "implicit"   # 24 per row
    assert conv_plan(shape, (1, 1, 8, 16), strides=2) == "im2col"     # a 1x1 kernel: C < 16
    assert conv_plan(shape, (3, 3, 64, 128), padding=1) == "winograd"
    assert conv_plan(shape, (1, 1, 64, 128)) == "pointwise"    # its forward: this kernel
    assert implicit.applies((1, 1, 64, 128), 1, np.float32)
    assert not implicit.applies((1, 1, 64, 128), 2, np.float32)


def test_few_channels_pad_first(rng, monkeypatch):
    # an input of fewer than MIN_CHANNELS channels takes no border kernel: it is padded
    # first, and every output pixel goes to the inner kernel
    calls = []
    real = implicit._border_pixels
    monkeypatch.setattr(implicit, "_border_pixels",
                        lambda *args: calls.append(args[2]) or real(*args))
    geo = window_geometry((7, 6), 3, 1, "same")
    for c, border in ((3, False), (implicit.MIN_CHANNELS, True)):
        calls.clear()
        x = rng.standard_normal((2, 7, 6, c)).astype(np.float32)
        kernel = rng.standard_normal((3, 3, c, 16)).astype(np.float32)
        y = accel.conv2d_implicit_forward(x, kernel, None, geo)
        ref = conv2d_ref(x.astype(np.float64), kernel, padding="same")
        assert np.abs(y - ref).max() / np.abs(ref).max() < 1e-5
        assert calls == ([((1, 6), (1, 5))] if border else [((0, 7), (0, 6))])


def test_applies_by_contiguous_run():
    assert implicit.applies((3, 3, 1, 32), 1, np.float32)               # 3 values a row
    assert not implicit.applies((3, 2, 1, 32), 1, np.float32)           # 2
    assert implicit.applies((3, 3, 3, 16), 1, np.float32, dilation_w=2)  # 3 per tap
    assert not implicit.applies((3, 3, 2, 16), 1, np.float32, dilation_w=2)
    assert not implicit.applies((1, 1, 15, 16), 1, np.float32)          # 1x1: C >= 16
    assert not implicit.applies((3, 3, 3, 24), 1, np.float32)           # 24 % 16
    assert not implicit.applies((3, 3, 3, 16), 1, np.float64)


def test_planner_winograd_by_channel_pairs():
    # where the register kernel applies, Winograd's forward needs C * F >= 4096 and its
    # gradients >= 1024
    for shape, kernel, forward, backward in [
            ((8, 56, 56, 64), (3, 3, 64, 64), "winograd", "winograd"),
            ((8, 56, 56, 32), (3, 3, 32, 64), "implicit", "winograd"),
            ((32, 28, 28, 32), (3, 3, 32, 32), "implicit", "winograd"),
            ((128, 14, 14, 16), (3, 3, 16, 32), "implicit", "implicit"),
            ((8, 16, 16, 16), (3, 3, 16, 24), "winograd", "winograd")]:   # 24 % 16
        assert conv_plan(shape, kernel, padding="same") == forward
        assert conv_plan(shape, kernel, padding="same", backward=True) == backward
    assert conv_plan((8, 56, 56, 64), (3, 3, 64, 32), padding="same",
                     dtype=np.float64) == "winograd"
    # LeNet-5's layers: 5x5 over 6 channels to 16 (the first's 6 filters are not a tile)
    assert conv_plan((128, 14, 14, 6), (5, 5, 6, 16)) == "implicit"
    assert conv_plan((128, 28, 28, 1), (5, 5, 1, 6), padding="same") == "wide"


@pytest.mark.parametrize("kwargs, ksize", [(dict(strides=2, padding="same"), 3),
                                           (dict(padding="valid"), 1),
                                           (dict(padding=1, padding_mode="reflect"), 3)])
def test_conv2d_through_it(rng, kwargs, ksize):
    # conv2d's float32 forward on this path (plain and fused ReLU, a padding mode that pads
    # first), its gradients from the im2col plan, all against the float64 reference
    x = rng.standard_normal((2, 9, 8, 16)).astype(np.float32)
    kernel = rng.standard_normal((ksize, ksize, 16, 32)).astype(np.float32)
    bias = rng.standard_normal(32).astype(np.float32)
    ref = conv2d_ref(x.astype(np.float64), kernel, bias, **kwargs)
    for y, want in ((conv2d(x, kernel, bias, **kwargs), ref),
                    (conv2d_relu(x, kernel, bias, **kwargs), np.maximum(ref, 0))):
        assert y.dtype == np.float32
        assert np.abs(y - want).max() / np.abs(want).max() < 1e-5
    dy = rng.standard_normal(ref.shape).astype(np.float32)
    grads = conv2d_backward(dy, x, kernel, **kwargs)
    with accel.use_backend("numpy"):
        expected = conv2d_backward(dy.astype(np.float64), x.astype(np.float64),
                                   kernel.astype(np.float64), **kwargs)
    for ours, want in zip(grads, expected):
        assert np.abs(ours - want).max() / np.abs(want).max() < 1e-5


def test_bad_arguments_name_the_function():
    geo = window_geometry((5, 5), 3, 1, "valid")
    x = np.zeros((1, 5, 5, 16), np.float32)
    with pytest.raises(ShapeError, match=r"conv2d_implicit_forward: kernel shape \(3, 3, 8, "
                                         r"16\).*input shape \(1, 5, 5, 16\)"):
        accel.conv2d_implicit_forward(x, np.zeros((3, 3, 8, 16)), None, geo)
    with pytest.raises(ShapeError, match=r"conv2d_implicit_forward: bias must have shape "
                                         r"\(16,\), got \(3,\)"):
        accel.conv2d_implicit_forward(x, np.zeros((3, 3, 16, 16)), np.zeros(3), geo)
    with pytest.raises(ShapeError, match="conv2d_implicit_forward: input shape"):
        accel.conv2d_implicit_forward(np.zeros((1, 6, 5, 16)), np.zeros((3, 3, 16, 16)),
                                      None, geo)


def test_products_hand_computed():
    # a = rows of ones, b = ones: every entry of a @ b counts K; a^T @ b counts the rows, added
    # to what out held
    a = np.ones((9, 8), np.float32)                 # 9 rows: one tile of 8 and one in the tail
    b = np.ones((8, 16), np.float32)
    out = np.full((9, 16), np.nan, np.float32)
    implicit.matmul_rows(a, b, out)
    np.testing.assert_array_equal(out, np.full((9, 16), 8, np.float32))
    acc = np.ones((8, 16), np.float32)
    implicit.matmul_tn_add(a, np.ones((9, 16), np.float32), acc)
    np.testing.assert_array_equal(acc, np.full((8, 16), 10, np.float32))


def _plain_kernel(relu):
    name = "_k_gemm_regs_relu" if relu else "_k_gemm_regs"
    return jit(getattr(_conv_regs, name), "test", fastmath=implicit.REGISTER_FASTMATH,
               slp=True)


def test_plain_kernel_hand_computed():
    # rows of ones (row r scaled by r - 5) @ ones + bias 1: row r holds 8 * (r - 5) + 1,
    # negative rows are 0 after ReLU. Rows 2:13 are written: one tile of 8, then 3 single
    # rows; rows outside lo:hi and the 4 columns past the last multiple of 16 keep NaN.
    a = np.ones((15, 8), np.float32) * (np.arange(15, dtype=np.float32)[:, None] - 5)
    b = np.ones((8, 20), np.float32)
    bias = np.ones(20, np.float32)
    for relu in (False, True):
        out = np.full((15, 20), np.nan, np.float32)
        _plain_kernel(relu)(a, b, bias, out, 2, 13)
        want = 8 * (np.arange(2, 13, dtype=np.float32) - 5) + 1
        if relu:
            want = np.maximum(want, 0)
        np.testing.assert_array_equal(out[2:13, :16], np.repeat(want[:, None], 16, 1))
        assert np.isnan(out[:2]).all() and np.isnan(out[13:]).all()
        assert np.isnan(out[:, 16:]).all()


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("m, k, n", [(1, 3, 16), (29, 64, 48), (203, 128, 64)])
def test_plain_kernel_matches_float64(rng, m, k, n, relu):
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    out = np.empty((m, n), np.float32)
    _plain_kernel(relu)(a, b, bias, out, 0, m)
    want = a.astype(np.float64) @ b + bias
    if relu:
        want = np.maximum(want, 0)
    assert np.abs(out - want).max() / np.abs(want).max() < 1e-5


@pytest.mark.parametrize("m, k, n", [(1, 16, 16), (37, 24, 48), (300, 64, 128),
                                     (205, 576, 32)])
def test_products_match_float64(rng, m, k, n):
    assert implicit.products_apply(np.float32, k, n)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    out = np.empty((m, n), np.float32)
    implicit.matmul_rows(a, b, out)
    want = a.astype(np.float64) @ b
    assert np.abs(out - want).max() / np.abs(want).max() < 1e-5
    dy = rng.standard_normal((m, n)).astype(np.float32)
    start = rng.standard_normal((k, n)).astype(np.float32)
    acc = start.copy()
    implicit.matmul_tn_add(a, dy, acc)            # m > TN_CHUNK: several chunks
    want = start + a.T.astype(np.float64) @ dy
    assert np.abs(acc - want).max() / np.abs(want).max() < 1e-5


def test_products_apply_only_to_whole_float32_tiles():
    assert implicit.products_apply(np.float32, 64, 128)
    assert not implicit.products_apply(np.float64, 64, 128)
    assert not implicit.products_apply(np.float32, 60, 128)     # K % 8
    assert not implicit.products_apply(np.float32, 64, 120)     # N % 16


def test_tap_table_variant_hand_computed():
    # a 2x2 kernel over one channel, 3x3 input, 16 filters: filter f weighs the taps
    # (f, 1, 0, 0), so pixel (i, j) of filter f is f * x[i, j] + x[i, j + 1] + bias
    x = np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1)
    k = np.zeros((2, 2, 1, 16), np.float32)
    k[0, 0, 0] = np.arange(16)
    k[0, 1, 0] = 1.0
    bias = np.full(16, 0.5, np.float32)
    y = np.full((4, 16), -7.0, np.float32)
    kernel = jit(_conv_regs._k_conv_fwd_regs_taps, "test", fastmath=implicit.REGISTER_FASTMATH,
                 slp=True)
    kernel(x, k.reshape(4, 16), bias, 2, 2, 1, 1, 1, 1, 0, 0, 2, 2, y, 0, 2, 0, 2, 1, 3)
    f = np.arange(16)
    np.testing.assert_array_equal(y[1], f * 1 + 2 + 0.5)        # pixel (0, 1): x 1 and 2
    np.testing.assert_array_equal(y[2], f * 3 + 4 + 0.5)        # pixel (1, 0): x 3 and 4
    np.testing.assert_array_equal(y[[0, 3]], -7.0)              # outside lo:hi untouched


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("c_in,k,stride,dilation", [(1, 3, 1, 1), (3, 7, 1, 1), (2, 3, 2, 1),
                                                    (1, 3, 1, 2), (5, 2, (1, 2), (2, 1))])
def test_tap_table_variant_equals_the_run_kernel(rng, relu, c_in, k, stride, dilation):
    # the same sums in the same order: equal bit for bit, for the pixels lo:hi asked for
    x = rng.standard_normal((2, 13, 12, c_in)).astype(np.float32)
    kernel = rng.standard_normal((k, k, c_in, 32)).astype(np.float32)
    bias = rng.standard_normal(32).astype(np.float32)
    geo = window_geometry((13, 12), k, stride, "valid", dilation)
    (kh, kw), (sh, sw), (dh, dw) = geo.kernel, geo.strides, geo.dilation
    h_out, w_out = geo.out_hw
    suffix = "_relu" if relu else ""
    outs = []
    for name in ("_k_conv_fwd_regs_taps" + suffix, "_k_conv_fwd_regs" + suffix):
        fn = jit(getattr(_conv_regs, name), "test", fastmath=implicit.REGISTER_FASTMATH,
                 slp=True)
        y = np.full((2 * h_out * w_out, 32), np.nan, np.float32)
        fn(x, kernel.reshape(-1, 32), bias, kh, kw, sh, sw, dh, dw, 0, 0, h_out, w_out, y,
           0, h_out, 0, w_out, 3, 2 * h_out * w_out - 2)
        outs.append(y)
    np.testing.assert_array_equal(outs[0], outs[1])
    want = conv2d_ref(x, kernel, bias, strides=stride, padding="valid",
                      dilation_rate=dilation).reshape(-1, 32)
    if relu:
        want = np.maximum(want, 0)
    np.testing.assert_allclose(outs[0][3:-2], want[3:-2], rtol=1e-4, atol=1e-4)


def test_short_runs_take_the_tap_table_variant():
    from convkit.fast.kernels import tiles
    assert tiles.run_length(3, 1, 1) == 3 and tiles.run_length(3, 5, 2) == 5
    assert tiles.run_length(3, 16, 1) <= tiles.TAPS_MAX_SPAN < tiles.run_length(3, 32, 1)
    # the planner's rule is the same function (tiles' name may hold its compiled form)
    assert getattr(tiles.run_length, "py_func", tiles.run_length) is implicit.run_length


@pytest.mark.parametrize("name", ["_k_conv_fwd_regs", "_k_conv_fwd_regs_relu",
                                  "_k_conv_fwd_regs_taps", "_k_conv_fwd_regs_taps_relu"])
@pytest.mark.parametrize("filters", [32, 64, 48])
def test_wide_twins_equal_the_narrow_kernels(rng, name, filters):
    # 32 filters per tile, the same sums: equal bit for bit on the filters 0:F - F % 32
    # they take (the rest of a 48 is left alone: callers use them for multiples of 32)
    x = rng.standard_normal((2, 9, 11, 5)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 5, filters)).astype(np.float32)
    bias = rng.standard_normal(filters).astype(np.float32)
    outs = []
    for suffix in ("", "_wide"):
        fn = jit(getattr(_conv_regs, name + suffix), "test",
                 fastmath=implicit.REGISTER_FASTMATH, slp=True)
        y = np.full((2 * 7 * 9, filters), np.nan, np.float32)
        fn(x, kernel.reshape(-1, filters), bias, 3, 3, 1, 1, 1, 1, 0, 0, 7, 9, y, 0, 7, 0, 9,
           2, 2 * 7 * 9 - 3)
        outs.append(y)
    covered = filters - filters % 32
    np.testing.assert_array_equal(outs[1][:, :covered], outs[0][:, :covered])
    assert np.isnan(outs[1][:, covered:]).all()


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("m", [1, 7, 8, 25, 67])
def test_wide_gemm_twin_equals_the_narrow_one(rng, relu, m):
    a = rng.standard_normal((m, 19)).astype(np.float32)
    b = rng.standard_normal((19, 64)).astype(np.float32)
    bias = rng.standard_normal(64).astype(np.float32)
    outs = []
    for suffix in ("", "_wide"):
        fn = jit(getattr(_conv_regs, "_k_gemm_regs" + ("_relu" if relu else "") + suffix),
                 "test", fastmath=implicit.REGISTER_FASTMATH, slp=True)
        out = np.full((m, 64), np.nan, np.float32)
        fn(a, b, bias, out, 0, m)
        outs.append(out)
    np.testing.assert_array_equal(outs[1], outs[0])
    want = a.astype(np.float64) @ b + bias
    np.testing.assert_allclose(outs[0], np.maximum(want, 0) if relu else want, rtol=1e-4,
                               atol=1e-4)


def test_wide_registers_follow_the_vector_width():
    from convkit.fast.runtime import backend
    from numba.core import config
    assert backend.wide_registers() == ("-prefer-256-bit" in (config.CPU_FEATURES or "")
                                        and "+avx512f" in (config.CPU_FEATURES or ""))


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("n", [48, 64])
def test_tiles_gemm_takes_either_width_with_the_same_values(rng, n, relu):
    from convkit.fast.kernels import tiles
    a = rng.standard_normal((21, 24)).astype(np.float32)
    b = rng.standard_normal((24, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    out, want = np.full((21, n), np.nan, np.float32), np.full((21, n), np.nan, np.float32)
    tiles.gemm("test")(a, b, bias, out, relu, 0, 21)
    jit(getattr(_conv_regs, "_k_gemm_regs_relu" if relu else "_k_gemm_regs"), "test",
        fastmath=implicit.REGISTER_FASTMATH, slp=True)(a, b, bias, want, 0, 21)
    np.testing.assert_array_equal(out, want)
    assert relu == bool((out >= 0).all())


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("c_in,filters", [(1, 32), (3, 48), (16, 64), (40, 32)])
def test_tiles_conv_gives_the_run_kernels_values(rng, c_in, filters, relu):
    # whichever variant it takes (tap table for short runs, wide tiles for multiples of
    # 32 filters on a CPU with 512-bit vectors): the run kernel's values bit for bit
    from convkit.fast.kernels import tiles
    x = rng.standard_normal((2, 8, 9, c_in)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, c_in, filters)).astype(np.float32)
    bias = rng.standard_normal(filters).astype(np.float32)
    window = (3, 3, 1, 1, 1, 1, 0, 0, 6, 7)
    out = np.full((2 * 6 * 7, filters), np.nan, np.float32)
    want = out.copy()
    tiles.conv("test")(x, kernel.reshape(-1, filters), bias, relu, *window, out, 0, 6, 0, 7,
                       1, 2 * 6 * 7)
    jit(getattr(_conv_regs, "_k_conv_fwd_regs_relu" if relu else "_k_conv_fwd_regs"), "test",
        fastmath=implicit.REGISTER_FASTMATH, slp=True)(
        x, kernel.reshape(-1, filters), bias, *window, want, 0, 6, 0, 7, 1, 2 * 6 * 7)
    np.testing.assert_array_equal(out, want)
    assert np.isnan(out[0]).all()          # pixel 0 is outside 1:84
