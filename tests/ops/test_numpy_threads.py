"""The NumPy path over the batch on threads (convkit/ops/batch_threads.py): the chunks cover
the batch in order on separate threads, small work and nested calls stay on the calling
thread, errors propagate; split over two threads, convolution and pooling give bitwise the
same forward results and input gradients as on one thread (the banded products of a few
filters and kernel gradients equal up to float rounding: the BLAS rounds a product's rows
differently for different row counts); and all of it runs without numba."""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from convkit.fast import kernels as accel
from convkit.ops import batch_threads, conv, pool, reference


@pytest.fixture(autouse=True)
def backend():
    """Only the NumPy path here (overrides tests/ops/conftest.py's two backends)."""
    with accel.use_backend("numpy"):
        yield "numpy"


@pytest.fixture
def split_everything(monkeypatch):
    """Split every call, however small, over ``CONVKIT_NUM_THREADS`` threads."""
    monkeypatch.setattr(batch_threads, "SPLIT_BYTES", 0)
    return monkeypatch


def _record(calls):
    def fn(start, stop):
        calls.append((start, stop, threading.get_ident()))
        return stop - start
    return fn


# ------------------------------------------------------------------------- the helper
def test_chunks_cover_the_batch_in_order_on_two_threads():
    calls = []
    sizes = batch_threads.over_batch(_record(calls), 5, nbytes=1 << 30, threads=2)
    assert sizes == [3, 2]
    assert sorted((start, stop) for start, stop, _ in calls) == [(0, 3), (3, 5)]
    assert len({ident for _, _, ident in calls}) == 2


@pytest.mark.parametrize("batch, nbytes, threads", [
    (8, batch_threads.SPLIT_BYTES - 1, 2),     # too little work
    (1, 1 << 30, 2),                          # one image
    (8, 1 << 30, 1),                          # one thread
])
def test_small_work_stays_on_the_calling_thread(batch, nbytes, threads):
    calls = []
    assert batch_threads.over_batch(_record(calls), batch, nbytes, threads) == [batch]
    assert calls == [(0, batch, threading.get_ident())]


def test_threads_default_to_convkit_num_threads(monkeypatch):
    monkeypatch.setenv("CONVKIT_NUM_THREADS", "3")
    calls = []
    batch_threads.over_batch(_record(calls), 7, nbytes=1 << 30)
    assert sorted((start, stop) for start, stop, _ in calls) == [(0, 3), (3, 5), (5, 7)]


def test_a_call_inside_a_chunk_stays_on_that_thread():
    inner = []

    def outer(start, stop):
        calls = []
        batch_threads.over_batch(_record(calls), 6, nbytes=1 << 30, threads=2)
        inner.append((calls, threading.get_ident()))
    batch_threads.over_batch(outer, 4, nbytes=1 << 30, threads=2)
    assert len(inner) == 2
    for calls, ident in inner:
        assert calls == [(0, 6, ident)]


def test_an_error_in_a_chunk_propagates_after_every_chunk_ended():
    ended = []

    def fn(start, stop):
        if start > 0:
            raise ValueError(f"chunk {start}")
        ended.append(start)
    with pytest.raises(ValueError, match="chunk 2"):
        batch_threads.over_batch(fn, 4, nbytes=1 << 30, threads=2)
    assert ended == [0]


def test_map_batch_slices_inputs_and_output_and_passes_none():
    x = np.arange(12.0).reshape(6, 2)
    out = np.zeros_like(x)
    seen = []

    def fn(x, nothing, out):
        seen.append(nothing)
        np.multiply(x, 10, out=out)
        return x.shape[0]
    assert batch_threads.map_batch(fn, out, x, None, threads=2) == [6]   # small: one chunk
    assert np.array_equal(out, x * 10) and seen == [None]


def test_map_batch_splits_large_work(split_everything):
    x = np.arange(12.0).reshape(6, 2)
    out = np.zeros_like(x)
    parts = batch_threads.map_batch(lambda x, out: np.add(x, 1, out=out).sum(), out, x,
                                    threads=2)
    assert len(parts) == 2 and batch_threads.sum_chunks(parts) == (x + 1).sum()
    assert np.array_equal(out, x + 1)


