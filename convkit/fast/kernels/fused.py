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

from .pooling import _k_maxpool_fwd_values_2x2, _nan_max, max_values_2x2  # noqa: F401
from .tiles import _k_conv, _k_gemm  # noqa: F401
from ..runtime.parked import (AWAY, CLAIMED, DONE, LEAVE, NEXT, PARKED, STARTED, STATE,
                               TASK)

__all__ = ["conv_pool_kernels", "wino_kernels", "wino_scratch_floats", "dense_rows_kernel",
           "DENSE_ACTIVATIONS", "park_kernels"]


def _k_conv_corner(x, w2, bias, relu, kh, kw, flat, h_out, w_out, hp, wp, lo, hi):
    # the convolution of x's images at pixels lo:hi of the (2*hp, 2*wp) corner the pool
    # reads (numbered image by image, row by row) into flat (N*h_out*w_out, F)
    _k_conv(x, w2, bias, relu, kh, kw, 1, 1, 1, 1, 0, 0, h_out, w_out, flat, 0, 2 * hp, 0,
            2 * wp, lo, hi)


def _k_conv_pool_images(x, w2, bias, scratch, y, relu, kh, kw, block, lo, hi):
    # images lo:hi, `block` at a time: convolution into scratch, then pooled into y
    h_out, w_out, filters = scratch.shape[1], scratch.shape[2], scratch.shape[3]
    hp, wp = y.shape[1], y.shape[2]
    flat = scratch.reshape(-1, filters)
    for n0 in range(lo, hi, block):
        n1 = min(n0 + block, hi)
        _k_conv_corner(x[n0:n1], w2, bias, relu, kh, kw, flat, h_out, w_out, hp, wp, 0,
                       (n1 - n0) * 4 * hp * wp)
        _k_maxpool_fwd_values_2x2(scratch, y[n0:n1], 0, (n1 - n0) * hp)


def _k_conv_pixels(x, w2, bias, scratch, relu, kh, kw, hp, wp, lo, hi):
    # the single image x[0]'s convolution at pixels lo:hi of the (2*hp, 2*wp) corner the
    # pool reads, numbered row by row, into scratch (no pooling)
    h_out, w_out, filters = scratch.shape[1], scratch.shape[2], scratch.shape[3]
    _k_conv_corner(x, w2, bias, relu, kh, kw, scratch.reshape(-1, filters), h_out, w_out,
                   hp, wp, lo, hi)


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
    from . import tiles
    where = "conv2d_pool_forward"
    corner = jit(_k_conv_corner, where, fastmath=False, helpers=(tiles.conv(where),))
    pool = max_values_2x2(where)
    pixels = jit(_k_conv_pixels, where, fastmath=False, helpers=(corner,))
    return (jit(_k_conv_pool_images, where, fastmath=False, helpers=(corner, pool)),
            jit(_k_conv_pool_rows, where, fastmath=False, helpers=(pixels, pool)),
            pixels)



# ------------------------------------- Winograd F(2x2, 3x3) convolution + 2x2 max pool
# A 3x3 correlation over a 4x4 input tile d gives a 2x2 output tile, which is exactly one
# pool window: Y = A^T [(G g G^T) * (B^T d B)] A, 16 multiplies per channel pair instead
# of 36. B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
# G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]], A^T = [[1, 1, 1, 0],
# [0, 1, -1, -1]]. Per image: the input transform V (16, T, C) of its T = hp*wp tiles, one
# register-tile product per point, M[p] = V[p] @ U[p] (T, F), and the output transform
# with the bias, the ReLU and the window's maximum, written to the pooled map.

def wino_scratch_floats(width, channels, filters, tiles):
    """Floats of scratch one thread needs for :func:`_k_wino_pool_images`."""
    return 16 * tiles * (channels + filters) + 4 * width * channels + filters


