"""The NumPy path's Winograd F(2x2, 3x3) (convkit/ops/winograd.py): the transforms by hand,
the loop reference over sizes (odd and even outputs), paddings, block sizes (several images a
block, tile rows of one image), the output rows of one image split over threads, float32 and
channels_first; the input gradient as Winograd over ``dy`` with the kernel turned, against
the offset scatter and finite differences; inputs holding inf or NaN; the rule."""
import numpy as np
import pytest

from convkit.fast import kernels as accel
from convkit.ops import conv as conv_module
from convkit.ops import conv2d, conv2d_backward, winograd
from convkit.ops.conv import conv2d_relu
from convkit.ops.reference import conv2d_ref
from tests.ops._cases import (assert_channels_first_float32_relu,
                             assert_non_finite_stays_in_its_windows)
from tests.gradcheck import check_vjp


@pytest.fixture
def spy(monkeypatch):
    """Counts Winograd forwards (the input gradient's included), on the NumPy path whatever
    the test's backend; channels and filters of 4 and more take it (not the banded product
    of a few filters)."""
    calls = []
    real = winograd.forward

    def counting(padded, kernel, *args, **kwargs):
        calls.append(kernel.shape)
        return real(padded, kernel, *args, **kwargs)
    monkeypatch.setattr(winograd, "forward", counting)
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 4)
    monkeypatch.setattr(conv_module, "BANDED_MAX_FILTERS", 0)
    with accel.use_backend("numpy"):
        yield calls


def test_transforms_by_hand():
    # U = G g G^T of a kernel of ones: G @ ones(3, 3) @ G^T, rows (1, 3/2, 1/2, 1)
    u = winograd.kernel_transform(np.ones((3, 3, 1, 1)))[:, 0, 0].reshape(4, 4)
    col = np.array([1.0, 1.5, 0.5, 1.0])
    np.testing.assert_array_equal(u, np.outer(col, col))
    # V = B^T d B of one 4x4 tile, against the matrices written out
    bt = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=float)
    d = np.arange(16.0).reshape(1, 4, 4, 1) ** 2
    v = winograd._input_transform(d, 0, 1, 1)[:, 0, 0].reshape(4, 4)
    np.testing.assert_array_equal(v, bt @ d[0, :, :, 0] @ bt.T)


# (input shape, filters, padding, padding_mode)
CASES = [
    ((2, 7, 9, 5), 6, "same", "zeros"),           # odd outputs: half tiles at the edges
    ((1, 8, 6, 4), 7, "valid", "zeros"),
    ((3, 5, 6, 6), 4, ((2, 0), (1, 2)), "zeros"),
    ((2, 6, 7, 4), 5, 1, "reflect"),
    ((1, 3, 3, 4), 4, "same", "circular"),        # one tile
]


@pytest.mark.parametrize("block_bytes", [1 << 21, 1 << 9, 1])
@pytest.mark.parametrize("case", CASES)
def test_winograd_matches_the_loop_reference(rng, monkeypatch, spy, case, block_bytes):
    x_shape, filters, padding, mode = case
    monkeypatch.setattr(conv_module, "BLOCK_BYTES", block_bytes)
    x = rng.standard_normal(x_shape)
    k = rng.standard_normal((3, 3, x_shape[3], filters))
    b = rng.standard_normal(filters)
    kwargs = dict(padding=padding, padding_mode=mode)
    y = conv2d(x, k, b, **kwargs)
    np.testing.assert_allclose(y, conv2d_ref(x, k, b, **kwargs), rtol=1e-12, atol=1e-12)
    assert spy == [k.shape]
    assert_channels_first_float32_relu(conv2d_relu, x, k, b, y, 2e-5, **kwargs)


