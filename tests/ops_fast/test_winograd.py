"""Winograd F(4x4, 3x3) convolution and the stride-1 gradients against the naive loops,
a float64 error bound and PyTorch."""
import numpy as np
import pytest

from convkit.fast.kernels import winograd
from convkit.shapes import window_geometry
from tests.ops_fast import _naive

pytestmark = pytest.mark.usefixtures("need_accel")

PADS = [((1, 1), (1, 1)), ((0, 0), (0, 0)), ((3, 0), (2, 4)), ((0, 2), (1, 0))]


def glorot(rng, shape, dtype):
    fan_in, fan_out = shape[0] * shape[1] * shape[2], shape[0] * shape[1] * shape[3]
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape).astype(dtype)


def reference(x, k, b, pads):
    geo = window_geometry(x.shape[1:3], 3, 1, pads)
    return _naive.conv(x.astype(np.float64), k.astype(np.float64),
                       None if b is None else b.astype(np.float64), geo)


def test_matrices_reproduce_a_direct_tile():
    bt, g, at = winograd.winograd_matrices()
    rng = np.random.default_rng(0)
    d, w = rng.standard_normal((6, 6)), rng.standard_normal((3, 3))
    direct = np.array([[np.sum(d[i:i + 3, j:j + 3] * w) for j in range(4)] for i in range(4)])
    np.testing.assert_allclose(at @ ((g @ w @ g.T) * (bt @ d @ bt.T)) @ at.T, direct,
                               atol=1e-12)


def test_hand_computed_ones():
    y = winograd.conv3x3_winograd_forward(np.ones((1, 4, 4, 1), np.float32),
                                          np.ones((3, 3, 1, 1), np.float32), None,
                                          ((1, 1), (1, 1)))
    np.testing.assert_allclose(y[0, :, :, 0], [[4, 6, 6, 4], [6, 9, 9, 6], [6, 9, 9, 6],
                                               [4, 6, 6, 4]], atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pads", PADS)
@pytest.mark.parametrize("hw", [(9, 11), (5, 4)])
def test_forward_and_gradients_match_naive(hw, pads, dtype, rng):
    x = rng.standard_normal((2, *hw, 5)).astype(dtype)
    k = glorot(rng, (3, 3, 5, 4), dtype)
    b = rng.standard_normal(4).astype(dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    y_ref = reference(x, k, b, pads)
    y = winograd.conv3x3_winograd_forward(x, k, b, pads)
    assert y.dtype == dtype and y.shape == y_ref.shape
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=tol * np.abs(y_ref).max())
    np.testing.assert_allclose(winograd.conv3x3_winograd_forward(x, k, b, pads, relu=True),
                               np.maximum(y_ref, 0), rtol=0, atol=tol * np.abs(y_ref).max())
    dy = rng.standard_normal(y.shape).astype(dtype)
    geo = window_geometry(hw, 3, 1, pads)
    win = _naive.windows(x.astype(np.float64), geo)                # (N, Ho, Wo, 3, 3, Cin)
    dk_ref = np.einsum("nhwabc,nhwf->abcf", win, dy)
    dx_ref = np.zeros(x.shape)                                     # adjoint of the windows
    for index, (i, j) in enumerate((i, j) for i in range(3) for j in range(3)):
        contrib = np.einsum("nhwf,cf->nhwc", dy.astype(np.float64), k[i, j].astype(np.float64))
        for oh in range(y.shape[1]):
            for ow in range(y.shape[2]):
                ih, iw = oh - pads[0][0] + i, ow - pads[1][0] + j
                if 0 <= ih < hw[0] and 0 <= iw < hw[1]:
                    dx_ref[:, ih, iw] += contrib[:, oh, ow]
    dx = winograd.conv3x3_winograd_input_grad(dy, k, pads, hw)
    assert dx.dtype == dtype and dx.shape == x.shape
    np.testing.assert_allclose(dx, dx_ref, rtol=0, atol=tol * np.abs(dx_ref).max())
    for dk in (winograd.conv_stride1_kernel_grad(x, dy, (3, 3), pads),
               winograd.conv3x3_winograd_kernel_grad(x, dy, pads)):
        assert dk.dtype == dtype and dk.shape == k.shape
        np.testing.assert_allclose(dk, dk_ref, rtol=0, atol=tol * np.abs(dk_ref).max())


def test_kernel_grad_other_kernel_sizes(rng):
    x = rng.standard_normal((2, 7, 6, 3))
    dy = rng.standard_normal((2, 7, 5, 2))
    pads = ((2, 2), (0, 1))                                       # 5x3 kernel
    geo = window_geometry((7, 6), (5, 3), 1, pads)
    expected = np.einsum("nhwabc,nhwf->abcf", _naive.windows(x, geo), dy)
    np.testing.assert_allclose(winograd.conv_stride1_kernel_grad(x, dy, (5, 3), pads), expected,
                               atol=1e-12)


def test_float32_error_bound_at_layer_size(rng):
    """Unit-variance input, Glorot kernel: max |error| / max |y| below 1e-5 (measured ~1e-6)."""
    x = rng.standard_normal((2, 24, 20, 32)).astype(np.float32)
    k = glorot(rng, (3, 3, 32, 32), np.float32)
    pads = ((1, 1), (1, 1))
    y_ref = reference(x, k, None, pads)
    y = winograd.conv3x3_winograd_forward(x, k, None, pads)
    assert np.abs(y - y_ref).max() / np.abs(y_ref).max() < 1e-5
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = winograd.conv3x3_winograd_input_grad(dy, k, pads, (24, 20))
    dx64 = winograd.conv3x3_winograd_input_grad(dy.astype(np.float64), k.astype(np.float64),
                                                pads, (24, 20))
    assert np.abs(dx - dx64).max() / np.abs(dx64).max() < 1e-5
    dk = winograd.conv3x3_winograd_kernel_grad(x, dy, pads)
    dk64 = winograd.conv_stride1_kernel_grad(x.astype(np.float64), dy.astype(np.float64),
                                             (3, 3), pads)
    assert np.abs(dk - dk64).max() / np.abs(dk64).max() < 1e-5


def test_chunks_and_threads_give_the_same_result(rng, monkeypatch):
    x = rng.standard_normal((3, 13, 10, 4)).astype(np.float32)
    k = glorot(rng, (3, 3, 4, 6), np.float32)
    pads = ((1, 1), (1, 1))
    whole = winograd.conv3x3_winograd_forward(x, k, None, pads)
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 1)              # one tile row per chunk
    monkeypatch.setenv("CONVKIT_NUM_THREADS", "3")
    np.testing.assert_array_equal(winograd.conv3x3_winograd_forward(x, k, None, pads), whole)