def _k_wino_kernel_transform(kernel, u2, gg):
    # u2 (16*C, F) = G g G^T per channel pair of kernel (3, 3, C, F); gg: 12*C*F scratch
    half = np.float32(0.5)
    size = kernel.shape[2] * kernel.shape[3]
    k0, k1, k2 = kernel[0].ravel(), kernel[1].ravel(), kernel[2].ravel()
    g0, g1 = gg[:3 * size], gg[3 * size:6 * size]
    g2, g3 = gg[6 * size:9 * size], gg[9 * size:12 * size]
    for e in range(3 * size):           # G g: rows of the kernel combined
        g0[e] = k0[e]
        g1[e] = half * (k0[e] + k1[e] + k2[e])
        g2[e] = half * (k0[e] - k1[e] + k2[e])
        g3[e] = k2[e]
    points = u2.reshape(16, size)                 # point 4*r + q, then the C*F pairs
    for r, g in enumerate((g0, g1, g2, g3)):      # (G g) G^T: its columns combined
        a, b, c = g[:size], g[size:2 * size], g[2 * size:]
        u0, u1, u2_, u3 = points[4 * r], points[4 * r + 1], points[4 * r + 2], points[4 * r + 3]
        for e in range(size):
            u0[e] = a[e]
            u1[e] = half * (a[e] + b[e] + c[e])
            u2_[e] = half * (a[e] - b[e] + c[e])
            u3[e] = c[e]


def _k_wino_kernel_refresh(kernel, seen, fresh, u2, gg):
    # u2 made from kernel (3, 3, C, F) by _k_wino_kernel_transform unless kernel holds the
    # same bits as seen (a copy of the kernel u2 was last made from) and not fresh; seen
    # updated. The optimizers change weights in place, so the comparison (one pass, OR of
    # the bits' differences) stands in for a version number. Whether it made u2
    bits, last = kernel.ravel().view(np.int32), seen.view(np.int32)
    if not fresh:
        diff = np.int32(0)
        for e in range(bits.size):
            diff |= bits[e] ^ last[e]
        if diff == 0:
            return False
    for e in range(bits.size):
        last[e] = bits[e]
    _k_wino_kernel_transform(kernel, u2, gg)
    return True


def _k_wino_input(x, n, v, rows, hp, wp):
    # v (16, T, C) = B^T d B of image n's 4x4 tiles; rows (4, W, C) scratch. Each loop
    # writes one array, by index (LLVM vectorises such loops over the channels; with
    # several arrays or views written in one loop it gave up on the alias checks)
    channels, width = x.shape[3], x.shape[2]
    for i in range(hp):
        for q in range(width):          # B^T d: the tile rows combined, whole image rows
            for c in range(channels):
                x0, x1 = x[n, 2 * i, q, c], x[n, 2 * i + 1, q, c]
                x2, x3 = x[n, 2 * i + 2, q, c], x[n, 2 * i + 3, q, c]
                rows[0, q, c] = x0 - x2
                rows[1, q, c] = x1 + x2
                rows[2, q, c] = x2 - x1
                rows[3, q, c] = x1 - x3
        for j in range(wp):             # (B^T d) B: the columns, tile by tile
            t = i * wp + j
            for a in range(4):
                for c in range(channels):
                    d0, d1 = rows[a, 2 * j, c], rows[a, 2 * j + 1, c]
                    d2, d3 = rows[a, 2 * j + 2, c], rows[a, 2 * j + 3, c]
                    v[4 * a, t, c] = d0 - d2
                    v[4 * a + 1, t, c] = d1 + d2
                    v[4 * a + 2, t, c] = d2 - d1
                    v[4 * a + 3, t, c] = d1 - d3


def _k_wino_output(m, bias, y, n, relu):
    # y[n] = max over each 2x2 output tile of A^T M A, + bias, ReLU; one loop per tile,
    # writing y only (as above)
    hp, wp, filters = y.shape[1], y.shape[2], y.shape[3]
    for i in range(hp):
        for j in range(wp):
            t = i * wp + j
            for f in range(filters):
                # A^T M: rows combined, column q: top q, bottom q
                top0 = m[0, t, f] + m[4, t, f] + m[8, t, f]
                top1 = m[1, t, f] + m[5, t, f] + m[9, t, f]
                top2 = m[2, t, f] + m[6, t, f] + m[10, t, f]
                top3 = m[3, t, f] + m[7, t, f] + m[11, t, f]
                bottom0 = m[4, t, f] - m[8, t, f] - m[12, t, f]
                bottom1 = m[5, t, f] - m[9, t, f] - m[13, t, f]
                bottom2 = m[6, t, f] - m[10, t, f] - m[14, t, f]
                bottom3 = m[7, t, f] - m[11, t, f] - m[15, t, f]
                # (A^T M) A, then the window's maximum
                best = _nan_max(_nan_max(_nan_max(
                    top0 + top1 + top2, top1 - top2 - top3),
                    bottom0 + bottom1 + bottom2), bottom1 - bottom2 - bottom3)
                best += bias[f]
                if relu:
                    best = best if (best > 0.0) | (best != best) else np.float32(0.0)
                y[n, i, j, f] = best