@pytest.mark.parametrize("case", [c for c in CASES if c[3] == "zeros"])
def test_input_gradient_by_winograd_matches_the_scatter(rng, monkeypatch, spy, case):
    x_shape, filters, padding, _ = case
    x = rng.standard_normal(x_shape)
    k = rng.standard_normal((3, 3, x_shape[3], filters))
    dy = rng.standard_normal(conv2d_ref(x, k, padding=padding).shape)
    dx, dk, db = conv2d_backward(dy, x, k, padding=padding)
    assert (3, 3, filters, x_shape[3]) in spy            # the turned, transposed kernel
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 10 ** 6)
    dx_scatter, dk_scatter, db_scatter = conv2d_backward(dy, x, k, padding=padding)
    np.testing.assert_allclose(dx, dx_scatter, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(dk, dk_scatter)
    np.testing.assert_array_equal(db, db_scatter)


def test_winograd_gradients_by_finite_differences(rng, spy):
    x = rng.standard_normal((2, 5, 6, 4))
    k = rng.standard_normal((3, 3, 4, 5))
    check_vjp(lambda x, k: conv2d(x, k, padding="same"),
              lambda g, x, k: conv2d_backward(g, x, k, padding="same")[:2], [x, k], rng)
    assert len(spy) > 2


def test_one_image_split_by_output_rows(rng, monkeypatch, spy):
    # odd first rows: a chunk starting inside a tile writes only its own rows
    from convkit.ops import batch_threads
    monkeypatch.setattr(batch_threads, "SPLIT_BYTES", 0)
    monkeypatch.setattr(conv_module, "BLOCK_BYTES", 1 << 10)
    monkeypatch.setenv("CONVKIT_NUM_THREADS", "2")
    x = rng.standard_normal((1, 11, 9, 6))
    k = rng.standard_normal((3, 3, 6, 5))
    y = conv2d(x, k, padding="same")
    np.testing.assert_allclose(y, conv2d_ref(x, k, padding="same"), rtol=1e-12, atol=1e-12)
    assert len(spy) == 2


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_a_non_finite_input_stays_in_its_windows(rng, spy, bad):
    # an inf in a 4x4 input tile reaches the tile's four outputs through the transforms
    assert_non_finite_stays_in_its_windows(conv2d, conv2d_ref, rng.standard_normal((2, 8, 8, 4)),
                                           (1, 4, 3, 2), bad, rng.standard_normal((3, 3, 4, 4)))
    assert spy


M = winograd.MIN_CHANNELS


@pytest.mark.parametrize("kernel_shape, strides, dilation, groups, applies", [
    ((3, 3, M, M), (1, 1), (1, 1), 1, True),
    ((3, 3, M - 1, 2 * M), (1, 1), (1, 1), 1, False),     # too few channels
    ((3, 3, 2 * M, M - 1), (1, 1), (1, 1), 1, False),     # too few filters
    ((3, 3, M, M), (2, 2), (1, 1), 1, False),
    ((3, 3, M, M), (1, 1), (2, 2), 1, False),
    ((3, 3, M, 2 * M), (1, 1), (1, 1), 2, False),
    ((5, 5, M, M), (1, 1), (1, 1), 1, False),
])
def test_rule(kernel_shape, strides, dilation, groups, applies):
    assert winograd.applies(kernel_shape, strides, dilation, groups) is applies


@pytest.mark.parametrize("seed", range(20))
def test_winograd_random_configs_match_the_loop_reference(seed, spy, monkeypatch):
    from tests.ops._cases import geometry_ok, random_padding
    rng = np.random.default_rng(1000 + seed)
    while True:
        hw = tuple(int(v) for v in rng.integers(3, 10, size=2))
        padding = random_padding(rng, 2)
        mode = str(rng.choice(["zeros", "zeros", "reflect", "replicate", "circular"]))
        if geometry_ok(hw, 3, 1, 1, padding, mode=mode):
            break
    c, f = int(rng.integers(4, 7)), int(rng.integers(4, 7))
    x = rng.standard_normal((int(rng.integers(1, 4)), *hw, c))
    k = rng.standard_normal((3, 3, c, f))
    b = rng.standard_normal(f)
    kwargs = dict(padding=padding, padding_mode=mode)
    y = conv2d(x, k, b, **kwargs)
    np.testing.assert_allclose(y, conv2d_ref(x, k, b, **kwargs), rtol=1e-12, atol=1e-12)
    assert spy
    dy = rng.standard_normal(y.shape)          # the input gradient: Winograd where it applies
    dx = conv2d_backward(dy, x, k, **kwargs)[0]
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 10 ** 6)
    np.testing.assert_allclose(dx, conv2d_backward(dy, x, k, **kwargs)[0], rtol=1e-11,
                               atol=1e-11)