@pytest.mark.torch
def test_matches_torch(torch, rng):
    x = rng.standard_normal((2, 10, 9, 8)).astype(np.float32)
    k = glorot(rng, (3, 3, 8, 6), np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).requires_grad_(True)
    wt = torch.from_numpy(k.transpose(3, 2, 0, 1).copy()).requires_grad_(True)
    yt = torch.nn.functional.conv2d(xt, wt, torch.from_numpy(b), 1, 1)
    y = winograd.conv3x3_winograd_forward(x, k, b, ((1, 1), (1, 1)))
    np.testing.assert_allclose(y, yt.permute(0, 2, 3, 1).detach().numpy(), atol=1e-5)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dxt, dwt = torch.autograd.grad(yt, (xt, wt), torch.from_numpy(dy).permute(0, 3, 1, 2))
    np.testing.assert_allclose(winograd.conv3x3_winograd_input_grad(dy, k, ((1, 1), (1, 1)),
                                                                    (10, 9)),
                               dxt.permute(0, 2, 3, 1).numpy(), atol=1e-5)
    np.testing.assert_allclose(winograd.conv3x3_winograd_kernel_grad(x, dy, ((1, 1), (1, 1))),
                               dwt.permute(2, 3, 1, 0).numpy(), rtol=1e-4, atol=1e-4)


def test_bad_arguments_raise_clear_errors():
    x = np.zeros((1, 5, 5, 3), np.float32)
    with pytest.raises(ValueError, match=r"conv3x3_winograd_forward: kernel must be \(3, 3, 3"):
        winograd.conv3x3_winograd_forward(x, np.zeros((5, 5, 3, 2)), None, ((1, 1), (1, 1)))
    with pytest.raises(ValueError, match="pads must not be negative"):
        winograd.conv3x3_winograd_forward(x, np.zeros((3, 3, 3, 2)), None, ((-1, 1), (1, 1)))
    with pytest.raises(ValueError, match="output size would be"):
        winograd.conv3x3_winograd_forward(np.zeros((1, 1, 5, 3)), np.zeros((3, 3, 3, 2)), None,
                                          ((0, 0), (0, 0)))
    with pytest.raises(ValueError, match="conv3x3_winograd_kernel_grad: dy shape"):
        winograd.conv3x3_winograd_kernel_grad(x, np.zeros((1, 4, 4, 2)), ((1, 1), (1, 1)))
    with pytest.raises(ValueError, match="conv3x3_winograd_input_grad: dy shape"):
        winograd.conv3x3_winograd_input_grad(np.zeros((1, 4, 4, 2)), np.zeros((3, 3, 3, 2)),
                                             ((1, 1), (1, 1)), (5, 5))


# ------------------------------------------------ the points' products on the register tiles
def test_point_products_on_the_register_tiles_match_matmul(rng):
    from convkit.fast.kernels import tiles
    from convkit.fast.runtime import backend
    products = backend.jit(winograd._k_point_products, "test",
                           helpers=(tiles.gemm("test"),))
    for tiles_n, c_in, c_out in [(1, 3, 16), (13, 64, 64), (29, 17, 48)]:
        v = rng.standard_normal((36, tiles_n + 5, c_in)).astype(np.float32)
        u = rng.standard_normal((36, c_in, c_out)).astype(np.float32)
        m = np.full((36, tiles_n + 5, c_out), 7.0, np.float32)
        products(v, u, np.zeros(c_out, np.float32), m, tiles_n)
        np.testing.assert_allclose(m[:, :tiles_n], np.matmul(v[:, :tiles_n], u),
                                   rtol=1e-5, atol=1e-4)
        assert (m[:, tiles_n:] == 7.0).all()                 # rows past ``rows`` untouched


