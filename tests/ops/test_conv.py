import numpy as np
import pytest

import convkit as ck
from convkit.errors import ShapeError
from convkit.ops import conv2d, conv2d_backward
from convkit.ops.reference import conv2d_ref
from convkit.shapes import same_pads, to_pair
from tests.gradcheck import check_vjp
from tests.ops._cases import conv_case


# ------------------------------------------------------------------ hand-computed cases
def test_4x4_input_3x3_kernel_by_hand():
    x = np.arange(16.0).reshape(1, 4, 4, 1)
    # a single 1 at the top-right of the kernel picks x[i, j + 2] (a flipped kernel would
    # pick x[i + 2, j]): cross-correlation, not convolution
    kernel = np.zeros((3, 3, 1, 1))
    kernel[0, 2] = 1.0
    assert np.array_equal(conv2d(x, kernel)[0, :, :, 0], [[2.0, 3.0], [6.0, 7.0]])
    # horizontal Sobel on a ramp that rises by 1 per column: each window gives -8
    sobel = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], dtype=float)[:, :, None, None]
    assert np.array_equal(conv2d(x, sobel, np.array([0.5]))[0, :, :, 0], np.full((2, 2), -7.5))


def test_same_stride_2_pads_bottom_right():
    # 5x5 input, 2x2 kernel, stride 2: out 3, total pad 1 -> (top 0, bottom 1), (left 0, right 1)
    x = np.arange(25.0).reshape(1, 5, 5, 1)
    y = conv2d(x, np.ones((2, 2, 1, 1)), strides=2, padding="same")
    assert np.array_equal(y[0, :, :, 0], [[12, 20, 13], [52, 60, 33], [41, 45, 24]])


def test_same_even_kernel_stride_1_pads_one_more_after():
    # 4x4 kernel on a 4x4 input: total pad 3 = 1 before + 2 after, so y[0, 0] sums x[0:3, 0:3]
    x = np.arange(16.0).reshape(1, 4, 4, 1)
    y = conv2d(x, np.ones((4, 4, 1, 1)), padding="same")
    assert y.shape == (1, 4, 4, 1)
    assert y[0, 0, 0, 0] == x[0, 0:3, 0:3, 0].sum()
    assert y[0, 3, 3, 0] == x[0, 2:4, 2:4, 0].sum()


def test_groups_by_hand():
    x = np.arange(8.0).reshape(1, 2, 2, 2)
    kernel = np.array([2.0, 3.0]).reshape(1, 1, 1, 2)   # channel 0 * 2, channel 1 * 3
    y = conv2d(x, kernel, groups=2)
    assert np.array_equal(y, x * [2.0, 3.0])


def test_padding_modes_by_hand():
    # a 1x3 kernel picking the left neighbour shows what the mode put in the left pad column
    x = np.array([[1.0, 2.0, 3.0]]).reshape(1, 1, 3, 1)
    kernel = np.array([1.0, 0.0, 0.0]).reshape(1, 3, 1, 1)
    left = {mode: conv2d(x, kernel, padding=((0, 0), (1, 1)), padding_mode=mode)[0, 0, :, 0]
            for mode in ("zeros", "reflect", "replicate", "circular")}
    assert np.array_equal(left["zeros"], [0, 1, 2])
    assert np.array_equal(left["reflect"], [2, 1, 2])
    assert np.array_equal(left["replicate"], [1, 1, 2])
    assert np.array_equal(left["circular"], [3, 1, 2])


def test_dilation_by_hand():
    x = np.arange(25.0).reshape(1, 5, 5, 1)
    y = conv2d(x, np.ones((2, 2, 1, 1)), dilation_rate=2)      # taps at 0 and 2
    assert y.shape == (1, 3, 3, 1)
    assert y[0, 0, 0, 0] == 0 + 2 + 10 + 12


def test_backward_by_hand():
    x = np.arange(16.0).reshape(1, 4, 4, 1)
    dx, dkernel, dbias = conv2d_backward(np.ones((1, 2, 2, 1)), x, np.ones((3, 3, 1, 1)))
    assert np.array_equal(dx[0, :, :, 0], [[1, 2, 2, 1], [2, 4, 4, 2], [2, 4, 4, 2], [1, 2, 2, 1]])
    # dkernel[a, b] = sum of the four windows' cell (a, b)
    expected = [[x[0, a:a + 2, b:b + 2, 0].sum() for b in range(3)] for a in range(3)]
    assert np.array_equal(dkernel[:, :, 0, 0], expected)
    assert np.array_equal(dbias, [4.0])


