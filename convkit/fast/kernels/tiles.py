"""The generated register-tile kernels at the variant that suits the call, chosen in one
place: for the kernels that call them from compiled code (the fused convolution + pool,
the Winograd products) and for the implicit forward's Python side alike.

* :func:`_k_gemm` is ``out[lo:hi] = act(a[lo:hi] @ b + bias)`` (ReLU when ``relu``) by
  :func:`convkit.fast._generated.conv_regs._k_gemm_regs` (or ``_relu``).
* :func:`_k_conv` is the unpadded forward of
  :func:`convkit.fast._generated.conv_regs._k_conv_fwd_regs` (or ``_relu``), its arguments
  with ``relu`` after the bias; runs of at most :data:`TAPS_MAX_SPAN` values take the
  tap-table variant (``_taps``).

Both take the ``_wide`` twin (32 filters or columns per tile, the same sums) when the CPU
has 512-bit vectors (:func:`convkit.fast.runtime.backend.wide_registers`) and the filters
are a multiple of 32. :func:`gemm` and :func:`conv` compile them; a kernel that calls them
names the compiled dispatcher among its helpers.
"""
from __future__ import annotations

from .._generated.conv_regs import (  # noqa: F401
    LANES, _k_conv_fwd_regs, _k_conv_fwd_regs_relu, _k_conv_fwd_regs_relu_wide,
    _k_conv_fwd_regs_taps, _k_conv_fwd_regs_taps_relu, _k_conv_fwd_regs_taps_relu_wide,
    _k_conv_fwd_regs_taps_wide, _k_conv_fwd_regs_wide, _k_gemm_regs, _k_gemm_regs_relu,
    _k_gemm_regs_relu_wide, _k_gemm_regs_wide)

__all__ = ["gemm", "conv", "run_length", "TAPS_MAX_SPAN"]

#: the CPU has 512-bit vectors (set before _k_gemm and _k_conv compile)
WIDE = False

#: a run of at most this many values goes to the tap-table variant of the register kernel
#: (``_k_conv_fwd_regs_taps``): one loop over all ``kh*kw*C`` taps per tile, the taps'
#: offsets read from a table, instead of a loop over the runs whose set-up costs more than
#: a short run's multiply-adds. The same sums in the same order. One image, one thread,
#: AVX-512: a 3x3 kernel over 1 channel 9.2 -> 5.1 us, over 3 12.8 -> 9.5 us, over 16 12.6
#: -> 12.1 us; 7x7 over 3 (the seed convolution's shape) 225 -> 187 us; over 32 channels
#: (96 values) 23.3 against 24.6 us, so the runs stay there
TAPS_MAX_SPAN = 48


def run_length(kw: int, channels: int, dilation_w: int) -> int:
    """Contiguous input values per tap run of the register kernel: a kernel row's
    ``kw*C`` when the width is not dilated, else one tap's ``C``."""
    return kw * channels if dilation_w == 1 else channels


def _k_gemm(a, b, bias, out, relu, lo, hi):
    wide = WIDE and b.shape[1] % (2 * LANES) == 0
    if relu:
        if wide:
            _k_gemm_regs_relu_wide(a, b, bias, out, lo, hi)
        else:
            _k_gemm_regs_relu(a, b, bias, out, lo, hi)
    elif wide:
        _k_gemm_regs_wide(a, b, bias, out, lo, hi)
    else:
        _k_gemm_regs(a, b, bias, out, lo, hi)


def _k_conv(x, w2, bias, relu, kh, kw, sh, sw, dh, dw, top, left, h_out, w_out, y, oh0, oh1,
            ow0, ow1, lo, hi):
    wide = WIDE and w2.shape[1] % (2 * LANES) == 0
    window = (kh, kw, sh, sw, dh, dw, top, left, h_out, w_out, y, oh0, oh1, ow0, ow1, lo, hi)
    if run_length(kw, x.shape[3], dw) <= TAPS_MAX_SPAN:
        if wide:
            if relu:
                _k_conv_fwd_regs_taps_relu_wide(x, w2, bias, *window)
            else:
                _k_conv_fwd_regs_taps_wide(x, w2, bias, *window)
        elif relu:
            _k_conv_fwd_regs_taps_relu(x, w2, bias, *window)
        else:
            _k_conv_fwd_regs_taps(x, w2, bias, *window)
    elif wide:
        if relu:
            _k_conv_fwd_regs_relu_wide(x, w2, bias, *window)
        else:
            _k_conv_fwd_regs_wide(x, w2, bias, *window)
    elif relu:
        _k_conv_fwd_regs_relu(x, w2, bias, *window)
    else:
        _k_conv_fwd_regs(x, w2, bias, *window)


def _compiled(chooser, where: str, kernels: tuple, extra=()):
    global WIDE
    from ..runtime.backend import jit, wide_registers
    from .implicit import REGISTER_FASTMATH
    WIDE = wide_registers()
    return jit(chooser, where, fastmath=False, helpers=tuple(
        jit(kernel, where, fastmath=REGISTER_FASTMATH, slp=True) for kernel in kernels)
        + tuple(extra))


def gemm(where: str):
    """:func:`_k_gemm`, compiled (raises the backend's error naming ``where`` without
    numba)."""
    return _compiled(_k_gemm, where, (_k_gemm_regs, _k_gemm_regs_relu, _k_gemm_regs_wide,
                                      _k_gemm_regs_relu_wide))


def conv(where: str):
    """:func:`_k_conv`, compiled (raises the backend's error naming ``where`` without
    numba)."""
    return _compiled(_k_conv, where, (
        _k_conv_fwd_regs, _k_conv_fwd_regs_relu, _k_conv_fwd_regs_taps,
        _k_conv_fwd_regs_taps_relu, _k_conv_fwd_regs_wide, _k_conv_fwd_regs_relu_wide,
        _k_conv_fwd_regs_taps_wide, _k_conv_fwd_regs_taps_relu_wide), extra=(run_length,))