def test_transposed_point_products_on_the_register_tiles_add_to_out(rng):
    from convkit.fast.kernels import tiles
    from convkit.fast.runtime import backend
    products = backend.jit(winograd._k_point_products_tn, "test", helpers=(tiles.gemm("test"),))
    for rows, c_in, c_out in [(1, 3, 16), (13, 64, 64), (29, 17, 48)]:
        v = rng.standard_normal((36, rows + 5, c_in)).astype(np.float32)
        m = rng.standard_normal((36, rows + 5, c_out)).astype(np.float32)
        out = rng.standard_normal((36, c_in, c_out)).astype(np.float32)
        expected = out + np.matmul(v[:, :rows].transpose(0, 2, 1), m[:, :rows])
        products(v, m, out, rows)                       # rows past ``rows`` are not read
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)


def test_kernel_grad_on_the_register_tiles_matches_naive(rng, monkeypatch):
    from convkit.fast.kernels import tiles
    from convkit.fast.runtime import backend
    monkeypatch.setattr(winograd, "_point_products", lambda where, filters, transposed=False:
                        backend.jit(winograd._k_point_products_tn if transposed
                                    else winograd._k_point_products, where,
                                    helpers=(tiles.gemm(where),)))
    x = rng.standard_normal((2, 9, 11, 5)).astype(np.float32)
    dy = rng.standard_normal((2, 9, 11, 16)).astype(np.float32)
    pads = ((1, 1), (1, 1))
    dk = winograd.conv3x3_winograd_kernel_grad(x, dy, pads)
    win = _naive.windows(x.astype(np.float64), window_geometry(x.shape[1:3], 3, 1, pads))
    expected = np.einsum("nhwabc,nhwf->abcf", win, dy)
    np.testing.assert_allclose(dk, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("c_out", [16, 20])
def test_forward_on_the_register_tiles_matches_naive(rng, monkeypatch, c_out):
    # whatever the host's BLAS, the forward with the tile products (16 filters; 20 is not a
    # multiple of the tile's width and keeps the batched matmul)
    from convkit.fast.kernels import tiles
    from convkit.fast.runtime import backend
    chosen = []

    def always(where, filters):
        chosen.append(filters % tiles.LANES == 0)
        if filters % tiles.LANES:
            return None
        return backend.jit(winograd._k_point_products, where, helpers=(tiles.gemm(where),))
    monkeypatch.setattr(winograd, "_point_products", always)
    x = rng.standard_normal((2, 9, 11, 5)).astype(np.float32)
    k = glorot(rng, (3, 3, 5, c_out), np.float32)
    b = rng.standard_normal(c_out).astype(np.float32)
    y = winograd.conv3x3_winograd_forward(x, k, b, ((1, 1), (1, 1)), relu=True)
    expected = np.maximum(reference(x, k, b, ((1, 1), (1, 1))), 0)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=2e-5 * np.abs(expected).max())
    assert chosen == [c_out % tiles.LANES == 0]


@pytest.mark.parametrize("wide, blas_wide, filters, takes_tiles", [
    (True, False, 64, True), (True, True, 64, False), (False, False, 64, False),
    (True, False, 24, False)])
def test_point_products_rule(monkeypatch, wide, blas_wide, filters, takes_tiles):
    monkeypatch.setattr(winograd.backend, "wide_registers", lambda: wide)
    monkeypatch.setattr(winograd._threads, "blas_wide_kernels", lambda: blas_wide)
    monkeypatch.setattr(winograd.tiles, "gemm", lambda where: "gemm")
    monkeypatch.setattr(winograd.backend, "jit", lambda func, where, helpers: (func, helpers))
    chosen = winograd._point_products("test", filters)
    assert (chosen is not None) is takes_tiles


@pytest.mark.parametrize("api, architecture, wide", [
    ("openblas", "Haswell", False), ("openblas", "Zen", False), ("openblas", "SkylakeX", True),
    ("openblas", "SapphireRapids", True), ("mkl", None, True)])
def test_blas_wide_kernels_reads_the_library(monkeypatch, api, architecture, wide):
    from types import SimpleNamespace

    from convkit.fast.runtime import threads
    lib = SimpleNamespace(internal_api=api, architecture=architecture)
    monkeypatch.setattr(threads, "_blas_controllers", lambda: [lib])
    assert threads.blas_wide_kernels() is wide
    monkeypatch.setattr(threads, "_blas_controllers", lambda: [])
    assert threads.blas_wide_kernels() is True
