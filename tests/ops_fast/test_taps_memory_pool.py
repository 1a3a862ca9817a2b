"""Tap-major columns (the ``"taps"`` plan), the element-wise epilogues, the allocator
settings and the thread pool's hand-off."""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from convkit.fast.runtime import memory as _memory
from convkit.fast.runtime import threads as _threads
from convkit.fast import kernels as accel
from convkit.fast.kernels import tapcols
from convkit.ops.conv import conv2d_relu, conv2d_relu_backward, conv_plan
from convkit.ops.reference import conv2d_ref
from convkit.shapes import window_geometry

needs_numba = pytest.mark.skipif(not accel.available(), reason="requires numba (the compiled kernels)")


@needs_numba
def test_taps_forward_hand_computed():
    # one 3x3 image, a 2x2 kernel of ones and a vertical-edge kernel, bias 1 and -20
    x = np.arange(9, dtype=np.float64).reshape(1, 3, 3, 1)
    kernel = np.zeros((2, 2, 1, 2))
    kernel[..., 0, 0] = 1
    kernel[:, 0, 0, 1], kernel[:, 1, 0, 1] = -1, 1
    y = tapcols.taps_forward(x, kernel, np.array([1.0, -20.0]), window_geometry((3, 3), 2))
    # window sums 0+1+3+4 = 8, 12, 20, 24; the edge kernel gives 2 everywhere
    np.testing.assert_array_equal(y[0, ..., 0], [[9, 13], [21, 25]])
    np.testing.assert_array_equal(y[0, ..., 1], [[-18, -18], [-18, -18]])


@needs_numba
@pytest.mark.parametrize("threads", ["1", "2"])
@pytest.mark.parametrize("x_shape, k_shape, strides, padding, dilation", [
    ((5, 9, 8, 1), (3, 3, 1, 16), 1, "valid", 1),
    ((4, 10, 11, 3), (3, 3, 3, 16), 2, "same", 1),
    ((3, 12, 9, 2), (3, 2, 2, 20), (1, 2), ((2, 1), (0, 1)), (2, 1)),
])
def test_taps_match_the_reference_over_several_blocks(rng, monkeypatch, threads, x_shape,
                                                       k_shape, strides, padding, dilation):
    monkeypatch.setenv("CONVKIT_NUM_THREADS", threads)
    monkeypatch.setattr(tapcols, "BLOCK_BYTES", 1)         # one image per block
    kwargs = dict(strides=strides, padding=padding, dilation_rate=dilation)
    # float64: float32 with whole tiles of filters takes the register kernel forward
    assert conv_plan(x_shape, k_shape, **kwargs, dtype=np.float64) == "taps"
    x = rng.standard_normal(x_shape)
    kernel = rng.standard_normal(k_shape)
    bias = rng.standard_normal(k_shape[3])
    y = conv2d_relu(x, kernel, bias, **kwargs)
    exact = np.maximum(conv2d_ref(x, kernel, bias, **kwargs), 0)
    np.testing.assert_allclose(y, exact, rtol=1e-12, atol=1e-12 * np.abs(exact).max())
    dy = rng.standard_normal(y.shape)
    _, dk, db = conv2d_relu_backward(dy, x, kernel, y, input_grad=False, **kwargs)
    with accel.use_backend("numpy"):
        _, dk_ref, db_ref = conv2d_relu_backward(dy, x, kernel, y, **kwargs)
    np.testing.assert_allclose(dk, dk_ref, rtol=1e-12, atol=1e-12 * np.abs(dk_ref).max())
    np.testing.assert_allclose(db, db_ref, rtol=1e-12, atol=1e-12 * np.abs(db_ref).max())


@needs_numba
@pytest.mark.parametrize("k_shape, by_columns", [((3, 3, 1, 16), False),   # 144 cells: wide
                                                 ((5, 5, 1, 32), True)])   # 800: columns
def test_taps_kernel_gradient_from_wide_grid_or_columns(rng, monkeypatch, k_shape,
                                                        by_columns):
    calls = []
    real = tapcols.taps_kernel_grad
    monkeypatch.setattr(tapcols, "taps_kernel_grad",
                        lambda *args: calls.append(args) or real(*args))
    x = rng.standard_normal((3, 10, 9, 1))
    kernel = rng.standard_normal(k_shape)
    assert conv_plan(x.shape, k_shape, padding="same", dtype=x.dtype) == "taps"
    y = conv2d_relu(x, kernel, padding="same")
    dy = rng.standard_normal(y.shape)
    _, dk, db = conv2d_relu_backward(dy, x, kernel, y, input_grad=False, padding="same")
    assert bool(calls) == by_columns
    with accel.use_backend("numpy"):
        _, dk_ref, db_ref = conv2d_relu_backward(dy, x, kernel, y, padding="same")
    np.testing.assert_allclose(dk, dk_ref, rtol=1e-12, atol=1e-12 * np.abs(dk_ref).max())
    np.testing.assert_allclose(db, db_ref, rtol=1e-12, atol=1e-12 * np.abs(db_ref).max())


