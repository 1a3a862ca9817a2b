"""Compiled convolution followed by a 2x2, stride-2 max pool, for inference
(:mod:`convkit.fast.chain`).

One call runs a range of images (or of one image's pooled rows) through both, with no
Python between them: the convolution's output for a few images at a time goes to a scratch
buffer the size of the core's cache, by the register-tile kernels of
:mod:`convkit.fast.kernels.implicit` (rows ``0:2*hp`` and columns ``0:2*wp`` only: what the
pool reads), and the pool kernel of :mod:`convkit.fast.kernels.pooling` writes the pooled
map from there. A thread that runs such a range holds the GIL only to start it.

``x (N, H, W, C)``, ``w2 (kh*kw*C, F)``, ``bias (F,)``, ``scratch (B, H_out, W_out, F)``,
``y (N, hp, wp, F)``; every convolution window inside the input (stride 1, no padding or
dilation), ``F`` a multiple of 16.
"""
from __future__ import annotations

import numpy as np

from .._generated.conv_regs import _k_conv_fwd_regs, _k_conv_fwd_regs_relu  # noqa: F401
from .pooling import _k_maxpool_fwd_values_2x2  # noqa: F401

__all__ = ["conv_pool_kernels", "dense_rows_kernel", "DENSE_ACTIVATIONS"]


def _k_conv_pool_images(x, w2, bias, scratch, y, relu, kh, kw, block, lo, hi):
    # images lo:hi, `block` at a time: convolution into scratch, then pooled into y
    h_out, w_out, filters = scratch.shape[1], scratch.shape[2], scratch.shape[3]
    hp, wp = y.shape[1], y.shape[2]
    flat = scratch.reshape(-1, filters)
    per_image = 4 * hp * wp
    for n0 in range(lo, hi, block):
        n1 = min(n0 + block, hi)
        pixels = (n1 - n0) * per_image
        if relu:
            _k_conv_fwd_regs_relu(x[n0:n1], w2, bias, kh, kw, 1, 1, 1, 1, 0, 0, h_out, w_out,
                                  flat, 0, 2 * hp, 0, 2 * wp, 0, pixels)
        else:
            _k_conv_fwd_regs(x[n0:n1], w2, bias, kh, kw, 1, 1, 1, 1, 0, 0, h_out, w_out,
                             flat, 0, 2 * hp, 0, 2 * wp, 0, pixels)
        _k_maxpool_fwd_values_2x2(scratch, y[n0:n1], 0, (n1 - n0) * hp)


def _k_conv_pixels(x, w2, bias, scratch, relu, kh, kw, hp, wp, lo, hi):
    # the single image x[0]'s convolution at pixels lo:hi of the (2*hp, 2*wp) corner the
    # pool reads, numbered row by row, into scratch (no pooling)
    h_out, w_out, filters = scratch.shape[1], scratch.shape[2], scratch.shape[3]
    flat = scratch.reshape(-1, filters)
    if relu:
        _k_conv_fwd_regs_relu(x, w2, bias, kh, kw, 1, 1, 1, 1, 0, 0, h_out, w_out, flat,
                              0, 2 * hp, 0, 2 * wp, lo, hi)
    else:
        _k_conv_fwd_regs(x, w2, bias, kh, kw, 1, 1, 1, 1, 0, 0, h_out, w_out, flat,
                         0, 2 * hp, 0, 2 * wp, lo, hi)


def _k_conv_pool_rows(x, w2, bias, scratch, y, relu, kh, kw, lo, hi):
    # pooled rows lo:hi of the single image x[0] (its conv rows 2*lo:2*hi)
    wp = y.shape[2]
    _k_conv_pixels(x, w2, bias, scratch, relu, kh, kw, y.shape[1], wp, lo * 4 * wp,
                   hi * 4 * wp)
    _k_maxpool_fwd_values_2x2(scratch, y, lo, hi)