# ------------------------------------------------- ops: split equals one thread
CONV_CASES = {
    "3x3 same": dict(shape=(4, 9, 8, 5), kernel=(3, 3, 5, 6), strides=1, padding="same"),
    "few channels 5x5": dict(shape=(3, 12, 11, 2), kernel=(5, 5, 2, 3), strides=1,
                             padding="valid"),
    "strided dilated reflect": dict(shape=(4, 11, 10, 3), kernel=(3, 2, 3, 4), strides=2,
                                    padding=2, dilation_rate=(1, 2), padding_mode="reflect"),
    "1x1": dict(shape=(4, 6, 7, 8), kernel=(1, 1, 8, 5), strides=1, padding="valid"),
    "grouped": dict(shape=(3, 8, 8, 6), kernel=(3, 3, 2, 9), strides=1, padding="same",
                    groups=3),
    "depthwise": dict(shape=(5, 9, 10, 7), kernel=(3, 3, 1, 7), strides=1, padding="same",
                      groups=7),
    "depthwise x2, stride 2": dict(shape=(4, 9, 10, 3), kernel=(3, 3, 1, 6), strides=2,
                                   padding="same", groups=3),
    "depthwise channels_first": dict(shape=(3, 4, 7, 6), kernel=(3, 3, 1, 4), strides=1,
                                     padding=1, groups=4, data_format="channels_first"),
}


def _banded(x, kernel, options) -> bool:
    """Does the forward take the banded product (whose sums depend on its row count)?"""
    options = {"strides": 1, "padding": "valid", "dilation_rate": 1, "groups": 1,
               "padding_mode": "zeros", "data_format": "channels_last", **options}
    return conv._is_banded(conv._setup("conv2d", x, kernel, *(options[k] for k in (
        "strides", "padding", "dilation_rate", "groups", "padding_mode", "data_format"))))


def _assert_same_forward(y1, y2, banded):
    if banded:
        tolerance = 1e-5 if y1.dtype == np.float32 else 1e-12
        np.testing.assert_allclose(y2, y1, rtol=tolerance, atol=tolerance)
    else:
        assert np.array_equal(y1, y2)


def _both_ways(monkeypatch, fn):
    """``fn()`` on one thread, then split over two."""
    monkeypatch.setenv("CONVKIT_NUM_THREADS", "1")
    one = fn()
    monkeypatch.setenv("CONVKIT_NUM_THREADS", "2")
    return one, fn()