@needs_numba
def test_taps_float32_close_and_input_gradient_falls_back(rng):
    x = rng.standard_normal((6, 14, 14, 1)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 1, 24)).astype(np.float32)    # not whole tiles
    assert conv_plan(x.shape, kernel.shape) == "taps"
    y = conv2d_relu(x, kernel)
    assert y.dtype == np.float32
    exact = np.maximum(conv2d_ref(x.astype(np.float64), kernel.astype(np.float64)), 0)
    assert np.abs(y - exact).max() / np.abs(exact).max() < 1e-6
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, dk, db = conv2d_relu_backward(dy, x, kernel, y)              # dx: the wide plan
    with accel.use_backend("numpy"):
        ref = conv2d_relu_backward(dy, x, kernel, y)
    for ours, theirs in zip((dx, dk, db), ref):
        assert ours.dtype == np.float32
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())


# ----------------------------------------------------------------- element-wise epilogues
@needs_numba
@pytest.mark.parametrize("channels", [1, 6, 32, 48, 300])
@pytest.mark.parametrize("rows", [1, 7, 1000])
def test_bias_act_any_channel_count_and_row_count(rng, channels, rows):
    y = rng.standard_normal((rows, channels)).astype(np.float32)
    bias = rng.standard_normal(channels).astype(np.float32)
    expected = np.maximum(y + bias, 0)
    got = accel.bias_act_(y.copy(), bias, relu=True)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(accel.bias_act_(y.copy(), bias), y + bias)
    # the same kernel as an epilogue over blocks of rows
    apply = accel.bias_act_rows(bias, True, channels, np.float32)
    blocks = y.copy()
    for r0 in range(0, rows, 3):
        apply(blocks[r0:r0 + 3])
    np.testing.assert_array_equal(blocks, expected)


@needs_numba
def test_relu_backward_out_argument(rng):
    dy = rng.standard_normal((40, 9))
    y = rng.standard_normal((40, 9))
    out = np.empty_like(dy)
    assert accel.relu_backward(dy, y, out=out) is out
    np.testing.assert_array_equal(out, dy * (y > 0))
    with pytest.raises(ValueError, match=r"relu_backward: out must be a C-contiguous float64 "
                                         r"array of shape \(40, 9\), got float32 \(40, 9\)"):
        accel.relu_backward(dy, y, out=out.astype(np.float32))


# ----------------------------------------------------------------------- allocator settings
def test_keep_freed_memory_applies_once_where_glibc_runs():
    first = _memory.keep_freed_memory()
    assert _memory.keep_freed_memory() is first
    import platform
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc" \
            and not _memory._disabled_by_env():
        assert first is True


def test_keep_freed_memory_can_be_switched_off():
    code = ("from convkit.fast.runtime import memory as _memory\n"
            "assert _memory.keep_freed_memory() is False\n")
    env = dict(os.environ, CONVKIT_KEEP_FREED_MEMORY="0")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------------- thread pool
def test_concurrent_callers_each_get_every_chunk(monkeypatch):
    """Two user threads calling run_chunks at once: one gets the workers, the other runs
    its chunks itself; both see every index exactly once."""
    monkeypatch.setenv("CONVKIT_NUM_THREADS", "2")
    counts = np.zeros((2, 1000), int)
    start = threading.Barrier(2, timeout=120)     # generous: a loaded machine

    def caller(row):
        start.wait()
        for _ in range(50):
            def work(a, b):
                counts[row, a:b] += 1
            _threads.run_chunks(work, 1000)
    users = [threading.Thread(target=caller, args=(row,)) for row in range(2)]
    for t in users:
        t.start()
    for t in users:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in users), "a caller is stuck"
    np.testing.assert_array_equal(counts, 50)


def test_errors_from_every_chunk_wait_for_the_others(monkeypatch):
    monkeypatch.setenv("CONVKIT_NUM_THREADS", "2")
    finished = []

    def work(a, b):
        if a == 0:
            raise RuntimeError("first chunk failed")
        finished.append((a, b))
    with pytest.raises(RuntimeError, match="first chunk failed"):
        _threads.run_chunks(work, 10)
    assert finished == [(5, 10)]          # the worker's chunk ended before the raise
    seen = []
    _threads.run_chunks(lambda a, b: seen.append((a, b)), 4)   # the pool still works
    assert sorted(seen) == [(0, 2), (2, 4)]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_pool_works_in_a_forked_child(monkeypatch):
    monkeypatch.setenv("CONVKIT_NUM_THREADS", "2")
    _threads.run_chunks(lambda a, b: None, 4)     # the parent's workers exist
    code = ("import os, numpy as np\n"
            "from convkit.fast.runtime import threads as _threads\n"
            "os.environ['CONVKIT_NUM_THREADS'] = '2'\n"
            "_threads.run_chunks(lambda a, b: None, 4)\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    seen = np.zeros(6, int)\n"
            "    def work(a, b):\n"
            "        seen[a:b] += 1\n"
            "    _threads.run_chunks(work, 6)\n"
            "    os._exit(0 if (seen == 1).all() else 3)\n"
            "_, status = os.waitpid(pid, 0)\n"
            "raise SystemExit(os.waitstatus_to_exitcode(status))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