def conv_pool_kernels():
    """``(images, rows, pixels)``: the three compiled kernels above (see the module
    docstring)."""
    from ..runtime.backend import jit
    from . import implicit
    where = "conv2d_pool_forward"
    helpers = (jit(_k_conv_fwd_regs, where, fastmath=implicit.REGISTER_FASTMATH, slp=True),
               jit(_k_conv_fwd_regs_relu, where, fastmath=implicit.REGISTER_FASTMATH,
                   slp=True),
               jit(_k_maxpool_fwd_values_2x2, where, fastmath=False))
    pixels = jit(_k_conv_pixels, where, fastmath=False, helpers=helpers[:2])
    return (jit(_k_conv_pool_images, where, fastmath=False, helpers=helpers),
            jit(_k_conv_pool_rows, where, fastmath=False, helpers=(pixels, helpers[2])),
            pixels)



#: the activations :func:`_k_dense_rows` computes, by code
DENSE_ACTIVATIONS = {"linear": 0, "relu": 1, "softmax": 2}


def _k_dense_rows(x, kernel, bias, activation, out):
    # out (N, U) = act(x (N, K) @ kernel (K, U) + bias); act by DENSE_ACTIVATIONS' code
    rows, k_dim = x.shape
    units = kernel.shape[1]
    for r in range(rows):
        acc = out[r]
        for u in range(units):
            acc[u] = bias[u]
        xr = x[r]
        whole = k_dim - k_dim % 4
        for k in range(0, whole, 4):        # four rows of the kernel per pass over acc
            v0, v1, v2, v3 = xr[k], xr[k + 1], xr[k + 2], xr[k + 3]
            w0, w1, w2, w3 = kernel[k], kernel[k + 1], kernel[k + 2], kernel[k + 3]
            for u in range(units):
                acc[u] += (v0 * w0[u] + v1 * w1[u]) + (v2 * w2[u] + v3 * w3[u])
        for k in range(whole, k_dim):
            v = xr[k]
            wk = kernel[k]
            for u in range(units):
                acc[u] += v * wk[u]
        if activation == 1:
            for u in range(units):
                acc[u] = max(acc[u], 0.0)
        elif activation == 2:
            top = acc[0]
            for u in range(1, units):
                top = max(top, acc[u])
            total = 0.0
            for u in range(units):
                acc[u] = np.exp(acc[u] - top)
                total += acc[u]
            for u in range(units):
                acc[u] /= total


def dense_rows_kernel():
    """:func:`_k_dense_rows`, compiled: a ``Dense`` layer on a few rows (batch-1 inference)
    in one call, where the product, the bias and a softmax cost a NumPy call each."""
    from ..runtime.backend import jit
    return jit(_k_dense_rows, "dense_forward", fastmath=False)


# --------------------------------------------------------------- the parked helper's side
# (convkit.fast.runtime.parked): the intrinsics come from convkit.fast.runtime.spin, set
# into this module by park_kernels() before the kernels compile
load_acquire = store_release = compare_swap = relax = None
PAUSES = 32


def _k_fused_part(xs, w2s, biases, scratches, ys, tasks, stage, lo, hi):
    # stage `stage` of a chain's fused stages on images lo:hi, or (one image) on the conv
    # pixels lo:hi, not pooled; tasks[stage] is _k_shared_stage's task
    relu = tasks[stage, 1] != 0
    kh, kw, block = tasks[stage, 2], tasks[stage, 3], tasks[stage, 4]
    if tasks[stage, 5] != 0:
        y = ys[stage]
        _k_conv_pixels(xs[stage], w2s[stage], biases[stage], scratches[stage], relu, kh, kw,
                       y.shape[1], y.shape[2], lo, hi)
    else:
        _k_conv_pool_images(xs[stage], w2s[stage], biases[stage], scratches[stage],
                            ys[stage], relu, kh, kw, block, lo, hi)


def _k_grab(flags, chunk):
    # the start of the next unclaimed chunk of the task (flags[6], taken by both sides)
    while True:
        start = load_acquire(flags, 6)
        if compare_swap(flags, 6, start, start + chunk):
            return start