@pytest.mark.parametrize("case", list(CONV_CASES))
def test_one_image_splits_its_output_rows(case, split_everything, rng, monkeypatch):
    options = dict(CONV_CASES[case])
    shape = (1, *options.pop("shape")[1:])
    x = rng.standard_normal(shape).astype(np.float32)
    kernel = rng.standard_normal(options.pop("kernel")).astype(np.float32)
    bias = rng.standard_normal(kernel.shape[3]).astype(np.float32)
    ranges = []
    over_batch = batch_threads.over_batch

    def recording(fn, total, nbytes):
        def chunk(start, stop):
            ranges.append((start, stop))
            return fn(start, stop)
        return over_batch(chunk, total, nbytes)
    monkeypatch.setattr(batch_threads, "over_batch", recording)
    y1, y2 = _both_ways(split_everything, lambda: conv.conv2d_relu(x, kernel, bias, **options))
    _assert_same_forward(y1, y2, _banded(x, kernel, options))
    rows = y1.shape[2 if options.get("data_format") == "channels_first" else 1]
    half = (rows + 1) // 2
    assert ranges[0] == (0, rows) and sorted(ranges[1:]) == [(0, half), (half, rows)]
    np.testing.assert_allclose(y2, np.maximum(conv.conv2d(x, kernel, bias, **options), 0))


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv_split_equals_one_thread(case, dtype, relu, split_everything, rng):
    options = dict(CONV_CASES[case])
    x = rng.standard_normal(options.pop("shape")).astype(dtype)
    kernel = rng.standard_normal(options.pop("kernel")).astype(dtype)
    bias = rng.standard_normal(kernel.shape[3]).astype(dtype)
    forward = conv.conv2d_relu if relu else conv.conv2d
    y1, y2 = _both_ways(split_everything, lambda: forward(x, kernel, bias, **options))
    _assert_same_forward(y1, y2, _banded(x, kernel, options))
    assert y2.dtype == dtype
    dy = rng.standard_normal(y1.shape).astype(dtype)
    if relu:
        grads = lambda: conv.conv2d_relu_backward(dy, x, kernel, y1, **options)  # noqa: E731
    else:
        grads = lambda: conv.conv2d_backward(dy, x, kernel, **options)  # noqa: E731
    (dx1, dk1, db1), (dx2, dk2, db2) = _both_ways(split_everything, grads)
    assert np.array_equal(dx1, dx2) and dx2.dtype == dtype
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(dk2, dk1, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(db2, db1, rtol=tolerance, atol=tolerance)
    _, (no_dx, dk3, _) = _both_ways(
        split_everything, lambda: conv.conv2d_backward(dy * (y1 > 0) if relu else dy, x,
                                                       kernel, input_grad=False, **options))
    assert no_dx is None
    np.testing.assert_allclose(dk3, dk1, rtol=tolerance, atol=tolerance)


POOL_CASES = [
    dict(pool_size=2),                                              # tiling
    dict(pool_size=3, strides=2, padding="same"),                   # overlapping, padded
    dict(pool_size=(2, 3), strides=1, padding="valid", ceil_mode=True),
]


@pytest.mark.parametrize("options", POOL_CASES)
def test_pooling_split_equals_one_thread(options, split_everything, rng):
    x = rng.permutation(4 * 9 * 8 * 3).astype(np.float32).reshape(4, 9, 8, 3)
    for forward, backward in [(pool.max_pool2d, pool.max_pool2d_backward),
                              (pool.avg_pool2d, pool.avg_pool2d_backward)]:
        y1, y2 = _both_ways(split_everything, lambda: forward(x, **options))
        assert np.array_equal(y1, y2), forward.__name__
        dy = rng.standard_normal(y1.shape).astype(np.float32)
        dx1, dx2 = _both_ways(split_everything, lambda: backward(dy, x, **options))
        assert np.array_equal(dx1, dx2), backward.__name__
    _, argmax = pool.max_pool2d(x, return_argmax=True, **options)
    dy = rng.standard_normal(argmax.shape).astype(np.float32)
    dx1, dx2 = _both_ways(split_everything,
                          lambda: pool.max_pool2d_backward(dy, x, argmax=argmax, **options))
    assert np.array_equal(dx1, dx2)


@pytest.mark.parametrize("options", POOL_CASES)
def test_one_image_pooling_splits_its_output_rows(options, split_everything, rng, monkeypatch):
    x = rng.standard_normal((1, 9, 8, 3)).astype(np.float32)
    totals = []
    over_batch = batch_threads.over_batch

    def recording(fn, total, nbytes):
        totals.append(total)
        return over_batch(fn, total, nbytes)
    monkeypatch.setattr(batch_threads, "over_batch", recording)
    for forward in (pool.max_pool2d, pool.avg_pool2d):
        y1, y2 = _both_ways(split_everything, lambda: forward(x, **options))
        assert np.array_equal(y1, y2), forward.__name__
        assert totals[-2:] == [y1.shape[1]] * 2
        expected = getattr(reference, f"{forward.__name__}_ref")(x, **options)
        np.testing.assert_allclose(y2, expected, rtol=1e-6, atol=1e-6)


def test_a_nan_in_one_chunk_sends_the_whole_batch_to_the_general_loop(split_everything, rng):
    x = rng.standard_normal((4, 6, 6, 2)).astype(np.float32)
    x[3, 1, 1, 0] = np.nan                      # in the second chunk only
    dy = rng.standard_normal((4, 3, 3, 2)).astype(np.float32)
    dx1, dx2 = _both_ways(split_everything, lambda: pool.max_pool2d_backward(dy, x, 2))
    assert np.array_equal(dx1, dx2)
    assert dx2[3, 1, 1, 0] == dy[3, 0, 0, 0]      # the NaN wins its window
    assert np.count_nonzero(dx2) == dy.size


def test_runs_without_numba():
    code = ("import sys; sys.modules['numba'] = None\n"
            "import threading\nimport numpy as np\nimport convkit\n"
            "from convkit.ops import batch_threads\n"
            "threads = set()\n"
            "def fn(start, stop):\n"
            "    threads.add(threading.get_ident())\n"
            "    return stop - start\n"
            "assert batch_threads.over_batch(fn, 4, 1 << 30, threads=2) == [2, 2]\n"
            "assert len(threads) == 2\n"
            "x = np.random.default_rng(0).standard_normal((8, 64, 64, 16)).astype(np.float32)\n"
            "k = np.ones((3, 3, 1, 16), np.float32)\n"
            "y = convkit.ops.conv2d(x, k, padding='same', groups=16)\n"
            "assert y.shape == (8, 64, 64, 16)\n"
            "assert np.array_equal(convkit.ops.max_pool2d(x, 2), x.reshape(8, 32, 2, 32, 2, 16)"
            ".max(axis=(2, 4)))\n")
    env = dict(os.environ, CONVKIT_ACCEL="0", CONVKIT_NUM_THREADS="2")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.returncode == 0, result.stderr
