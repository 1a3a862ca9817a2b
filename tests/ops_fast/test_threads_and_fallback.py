"""The thread helper, and the kernels reporting themselves unavailable without numba."""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from convkit.errors import ConvkitError
from convkit.fast.runtime import threads as _threads
from convkit.fast import kernels as accel
from convkit.fast.kernels import winograd
from convkit.shapes import window_geometry


def test_split_covers_the_range_evenly():
    assert _threads.split(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert _threads.split(2, 4) == [(0, 1), (1, 2)]
    assert _threads.split(0, 2) == []


def test_run_chunks_uses_several_threads_and_covers_everything(monkeypatch):
    monkeypatch.setenv("CONVKIT_NUM_THREADS", "3")
    seen, names = np.zeros(11, int), set()
    barrier = threading.Barrier(3, timeout=120)   # generous: a loaded machine

    def work(start, stop):
        names.add(threading.current_thread().name)
        barrier.wait()                      # only passes if 3 chunks run at the same time
        seen[start:stop] += 1
    _threads.run_chunks(work, 11)
    np.testing.assert_array_equal(seen, 1)
    assert len(names) == 3


def test_run_chunks_propagates_errors(monkeypatch):
    monkeypatch.setenv("CONVKIT_NUM_THREADS", "2")

    def work(start, stop):
        if start > 0:
            raise KeyError("boom")
    with pytest.raises(KeyError, match="boom"):
        _threads.run_chunks(work, 4)


def test_env_var_disables_the_kernels(monkeypatch):
    monkeypatch.setenv("CONVKIT_ACCEL", "0")
    assert not accel.available() and not winograd.available()
    with pytest.raises(ConvkitError, match="max_pool2d_forward: .*CONVKIT_ACCEL=0"):
        accel.max_pool2d_forward(np.zeros((1, 2, 2, 1)), window_geometry((2, 2), 2))
    with pytest.raises(ConvkitError, match="conv3x3_winograd_forward: .*unavailable"):
        winograd.conv3x3_winograd_forward(np.zeros((1, 4, 4, 1)), np.zeros((3, 3, 1, 1)), None,
                                          ((1, 1), (1, 1)))


def test_without_numba_convkit_imports_and_reports_unavailable():
    code = ("import sys; sys.modules['numba'] = None\n"
            "import convkit, convkit.ops\n"
            "from convkit.fast import kernels as accel\nfrom convkit.fast.kernels import winograd\n"
            "assert not accel.available() and not winograd.available()\n"
            "try:\n"
            "    accel.im2col(None, None)\n"
            "except convkit.errors.ConvkitError as exc:\n"
            "    assert 'numba is not installed' in str(exc), exc\n"
            "else:\n"
            "    raise SystemExit('no error')\n")
    env = dict(os.environ, CONVKIT_ACCEL="1")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.returncode == 0, result.stderr


def test_split_matmuls_match_numpy(rng, monkeypatch):
    monkeypatch.setenv("CONVKIT_NUM_THREADS", "2")
    a = rng.standard_normal((3000, 40)).astype(np.float32)
    b = rng.standard_normal((40, 50)).astype(np.float32)
    c = rng.standard_normal((3000, 50)).astype(np.float32)
    np.testing.assert_allclose(_threads.matmul(a, b), a @ b, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(_threads.matmul_tn(a, c), a.T @ c, rtol=1e-4, atol=1e-3)
    assert _threads.matmul(a, b).dtype == np.float32


@pytest.mark.parametrize("block_bytes", [1 << 20, 4096, 200])
def test_matmul_epilogue_sees_every_output_row_once(rng, monkeypatch, block_bytes):
    # the epilogue gets each block of rows right after its product: with small blocks a
    # thread's chunk is several blocks (and a last, shorter one)
    monkeypatch.setenv("CONVKIT_NUM_THREADS", "2")
    monkeypatch.setattr(_threads, "EPILOGUE_BLOCK_BYTES", block_bytes)
    a = rng.standard_normal((3001, 40)).astype(np.float32)
    b = rng.standard_normal((40, 50)).astype(np.float32)
    calls = []

    def epilogue(rows):
        calls.append(rows.shape[0])
        rows += 1.0                         # a second call on a row would add 2
    got = _threads.matmul(a, b, epilogue=epilogue)
    np.testing.assert_allclose(got, a @ b + 1.0, rtol=1e-4, atol=1e-4)
    assert sum(calls) == 3001
    assert max(calls) <= max(1, block_bytes // (50 * 4))
    small = _threads.matmul(a[:3], b, epilogue=epilogue)      # one thread, one block
    np.testing.assert_allclose(small, a[:3] @ b + 1.0, rtol=1e-4, atol=1e-4)


def test_nested_run_chunks_does_not_deadlock(monkeypatch):
    monkeypatch.setenv("CONVKIT_NUM_THREADS", "2")
    seen = np.zeros((4, 5), int)

    def outer(start, stop):
        for row in range(start, stop):
            def inner(a, b, row=row):
                seen[row, a:b] += 1
            _threads.run_chunks(inner, 5)
    _threads.run_chunks(outer, 4)
    np.testing.assert_array_equal(seen, 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_column_sums_match_numpy_and_keep_the_dtype(rng, dtype):
    a = rng.standard_normal((1001, 37)).astype(dtype)
    got = _threads.column_sums(a)
    assert got.dtype == dtype and got.shape == (37,)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, a.astype(np.float64).sum(axis=0), rtol=tol, atol=tol * 40)
    # non-contiguous, empty and integer inputs take NumPy's sum
    np.testing.assert_array_equal(_threads.column_sums(a[::2]), a[::2].sum(axis=0))
    assert _threads.column_sums(np.zeros((0, 3), dtype)).tolist() == [0.0, 0.0, 0.0]
    assert _threads.column_sums(np.arange(6).reshape(3, 2)).tolist() == [6, 9]


@pytest.mark.parametrize("input_grad", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pointwise_backward_threaded_matches_products(rng, monkeypatch, dtype, input_grad):
    monkeypatch.setenv("CONVKIT_NUM_THREADS", "2")
    x = rng.standard_normal((3001, 40)).astype(dtype)      # large enough to split the rows
    dy = rng.standard_normal((3001, 50)).astype(dtype)
    k = rng.standard_normal((40, 50)).astype(dtype)
    dx, dk, db = _threads.pointwise_backward(x, dy, k, input_grad)
    x64, dy64, k64 = (v.astype(np.float64) for v in (x, dy, k))
    tol = 1e-4 if dtype == np.float32 else 1e-12
    assert dk.dtype == db.dtype == dtype
    np.testing.assert_allclose(dk, x64.T @ dy64, rtol=tol, atol=tol * 60)
    np.testing.assert_allclose(db, dy64.sum(axis=0), rtol=tol, atol=tol * 60)
    if input_grad:
        assert dx.dtype == dtype
        np.testing.assert_allclose(dx, dy64 @ k64.T, rtol=tol, atol=tol * 10)
    else:
        assert dx is None


def test_large_pointwise_conv_backward_matches_torch(rng, torch):
    from convkit.ops import conv2d_backward
    x = rng.standard_normal((4, 32, 32, 32)).astype(np.float32)   # threaded: 4096 rows
    k = (rng.standard_normal((1, 1, 32, 48)) / 6).astype(np.float32)
    dy = rng.standard_normal((4, 32, 32, 48)).astype(np.float32)
    dx, dk, db = conv2d_backward(dy, x, k)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_()
    wt = torch.from_numpy(k.transpose(3, 2, 0, 1).copy()).requires_grad_()
    bt = torch.zeros(48, requires_grad=True)
    torch.nn.functional.conv2d(xt, wt, bt).backward(torch.from_numpy(dy.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_allclose(dk, wt.grad.numpy().transpose(2, 3, 1, 0), rtol=1e-4,
                               atol=1e-3)
    np.testing.assert_allclose(db, bt.grad.numpy(), rtol=1e-4, atol=1e-3)


def test_small_work_stays_on_the_calling_thread(monkeypatch):
    from convkit.fast.runtime import backend
    monkeypatch.setattr(backend, "SMALL_WORK_BYTES", 1 << 18)
    monkeypatch.setenv("CONVKIT_NUM_THREADS", "2")
    names = set()

    def kernel(a, lo, hi):
        names.add(threading.current_thread().name)
        a[lo:hi] += 1
    small = np.zeros(1000)                          # 8 kB
    backend._run(kernel, 1000, small)
    assert names == {threading.current_thread().name} and np.all(small == 1)
    names.clear()
    large = np.zeros(1 << 16)                       # 512 kB: split over the pool
    backend._run(kernel, large.size, large)
    assert len(names) == 2 and np.all(large == 1)


class _FakeBlas:
    """A BLAS library's thread-count calls, recorded."""

    def __init__(self, count):
        self.count = count

    def get_num_threads(self):
        return self.count

    def set_num_threads(self, count):
        self.count = count


def test_blas_limit_blocks_open_in_two_threads_share_one_limit(monkeypatch):
    """Two threads' blocks overlapping (A opens, B opens, A closes, B closes): the limit
    holds until the last one closes, then the count from before the first comes back."""
    lib = _FakeBlas(2)
    monkeypatch.setattr(_threads, "_blas_controllers", lambda: [lib])
    a_open, b_open, a_closed = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first():
        with _threads.blas_limit(1):
            a_open.set()
            b_open.wait(5)
        a_closed.set()

    def second():
        a_open.wait(5)
        with _threads.blas_limit(1):
            b_open.set()
            a_closed.wait(5)
            seen["inside after A closed"] = lib.count
    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen["inside after A closed"] == 1
    assert lib.count == 2 and _threads._limited_depth == 0
    with _threads.blas_limit(1):             # and the next block limits again
        assert lib.count == 1
    assert lib.count == 2


_FEATURES_PROBE = (
    "import json\n"
    "from convkit.fast.runtime import backend\n"
    "from numba.core import codegen, config\n"
    "assert backend.available()\n"
    "print(json.dumps([codegen.get_host_cpu_features(), config.CPU_FEATURES]))\n")


def _features_after_available(**env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CPU")}
    result = subprocess.run([sys.executable, "-c", _FEATURES_PROBE], capture_output=True,
                            text=True, env=dict(clean, CONVKIT_ACCEL="1", **env), timeout=120)
    assert result.returncode == 0, result.stderr
    import json
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_wide_vectors_on_a_cpu_with_avx512_only():
    host, chosen = _features_after_available()
    if "+avx512f" in host.split(","):
        assert chosen == host + ",-prefer-256-bit"
    else:                   # numba's own choice, untouched
        assert chosen is None


def test_a_feature_string_the_user_set_is_left_alone():
    _, chosen = _features_after_available(NUMBA_CPU_FEATURES="+sse2")
    assert chosen == "+sse2"
    _, chosen = _features_after_available(NUMBA_CPU_NAME="generic")
    assert chosen == ""         # numba's own default for a generic CPU