def _k_park(flags, xs, w2s, biases, scratches, ys, tasks, rounds):
    # flags = [state, done, stage, lo, hi, leave, next]; state 0 away, 1 parked, 2 claimed,
    # 3 started (the helper took the claim: the caller then waits for its end)
    store_release(flags, 0, 1)
    idle = 0
    while True:
        if load_acquire(flags, 0) == 2 and compare_swap(flags, 0, 2, 3):
            stage, hi = flags[2], flags[4]
            chunk = max(tasks[stage, 6], 1)
            while True:             # chunks of the task until none is left
                lo = _k_grab(flags, chunk)
                if lo >= hi:
                    break
                _k_fused_part(xs, w2s, biases, scratches, ys, tasks, stage, lo,
                              min(lo + chunk, hi))
            done = flags[1] + 1
            store_release(flags, 0, 1)
            store_release(flags, 1, done)
            idle = 0
        elif load_acquire(flags, 5) != 0 or idle >= rounds:
            if compare_swap(flags, 0, 1, 0):
                return
        else:
            relax(PAUSES)
            idle += 1


def _k_post(flags, stage, lo, hi):
    # the task first, then the claim of a parked helper (release: the task is seen first)
    flags[2] = stage
    flags[3] = lo
    flags[4] = hi
    flags[6] = lo
    return compare_swap(flags, 0, 1, 2)


def _k_shared_stage(flags, task, posted, x, w2, bias, own, shared, y):
    # the caller's side of a fused stage shared with the parked helper; task = (stage,
    # relu, kh, kw, block, one image, chunk, total, rounds): both sides take chunks of
    # 0:total (images, or one image's conv pixels) until none is left, so a helper that
    # starts late or runs slower takes less; then this side waits for the helper's last
    # chunk and pools one image's pixels. Returns 1 when the helper took part, 0 when it
    # was away, 2 when it was parked but had not started by the time every chunk was
    # taken (the claim is withdrawn), -1 when it had not ended after `rounds` rounds of
    # waiting (the caller then waits, and pools, itself)
    stage, relu, kh, kw, block = task[0], task[1] != 0, task[2], task[3], task[4]
    one_image, chunk, total, rounds = task[5] != 0, max(task[6], 1), task[7], task[8]
    hp = y.shape[1]
    flags[2] = stage
    flags[3] = 0
    flags[4] = total
    flags[6] = 0
    claimed = total > chunk and compare_swap(flags, 0, 1, 2)
    if not claimed:
        if one_image:
            _k_conv_pixels(x, w2, bias, shared, relu, kh, kw, hp, y.shape[2], 0, total)
        else:
            _k_conv_pool_images(x, w2, bias, own, y, relu, kh, kw, block, 0, total)
    else:
        while True:
            lo = _k_grab(flags, chunk)
            if lo >= total:
                break
            hi = min(lo + chunk, total)
            if one_image:
                _k_conv_pixels(x, w2, bias, shared, relu, kh, kw, hp, y.shape[2], lo, hi)
            else:
                _k_conv_pool_images(x, w2, bias, own, y, relu, kh, kw, block, lo, hi)
        if compare_swap(flags, 0, 2, 1):        # never started: withdrawn, nothing to wait
            if one_image:
                _k_maxpool_fwd_values_2x2(shared, y, 0, hp)
            return 2
        waited = 0
        while load_acquire(flags, 1) <= posted:
            if waited == rounds:
                return -1
            relax(PAUSES)
            waited += 1
    if one_image:
        _k_maxpool_fwd_values_2x2(shared, y, 0, hp)
    return 1 if claimed else 0


def park_kernels():
    """``(park, post, shared_stage)`` for :class:`convkit.fast.runtime.parked.ParkedHelper`
    over a chain's fused stages, or ``None`` where the spin-waits cannot run
    (:func:`convkit.fast.runtime.spin.usable`)."""
    from ..runtime import spin
    from ..runtime.backend import jit
    if not spin.usable():
        return None
    module = globals()
    for name in ("load_acquire", "store_release", "compare_swap", "relax"):
        module[name] = getattr(spin, name)
    module["PAUSES"] = spin.PAUSES
    images, rows, pixels = conv_pool_kernels()
    where = "conv2d_pool_forward"
    part = jit(_k_fused_part, where, fastmath=False, helpers=(images, pixels))
    pool = jit(_k_maxpool_fwd_values_2x2, "max_pool2d_values", fastmath=False)
    grab = jit(_k_grab, where, fastmath=())
    return (jit(_k_park, where, fastmath=(), helpers=(part, grab)),
            jit(_k_post, where, fastmath=()),
            jit(_k_shared_stage, where, fastmath=(), helpers=(images, pixels, pool, grab)))
