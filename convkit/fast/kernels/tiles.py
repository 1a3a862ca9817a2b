"""The generated register-tile product at the tile width the CPU suits, for kernels that
call it from compiled code (the Winograd products).

:func:`_k_gemm` is ``out[lo:hi] = a[lo:hi] @ b + bias`` by
:func:`convkit.fast._generated.conv_regs._k_gemm_regs`, or by its ``_wide`` twin (32
columns per tile, the same sums) when the CPU has 512-bit vectors
(:func:`convkit.fast.runtime.backend.wide_registers`) and ``N`` is a multiple of 32.
:func:`gemm` compiles it; a kernel that calls ``_k_gemm`` names it among its helpers.
"""
from __future__ import annotations

from .._generated.conv_regs import LANES, _k_gemm_regs, _k_gemm_regs_wide  # noqa: F401

__all__ = ["gemm"]

#: the CPU has 512-bit vectors (set by gemm() before _k_gemm compiles)
WIDE = False


def _k_gemm(a, b, bias, out, lo, hi):
    if WIDE and b.shape[1] % (2 * LANES) == 0:
        _k_gemm_regs_wide(a, b, bias, out, lo, hi)
    else:
        _k_gemm_regs(a, b, bias, out, lo, hi)


def gemm(where: str):
    """:func:`_k_gemm`, compiled (raises the backend's error naming ``where`` without
    numba)."""
    global WIDE
    from ..runtime.backend import jit, wide_registers
    from .implicit import REGISTER_FASTMATH
    WIDE = wide_registers()
    return jit(_k_gemm, where, fastmath=False, helpers=tuple(
        jit(kernel, where, fastmath=REGISTER_FASTMATH, slp=True)
        for kernel in (_k_gemm_regs, _k_gemm_regs_wide)))
