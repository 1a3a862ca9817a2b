"""The kernels' prefetch hint (``accel.prefetch``): a no-op in the interpreter, one prefetch
instruction when compiled, harmless past the end of an array and on strided arrays; and the
register-tile products that use it on inputs whose rows are not contiguous (the hint then
names the wrong lines, the results must not change)."""
import platform

import numpy as np
import pytest

from convkit.fast.kernels import implicit
from convkit.fast._generated import conv_regs as _conv_regs
from convkit.fast.runtime import prefetch as pf
from convkit.fast.runtime.backend import jit

pytestmark = pytest.mark.usefixtures("need_accel")


def _probe(a, i, j):
    pf.prefetch(a, i, j)
    return a[0, 0] + a[a.shape[0] - 1, a.shape[1] - 1]


def test_interpreter_call_does_nothing():
    a = np.arange(32, dtype=np.float32).reshape(2, 16)
    before = a.copy()
    assert pf.prefetch(a, 1, 3) is None
    assert pf.prefetch(a, 10 ** 6, 0) is None       # no bounds check, no error
    np.testing.assert_array_equal(a, before)


def test_intrinsic_name_follows_llvm_pointer_mangling():
    assert pf._intrinsic_name((14, 0, 6)) == "llvm.prefetch.p0i8"
    assert pf._intrinsic_name((15, 0, 0)) == "llvm.prefetch.p0"
    assert pf._intrinsic_name((22, 1, 0)) == "llvm.prefetch.p0"


def _compiled_probe():
    import numba
    pf.register()
    return numba.njit(cache=False)(_probe)


def test_compiled_call_is_one_prefetch_instruction():
    probe = _compiled_probe()
    a = np.arange(64, dtype=np.float32).reshape(4, 16)
    assert probe(a, 1, 0) == 0 + 63
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("instruction name checked on x86-64 only")
    asm = probe.inspect_asm(probe.signatures[0])
    assert "prefetcht0" in asm


def test_compiled_call_past_the_end_is_harmless():
    # far past the last row and into the next rows through the column: no fault, no write
    probe = _compiled_probe()
    a = np.arange(64, dtype=np.float32).reshape(4, 16)
    before = a.copy()
    for i, j in ((3, 40), (4, 0), (1000, 0), (0, 10 ** 6)):
        assert probe(a, i, j) == 63
    strided = np.arange(256, dtype=np.float32).reshape(8, 32)[::2, ::3]
    assert probe(strided, 5, 7) == strided[0, 0] + strided[-1, -1]
    np.testing.assert_array_equal(a, before)


@pytest.mark.parametrize("m, k, n", [(41, 64, 32), (200, 24, 48)])
def test_products_on_rows_that_are_not_contiguous(rng, m, k, n):
    # a column slice of a wider array: the prefetches' "following rows" are the wrong
    # lines, the sums are the same
    wide = rng.standard_normal((m, k + 8)).astype(np.float32)
    a = wide[:, 3:3 + k]
    b = rng.standard_normal((k, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    gemm = jit(_conv_regs._k_gemm_regs, "test", fastmath=implicit.REGISTER_FASTMATH,
               slp=True)
    out = np.empty((m, n), np.float32)
    gemm(a, b, bias, out, 0, m)
    want = a.astype(np.float64) @ b + bias
    assert np.abs(out - want).max() / np.abs(want).max() < 1e-5
    tn = jit(_conv_regs._k_gemm_tn_regs, "test", fastmath=implicit.REGISTER_FASTMATH,
             slp=True)
    dy = rng.standard_normal((m, n + 16)).astype(np.float32)[:, 16:]
    acc = np.zeros((k, n), np.float32)
    tn(a, dy, acc, implicit.TN_CHUNK // 4, 0, m)          # several chunks
    want = a.T.astype(np.float64) @ dy
    assert np.abs(acc - want).max() / np.abs(want).max() < 1e-5
