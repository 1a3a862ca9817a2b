"""The NumPy path's depthwise convolution: blocks of output rows (one and several), the
taps repeated along a row, the kernel gradient by einsum per block, and the input gradient
of stride-1 convolutions as a correlation of ``dy`` with the turned kernel -- against the
naive loop reference, the offset scatter and finite differences. Runs on both backends
(conftest.py)."""
import numpy as np
import pytest

from convkit.ops import conv as conv_module
from convkit.ops import conv2d, conv2d_backward
from convkit.ops.reference import conv2d_ref
from tests.gradcheck import check_vjp

# (kernel, strides, padding, dilation, multiplier, padding_mode)
DEPTHWISE_CASES = [
    (3, 1, "same", 1, 1, "zeros"),
    (2, 1, "same", 1, 1, "zeros"),                   # even kernel: one more pad after
    (3, 1, ((0, 2), (1, 0)), 1, 1, "zeros"),         # asymmetric explicit pads
    (3, 1, ((3, 0), (0, 1)), 1, 1, "zeros"),         # a pad wider than the kernel's reach
    ((3, 2), 1, "valid", 2, 1, "zeros"),             # dilated
    (3, 2, "same", 1, 1, "zeros"),                   # strided: the offset scatter
    (3, 1, "same", 1, 2, "zeros"),                   # depth multiplier 2
    (3, 1, 1, 1, 1, "reflect"),
]


def _depthwise(rng, kernel, multiplier, dtype=np.float64):
    x = rng.standard_normal((2, 7, 6, 3)).astype(dtype)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    k = rng.standard_normal((kh, kw, 1, 3 * multiplier)).astype(dtype)
    return x, k


def test_depthwise_by_hand():
    # two channels, 2x2 taps of ones and of twos on a 3x3 input, valid: window sums
    x = np.stack([np.arange(9.0).reshape(3, 3), np.ones((3, 3))], axis=-1)[None]
    k = np.stack([np.ones((2, 2)), 2 * np.ones((2, 2))], axis=-1)[:, :, None, :]
    y = conv2d(x, k, groups=2)
    assert np.array_equal(y[0, :, :, 0], [[8, 12], [20, 24]])
    assert np.array_equal(y[0, :, :, 1], [[8, 8], [8, 8]])
    dx, dk, _ = conv2d_backward(np.ones_like(y), x, k, groups=2)
    assert np.array_equal(dx[0, :, :, 1], 2 * np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]))
    assert np.array_equal(dk[:, :, 0, 1], [[4, 4], [4, 4]])


@pytest.mark.parametrize("block_bytes", [1 << 20, 64])        # one block, one row a block
@pytest.mark.parametrize("case", DEPTHWISE_CASES)
def test_depthwise_matches_reference_and_scatter(rng, monkeypatch, case, block_bytes):
    kernel, strides, padding, dilation, multiplier, mode = case
    monkeypatch.setattr(conv_module, "BLOCK_BYTES", block_bytes)
    x, k = _depthwise(rng, kernel, multiplier)
    kwargs = dict(strides=strides, padding=padding, dilation_rate=dilation, groups=3,
                  padding_mode=mode)
    y = conv2d(x, k, **kwargs)
    np.testing.assert_allclose(y, conv2d_ref(x, k, **kwargs), rtol=1e-10, atol=1e-10)
    dy = rng.standard_normal(y.shape)
    dx, dk, db = conv2d_backward(dy, x, k, **kwargs)
    monkeypatch.setattr(conv_module, "_flipped_setup", lambda s, dyl: None)
    dx_scatter, dk_scatter, _ = conv2d_backward(dy, x, k, **kwargs)
    np.testing.assert_allclose(dx, dx_scatter, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dk, dk_scatter, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", DEPTHWISE_CASES[:5] + DEPTHWISE_CASES[6:7])
def test_flipped_input_gradient_applies_where_it_holds(rng, case):
    kernel, strides, padding, dilation, multiplier, mode = case
    x, k = _depthwise(rng, kernel, multiplier)
    s = conv_module._setup("conv2d", x, k, strides, padding, dilation, 3, mode,
                           "channels_last")
    dy = np.zeros((2, *s.geo.out_hw, 3 * multiplier))
    wide_pad = max(max(p) for p in s.geo.pads) > (s.geo.kernel[0] - 1) * s.geo.dilation[0]
    expected_none = multiplier > 1 or wide_pad
    assert (conv_module._flipped_setup(s, dy) is None) == expected_none


@pytest.mark.parametrize("case", DEPTHWISE_CASES)
def test_depthwise_gradients(rng, monkeypatch, case):
    kernel, strides, padding, dilation, multiplier, mode = case
    monkeypatch.setattr(conv_module, "BLOCK_BYTES", 64)
    x, k = _depthwise(rng, kernel, multiplier)
    bias = rng.standard_normal(k.shape[3])
    kwargs = dict(strides=strides, padding=padding, dilation_rate=dilation, groups=3,
                  padding_mode=mode)
    check_vjp(lambda x_, k_, b_: conv2d(x_, k_, b_, **kwargs),
              lambda g, x_, k_, b_: conv2d_backward(g, x_, k_, **kwargs), [x, k, bias], rng)


def test_depthwise_keeps_float32(rng):
    x, k = _depthwise(rng, 3, 1, np.float32)
    y = conv2d(x, k, padding="same", groups=3)
    dx, dk, db = conv2d_backward(np.ones_like(y), x, k, padding="same", groups=3)
    assert {a.dtype for a in (y, dx, dk, db)} == {np.dtype(np.float32)}


@pytest.mark.parametrize("block_bytes,min_rows", [(1 << 18, 256), (40, 1), (200, 7)])
@pytest.mark.parametrize("relu", [False, True])
def test_pointwise_blocks_with_bias_and_relu(rng, monkeypatch, block_bytes, min_rows, relu):
    """A 1x1 convolution's product in blocks of output rows (one block; one row a block; 7
    rows a block, the last one short), each given its bias and ReLU: the same as the naive
    loops (and the ReLU of them), over every row."""
    monkeypatch.setattr(conv_module, "POINTWISE_BLOCK_BYTES", block_bytes)
    monkeypatch.setattr(conv_module, "POINTWISE_BLOCK_MIN_ROWS", min_rows)
    x = rng.standard_normal((3, 5, 4, 6))                       # 60 rows of 6 channels
    k = rng.standard_normal((1, 1, 6, 5))
    b = rng.standard_normal(5)
    expected = conv2d_ref(x, k, b)
    got = (conv_module.conv2d_relu if relu else conv2d)(x, k, b)
    np.testing.assert_allclose(got, np.maximum(expected, 0) if relu else expected,
                               rtol=1e-12, atol=1e-12)
    assert not relu or (got == 0).any() and (got > 0).any()