def _k_wino_pool_images(x, u2, bias, scratch, y, relu, lo, hi):
    # images lo:hi: the 3x3 convolution by F(2x2, 3x3) and the 2x2 max pool after it;
    # u2 (16*C, F) from _k_wino_kernel_transform; scratch holds wino_scratch_floats
    channels, width = x.shape[3], x.shape[2]
    hp, wp, filters = y.shape[1], y.shape[2], y.shape[3]
    tiles = hp * wp
    flat = scratch.ravel()
    end = 16 * tiles * channels
    v = flat[:end].reshape(16, tiles, channels)
    m = flat[end:end + 16 * tiles * filters].reshape(16, tiles, filters)
    end += 16 * tiles * filters
    rows = flat[end:end + 4 * width * channels].reshape(4, width, channels)
    end += 4 * width * channels
    zero = flat[end:end + filters]
    zero[:] = 0.0
    u = u2.reshape(16, channels, filters)
    for n in range(lo, hi):
        _k_wino_input(x, n, v, rows, hp, wp)
        for p in range(16):
            _k_gemm(v[p], u[p], zero, m[p], False, 0, tiles)
        _k_wino_output(m, bias, y, n, relu)


def wino_kernels():
    """``(kernel_refresh, pool_images)``: :func:`_k_wino_kernel_refresh` and
    :func:`_k_wino_pool_images`, compiled."""
    from ..runtime.backend import jit
    from . import tiles
    where = "conv2d_pool_forward"
    fast = frozenset({"contract", "nsz"})
    return (jit(_k_wino_kernel_refresh, where, fastmath=fast,
                helpers=(jit(_k_wino_kernel_transform, where, fastmath=fast),)),
            jit(_k_wino_pool_images, where, fastmath=False,
                helpers=(jit(_k_wino_input, where, fastmath=fast),
                         jit(_k_wino_output, where, fastmath=False, helpers=(_nan_max,)),
                         tiles.gemm(where))))


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
# into this module by park_kernels() before the kernels compile; the flags' indices and
# states are parked's own names (module-level integers: constants in the compiled code)
load_acquire = store_release = compare_swap = relax = None
PAUSES = 32
STAGE, LO, HI = TASK, TASK + 1, TASK + 2        # the task's three integers in the flags

#: a shared stage's task row (``_Parked.tasks``), by index: the stage, the kind (1: ReLU,
#: + 2: Winograd, then ``w2`` is the kernel's transform), the kernel's height and width,
#: the images per scratch block, one image (its convolution pixels split, pooled by the
#: caller), the chunk and the range's end (images or pixels), the caller's rounds of
#: waiting for the helper's last chunk
(T_STAGE, T_KIND, T_KH, T_KW, T_BLOCK, T_ONE_IMAGE, T_CHUNK, T_TOTAL,
 T_ROUNDS) = range(9)
TASK_FIELDS = 9
RELU, WINOGRAD = 1, 2


def task_row(stage, relu, winograd, kh, kw, block, one_image, chunk, total, rounds):
    """A stage's task row (``T_*`` above) as the kernels read it."""
    row = np.empty(TASK_FIELDS, np.int64)
    row[T_STAGE], row[T_KIND] = stage, RELU * bool(relu) + WINOGRAD * bool(winograd)
    row[T_KH], row[T_KW], row[T_BLOCK], row[T_ONE_IMAGE] = kh, kw, block, bool(one_image)
    row[T_CHUNK], row[T_TOTAL], row[T_ROUNDS] = chunk, total, rounds
    return row


def _k_part(x, w2, bias, scratch, y, task, lo, hi):
    # one stage's range lo:hi (its task row): one image's conv pixels into scratch (not
    # pooled), or images convolved and pooled into y, by Winograd or directly
    relu = (task[T_KIND] & RELU) != 0
    if task[T_ONE_IMAGE] != 0:
        _k_conv_pixels(x, w2, bias, scratch, relu, task[T_KH], task[T_KW], y.shape[1],
                       y.shape[2], lo, hi)
    elif (task[T_KIND] & WINOGRAD) != 0:
        _k_wino_pool_images(x, w2, bias, scratch, y, relu, lo, hi)
    else:
        _k_conv_pool_images(x, w2, bias, scratch, y, relu, task[T_KH], task[T_KW],
                            task[T_BLOCK], lo, hi)