# ----------------------------------------------------------------- against reference
@pytest.mark.parametrize("seed", range(40))
def test_matches_reference(seed):
    x, kernel, bias, kwargs = conv_case(seed)
    expected = conv2d_ref(x, kernel, bias, **kwargs)
    y = conv2d(x, kernel, bias, **kwargs)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("groups, multiplier", [(4, 1), (4, 3), (1, 1)])
@pytest.mark.parametrize("kernel_size, strides, padding",
                         [(1, 1, "valid"), (1, 2, "same"), (3, 1, "same"), (3, 2, 1)])
def test_special_paths_match_reference(rng, groups, multiplier, kernel_size, strides, padding):
    # depthwise (one channel per group) and pointwise (1x1) take their own fast paths
    x = rng.standard_normal((2, 6, 5, 4))
    kernel = rng.standard_normal((kernel_size, kernel_size, 4 // groups, 4 * multiplier))
    kwargs = dict(strides=strides, padding=padding, groups=groups)
    np.testing.assert_allclose(conv2d(x, kernel, **kwargs), conv2d_ref(x, kernel, **kwargs),
                               rtol=1e-10, atol=1e-10)


# -------------------------------------------------------------------- gradient checks
def _grad_check(x, kernel, bias, kwargs, rng):
    bias = np.zeros(kernel.shape[3]) if bias is None else bias

    def forward(x_, k_, b_):
        return conv2d(x_, k_, b_, **kwargs)

    def backward(g, x_, k_, b_):
        return conv2d_backward(g, x_, k_, **kwargs)

    check_vjp(forward, backward, [x, kernel, bias], rng)


@pytest.mark.parametrize("seed", range(0, 40, 3))
def test_gradients_random_configs(seed, rng):
    x, kernel, bias, kwargs = conv_case(seed)
    _grad_check(x, kernel, bias, kwargs, rng)


@pytest.mark.parametrize("groups, multiplier, kernel_size, strides, padding, mode", [
    (4, 1, 3, 1, "same", "zeros"),        # depthwise
    (4, 2, 3, 2, "same", "reflect"),      # depthwise, multiplier 2
    (1, 1, 1, 1, "valid", "zeros"),       # pointwise
    (2, 1, 2, (2, 1), ((0, 2), (1, 0)), "circular"),
    (1, 1, 3, 1, 2, "replicate"),
])
def test_gradients_special_paths(rng, groups, multiplier, kernel_size, strides, padding, mode):
    x = rng.standard_normal((2, 5, 6, 4))
    kernel = rng.standard_normal((kernel_size, kernel_size, 4 // groups, 4 * multiplier))
    bias = rng.standard_normal(4 * multiplier)
    _grad_check(x, kernel, bias, dict(strides=strides, padding=padding, groups=groups,
                                      padding_mode=mode), rng)


@pytest.mark.parametrize("seed", range(1, 40, 5))
def test_gradients_row_major_accumulation(seed, rng, monkeypatch):
    # the input gradient is accumulated channel-major for few channels, row-major otherwise;
    # force the row-major branch on the small random configurations too
    from convkit.ops import conv
    monkeypatch.setattr(conv, "SMALL_CHANNELS", 1)
    x, kernel, bias, kwargs = conv_case(seed)
    _grad_check(x, kernel, bias, kwargs, rng)


@pytest.mark.parametrize("seed", range(2, 40, 6))
def test_row_blocks(seed, rng, monkeypatch):
    # im2col is built in blocks of output rows; force one row per block
    from convkit.ops import conv
    monkeypatch.setattr(conv, "BLOCK_BYTES", 1)
    x, kernel, bias, kwargs = conv_case(seed)
    np.testing.assert_allclose(conv2d(x, kernel, bias, **kwargs),
                               conv2d_ref(x, kernel, bias, **kwargs), rtol=1e-10, atol=1e-10)
    _grad_check(x, kernel, bias, kwargs, rng)


def test_both_accumulation_orders_agree(rng, monkeypatch):
    from convkit.ops import conv
    x = rng.standard_normal((2, 7, 6, 32))
    kernel = rng.standard_normal((3, 3, 16, 8))
    dy = rng.standard_normal((2, 4, 3, 8))
    kwargs = dict(strides=2, padding="same", groups=2, padding_mode="reflect")
    wide = conv2d_backward(dy, x, kernel, **kwargs)                 # 16 channels per group
    monkeypatch.setattr(conv, "SMALL_CHANNELS", 10**6)
    narrow = conv2d_backward(dy, x, kernel, **kwargs)
    for a, b in zip(wide, narrow):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept(rng, dtype):
    x = rng.standard_normal((1, 5, 5, 2)).astype(dtype)
    kernel = rng.standard_normal((3, 3, 2, 3)).astype(dtype)
    bias = np.zeros(3, dtype=dtype)
    assert conv2d(x, kernel, bias, padding="same").dtype == dtype
    dy = np.ones((1, 5, 5, 3), dtype=dtype)
    assert all(g.dtype == dtype for g in conv2d_backward(dy, x, kernel, padding="same"))
    assert conv2d(x.astype(int), kernel.astype(np.float32)).dtype == np.float32


# ------------------------------------------------------------------------- PyTorch
def _torch_conv(torch, x, kernel, bias, strides, padding, dilation, groups, mode, dy):
    """PyTorch's conv with pads applied by F.pad; returns (y, dx, dkernel, dbias), NHWC/HWIO."""
    F = torch.nn.functional
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    kt = torch.tensor(kernel.transpose(3, 2, 0, 1), requires_grad=True)
    bt = torch.tensor(bias, requires_grad=True)
    (top, bottom), (left, right) = padding
    torch_mode = {"zeros": "constant"}.get(mode, mode)
    padded = F.pad(xt, (left, right, top, bottom), mode=torch_mode)
    yt = F.conv2d(padded, kt, bt, stride=strides, dilation=dilation, groups=groups)
    yt.backward(torch.tensor(dy.transpose(0, 3, 1, 2)))
    return (yt.detach().numpy().transpose(0, 2, 3, 1), xt.grad.numpy().transpose(0, 2, 3, 1),
            kt.grad.numpy().transpose(2, 3, 1, 0), bt.grad.numpy())


@pytest.mark.torch
@pytest.mark.parametrize("groups, strides, dilation, padding, mode", [
    (1, 1, 1, "same", "zeros"),
    (1, 2, 1, "same", "zeros"),
    (2, (2, 1), (1, 2), ((1, 2), (0, 1)), "zeros"),
    (4, 1, 2, "same", "zeros"),
    (1, 3, 2, ((2, 0), (1, 1)), "reflect"),
    (2, 1, 1, "same", "replicate"),
    (1, 2, 1, ((1, 2), (2, 1)), "circular"),
    (4, 2, 1, ((1, 1), (1, 1)), "reflect"),
])
def test_matches_torch(torch, rng, groups, strides, dilation, padding, mode):
    x = rng.standard_normal((2, 9, 8, 4))
    kernel = rng.standard_normal((3, 3, 4 // groups, 8))
    bias = rng.standard_normal(8)
    kwargs = dict(strides=strides, padding=padding, dilation_rate=dilation, groups=groups,
                  padding_mode=mode)
    y = conv2d(x, kernel, bias, **kwargs)
    dy = rng.standard_normal(y.shape)
    dx, dkernel, dbias = conv2d_backward(dy, x, kernel, **kwargs)
    if padding == "same":
        s, d = to_pair(strides, "s"), to_pair(dilation, "d")
        padding = tuple(same_pads(n, 3, s[i], d[i]) for i, n in enumerate(x.shape[1:3]))
    expected = _torch_conv(torch, x, kernel, bias, strides, padding, dilation, groups, mode, dy)
    for ours, theirs in zip((y, dx, dkernel, dbias), expected):
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9)


@pytest.mark.torch
def test_matches_torch_channels_first_float32(torch, rng):
    x = rng.standard_normal((2, 3, 10, 7)).astype(np.float32)
    kernel = rng.standard_normal((5, 3, 3, 6)).astype(np.float32)
    y = conv2d(x, kernel, strides=(2, 1), padding=(2, 1), data_format="channels_first")
    expected = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(kernel.transpose(3, 2, 0, 1)),
                                          stride=(2, 1), padding=(2, 1)).numpy()
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- errors
def _raises(match_parts, fn, *args, **kwargs):
    with pytest.raises(ShapeError) as info:
        fn(*args, **kwargs)
    for part in match_parts:
        assert part in str(info.value), f"{part!r} not in {str(info.value)!r}"
    return str(info.value)


def test_error_wrong_rank():
    _raises(["conv2d", "(5, 5, 3)"], conv2d, np.zeros((5, 5, 3)), np.zeros((3, 3, 3, 2)))
    _raises(["conv2d", "kernel", "(3, 3, 2)"], conv2d, np.zeros((1, 5, 5, 3)), np.zeros((3, 3, 2)))


def test_error_channel_mismatch_names_both_shapes():
    message = _raises(["conv2d", "(8, 28, 28, 1)", "(3, 3, 3, 4)"], conv2d,
                      np.zeros((8, 28, 28, 1)), np.zeros((3, 3, 3, 4)))
    assert "3" in message and "1" in message
    _raises(["conv2d", "(1, 3, 6, 6)"], conv2d, np.zeros((1, 3, 6, 6)), np.zeros((3, 3, 3, 4)))


def test_error_kernel_larger_than_padded_input():
    _raises(["conv2d", "(1, 4, 4, 1)", "(5, 5, 1, 1)"], conv2d, np.zeros((1, 4, 4, 1)),
            np.zeros((5, 5, 1, 1)))


@pytest.mark.parametrize("kwargs, words", [
    (dict(strides=0), ["strides"]),
    (dict(strides=-1), ["strides"]),
    (dict(dilation_rate=0), ["dilation_rate"]),
    (dict(padding="full"), ["padding", "full"]),
    (dict(padding=-1), ["padding"]),
    (dict(padding_mode="mirror"), ["padding_mode", "mirror"]),
    (dict(data_format="NHWC"), ["data_format", "NHWC"]),
    (dict(groups=0), ["groups"]),
])
def test_error_bad_arguments(kwargs, words):
    _raises(["conv2d", *words], conv2d, np.zeros((1, 6, 6, 2)), np.zeros((3, 3, 2, 2)), **kwargs)


def test_error_groups_not_dividing():
    _raises(["conv2d", "groups=2", "(1, 6, 6, 3)"], conv2d, np.zeros((1, 6, 6, 3)),
            np.zeros((3, 3, 1, 4)), groups=2)
    _raises(["conv2d", "groups=2", "(3, 3, 1, 3)"], conv2d, np.zeros((1, 6, 6, 2)),
            np.zeros((3, 3, 1, 3)), groups=2)


def test_error_reflect_pad_too_large():
    _raises(["conv2d", "reflect", "(1, 2, 6, 1)"], conv2d, np.zeros((1, 2, 6, 1)),
            np.zeros((1, 1, 1, 1)), padding=2, padding_mode="reflect")


def test_error_bias_non_numeric_and_empty():
    _raises(["conv2d", "bias", "(3,)"], conv2d, np.zeros((1, 6, 6, 2)), np.zeros((3, 3, 2, 2)),
            np.zeros(3))
    _raises(["conv2d", "numeric"], conv2d, np.full((1, 6, 6, 2), "a"), np.zeros((3, 3, 2, 2)))
    _raises(["conv2d", "empty", "(0, 6, 6, 2)"], conv2d, np.zeros((0, 6, 6, 2)),
            np.zeros((3, 3, 2, 2)))


def test_error_backward_dy_shape():
    _raises(["conv2d_backward", "(1, 5, 5, 2)", "(1, 4, 4, 2)"], conv2d_backward,
            np.zeros((1, 5, 5, 2)), np.zeros((1, 6, 6, 2)), np.zeros((3, 3, 2, 2)))


def test_public_names():
    assert ck.ops.conv2d is conv2d and ck.ops.conv2d_backward is conv2d_backward