def _k_fused_part(xs, w2s, biases, scratches, ys, tasks, stage, lo, hi):
    # the helper's side: stage `stage` of a chain's fused stages on lo:hi (_k_part)
    _k_part(xs[stage], w2s[stage], biases[stage], scratches[stage], ys[stage], tasks[stage],
            lo, hi)


def _k_grab(flags, chunk):
    # the start of the next unclaimed chunk of the task (flags[NEXT], taken by both sides)
    while True:
        start = load_acquire(flags, NEXT)
        if compare_swap(flags, NEXT, start, start + chunk):
            return start


def _k_park(flags, xs, w2s, biases, scratches, ys, tasks, rounds):
    # the helper's loop: parked until a task is CLAIMED, which it marks STARTED (the
    # caller then waits for its end), takes chunks of until none is left, and counts
    # DONE; away after `rounds` idle rounds or when asked to LEAVE
    store_release(flags, STATE, PARKED)
    idle = 0
    while True:
        if load_acquire(flags, STATE) == CLAIMED and compare_swap(flags, STATE, CLAIMED,
                                                                  STARTED):
            stage, hi = flags[STAGE], flags[HI]
            chunk = max(tasks[stage, T_CHUNK], 1)
            while True:             # chunks of the task until none is left
                lo = _k_grab(flags, chunk)
                if lo >= hi:
                    break
                _k_fused_part(xs, w2s, biases, scratches, ys, tasks, stage, lo,
                              min(lo + chunk, hi))
            done = flags[DONE] + 1
            store_release(flags, STATE, PARKED)
            store_release(flags, DONE, done)
            idle = 0
        elif load_acquire(flags, LEAVE) != 0 or idle >= rounds:
            if compare_swap(flags, STATE, PARKED, AWAY):
                return
        else:
            relax(PAUSES)
            idle += 1


def _k_post(flags, stage, lo, hi):
    # the task first, then the claim of a parked helper (release: the task is seen first);
    # whether it was claimed
    flags[STAGE] = stage
    flags[LO] = lo
    flags[HI] = hi
    flags[NEXT] = lo
    return compare_swap(flags, STATE, PARKED, CLAIMED)


def _k_shared_stage(flags, task, posted, x, w2, bias, own, shared, y):
    # the caller's side of a fused stage shared with the parked helper (its task row):
    # both sides take chunks of 0:total (images, or one image's conv pixels) until none is
    # left, so a helper that starts late or runs slower takes less; then this side waits
    # for the helper's last chunk and pools one image's pixels. Returns 1 when the helper
    # took part, 0 when it was away, 2 when it was parked but had not started by the time
    # every chunk was taken (the claim is withdrawn), -1 when it had not ended after
    # `rounds` rounds of waiting (the caller then waits, and pools, itself)
    one_image = task[T_ONE_IMAGE] != 0
    chunk, total, rounds = max(task[T_CHUNK], 1), task[T_TOTAL], task[T_ROUNDS]
    scratch = shared if one_image else own
    status = 0
    if not (total > chunk and _k_post(flags, task[T_STAGE], 0, total)):
        _k_part(x, w2, bias, scratch, y, task, 0, total)
    else:
        while True:
            lo = _k_grab(flags, chunk)
            if lo >= total:
                break
            _k_part(x, w2, bias, scratch, y, task, lo, min(lo + chunk, total))
        if compare_swap(flags, STATE, CLAIMED, PARKED):   # never started: withdrawn
            status = 2
        else:
            status = 1
            waited = 0
            while load_acquire(flags, DONE) <= posted:
                if waited == rounds:
                    return -1
                relax(PAUSES)
                waited += 1
    if one_image:
        _k_maxpool_fwd_values_2x2(shared, y, 0, y.shape[1])
    return status


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
    _, wino = wino_kernels()
    one_part = jit(_k_part, where, fastmath=False, helpers=(images, pixels, wino))
    part = jit(_k_fused_part, where, fastmath=False, helpers=(one_part,))
    pool = max_values_2x2("max_pool2d_values")
    grab = jit(_k_grab, where, fastmath=())
    post = jit(_k_post, where, fastmath=())
    return (jit(_k_park, where, fastmath=(), helpers=(part, grab)), post,
            jit(_k_shared_stage, where, fastmath=(), helpers=(one_part, pool, grab, post)))
