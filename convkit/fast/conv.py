"""The convolution's fast paths: which one applies (:func:`conv_plan`, the rules of the
dispatch table for ``conv2d``) and each path's forward and backward.

Every function here takes the set-up of :func:`convkit.ops.conv.conv2d` (``s``: the
channels_last input ``s.x (N, H, W, C_in)``, the kernel ``s.kernel (kh, kw, C_g, F)``, the
window geometry ``s.geo``, ``s.groups``, the padding mode ``s.mode`` and the common
``s.dtype``) and computes what the NumPy reference computes, up to float rounding. They are
reached only through :mod:`convkit.fast.dispatch`, which has already checked the one switch
(``CONVKIT_ACCEL``, numba importable): the compiled kernels are there.

The plans, the first that applies in this order (see :func:`conv_plan` for the rules)::

    winograd      3x3 stride 1, Winograd F(4x4, 3x3)       (kernels/winograd.py)
    implicit      register-tile implicit product           (kernels/implicit.py)
    taps          tap-major columns, few input channels    (kernels/tapcols.py)
    wide          stride-1 direct on the wide grid         (kernels/direct.py)
    direct        compiled direct convolution              (kernels/direct.py)
    depthwise     one input channel per group              (kernels/depthwise.py)
    pointwise     1x1: threaded or register-tile products  (runtime/threads.py, implicit.py)
    winograd_s2   3x3 stride 2, F(4, 2) along the width    (kernels/winograd_s2.py)
    im2col        compiled im2col / col2im around threaded products
"""
from __future__ import annotations

import numpy as np

from .._aligned import output_empty
from ..ops.padding import pad_nhwc, pad_nhwc_backward
from ..shapes import Geometry, window_geometry
from . import kernels as accel
from .kernels import implicit, tapcols, winograd, winograd_s2
from .runtime import threads as _threads

#: Winograd needs at least this many input and output channels to beat im2col
WINOGRAD_MIN_CHANNELS = 8
#: where the register-tile implicit product applies (float32, whole tiles of filters),
#: Winograd's forward needs at least this many channel pairs ``C_in * filters`` to beat it:
#: its transforms cost per channel, its products per pair (3x3, two threads: 16 -> 32
#: 0.3-0.45, 32 -> 64 0.8-0.96 of Winograd's time at 7x7 to 56x56; 64 -> 64 1.06-1.3)
WINOGRAD_MIN_PAIRS_FORWARD = 4096
#: ... and its gradients at least this many (the column products' gradients, 32 -> 32: as
#: fast; 16 -> 16 and 16 -> 32: 0.48-0.81 of Winograd's time; 32 -> 64: 1.18-1.24 of it)
WINOGRAD_MIN_PAIRS_BACKWARD = 1024
#: direct convolution for ``C_in * filters`` at most this, with kernels of at least 5x5
DIRECT_MAX_CHANNEL_PAIRS = 16
DIRECT_MIN_KERNEL = 5
#: the wide-grid direct convolution for stride 1 and at most this many taps (kh*kw*C_in) per
#: output (e.g. a first layer on grey images), while one image's wide output fits this
WIDE_MAX_TAPS = 25
WIDE_MAX_BYTES = 1 << 20
#: a "taps" layer's kernel gradient comes from the wide-grid kernel (four taps per pass, no
#: columns) when it applies and ``kh*kw*C_in*filters`` is at most this; beyond it the GEMM
#: over tap-major columns is faster (28x28x1 -> 32, 3x3: 2.2 against 3.2 ms; 5x5 -> 32:
#: 4.9 against 3.7 ms)
WIDE_KGRAD_MAX_CELLS = 640
#: im2col columns of the compiled path are built for this many bytes of images at a time
FAST_BLOCK_BYTES = 1 << 25


def plan_for(s, backward: bool = False) -> str:
    """The plan for a set-up ``s`` (see :func:`convkit.fast.dispatch.conv_plan`)."""
    return choose(s.x.shape[0], s.kernel.shape, s.geo, s.groups, s.dtype, backward=backward)


def choose(batch: int, kernel_shape, geo: Geometry, groups: int, dtype,
            taps: bool = True, backward: bool = False) -> str:
    """The first plan whose rule applies (the rules: :func:`convkit.fast.dispatch.conv_plan`),
    ``"numpy"`` for none; the switch is the dispatch table's to check."""
    if batch == 0 or dtype not in (np.float32, np.float64):
        return "numpy"
    kh, kw, c_g, filters = kernel_shape
    if (kh, kw) == (1, 1) and geo.strides == (1, 1) and geo.pads == ((0, 0), (0, 0)) \
            and groups == 1:
        return "pointwise"
    if groups == 1:
        unit = geo.strides == (1, 1) and geo.dilation == (1, 1)
        registers = implicit.applies(kernel_shape, groups, dtype, geo.dilation[1])
        pairs = WINOGRAD_MIN_PAIRS_BACKWARD if backward else WINOGRAD_MIN_PAIRS_FORWARD
        if (kh, kw) == (3, 3) and unit and min(c_g, filters) >= WINOGRAD_MIN_CHANNELS \
                and not (registers and c_g * filters < pairs):
            return "winograd"
        s2 = winograd_s2.applies(kernel_shape, geo.strides, geo.dilation, groups, dtype) \
            and _tile_waste(geo.out_hw[1:], winograd_s2.TILE) <= S2_MAX_TILE_WASTE
        if registers and not backward and not s2:
            # few channels, or too few pairs for Winograd: the register-tile product
            # (LeNet-5's 5x5, 6 -> 16: 0.4 against 0.9 ms over columns)
            return "implicit"
        if taps and kh * kw * c_g <= tapcols.MAX_TAPS and c_g <= tapcols.MAX_CHANNELS \
                and filters >= tapcols.MIN_FILTERS:
            return "taps"
        if geo.strides == (1, 1) and kh * kw * c_g <= WIDE_MAX_TAPS \
                and filters * geo.out_hw[0] * geo.padded_hw[1] * dtype.itemsize \
                <= WIDE_MAX_BYTES:
            return "wide"
        if c_g * filters <= DIRECT_MAX_CHANNEL_PAIRS and min(kh, kw) >= DIRECT_MIN_KERNEL:
            return "direct"
        if s2:
            return "winograd_s2"
        if registers:
            return "implicit"
        return "im2col"
    if c_g == 1:
        return "depthwise"
    return "im2col"


def _zero_padded(s):
    """``(x, geo)`` with zero pads: other padding modes are applied to ``x`` first."""
    x = np.ascontiguousarray(s.x)
    if s.mode == "zeros" or s.geo.pads == ((0, 0), (0, 0)):
        return x, s.geo
    padded = pad_nhwc(x, s.geo.pads, s.mode)                     # (N, H + pads, W + pads, C)
    geo = window_geometry(padded.shape[1:3], s.geo.kernel, s.geo.strides, 0, s.geo.dilation)
    return padded, geo


def _batch_blocks(s, geo: Geometry, channels: int) -> list[tuple[int, int]]:
    """Ranges of images whose im2col columns take about ``FAST_BLOCK_BYTES``."""
    per_image = geo.out_hw[0] * geo.out_hw[1] * geo.kernel[0] * geo.kernel[1] * channels \
        * s.dtype.itemsize
    step = max(1, FAST_BLOCK_BYTES // max(per_image, 1))
    n = s.x.shape[0]
    return [(i, min(i + step, n)) for i in range(0, n, step)]


def _bias_act(y2d: np.ndarray, bias, relu: bool) -> None:
    """In place on ``(M, F)``: ``+ bias`` then ReLU."""
    if bias is None and not relu:
        return
    accel.bias_act_(y2d, bias, relu)


def _bias_act_epilogue(bias, relu: bool, channels: int, dtype):
    """:func:`_bias_act` as a function of blocks of rows (``None`` when there is nothing to
    add), with the compiled kernel's set-up done once."""
    if bias is None and not relu:
        return None
    return accel.bias_act_rows(bias, relu, channels, dtype)


def _group_slice(x: np.ndarray, g: int, width: int, groups: int) -> np.ndarray:
    return x if groups == 1 else np.ascontiguousarray(x[..., g * width:(g + 1) * width])


def forward_plan(plan: str, kernel_shape, dtype) -> str:
    """The plan whose code runs the forward of ``plan``: a ``"pointwise"`` product the
    register-tile kernel takes is run by ``"implicit"`` (the same product, the bias and
    ReLU added in registers)."""
    if plan == "pointwise" and implicit.applies(kernel_shape, 1, dtype):
        return "implicit"
    return plan


def forward(s, plan: str, bias, relu: bool) -> np.ndarray:
    """The forward of :func:`convkit.ops.conv2d` (plus ReLU) by ``plan``: ``(N, H_out, W_out, F)``."""
    kh, kw, c_g, filters = s.kernel.shape
    n, (h_out, w_out) = s.x.shape[0], s.geo.out_hw
    kernel = np.ascontiguousarray(s.kernel)
    plan = forward_plan(plan, s.kernel.shape, s.dtype)
    if plan == "pointwise":
        x2d = np.ascontiguousarray(s.x).reshape(-1, c_g)             # (M, C_in)
        y2d = _threads.matmul(x2d, kernel.reshape(c_g, filters),      # (M, F)
                              epilogue=_bias_act_epilogue(bias, relu, filters, s.dtype))
        return y2d.reshape(n, h_out, w_out, filters)
    x, geo = _zero_padded(s)
    if plan == "winograd":
        return winograd.conv3x3_winograd_forward(x, kernel, bias, geo.pads, relu)
    if plan == "taps":
        return tapcols.taps_forward(x, kernel, bias, geo, relu)
    if plan == "wide":
        return accel.conv2d_wide_forward(x, kernel, bias, geo, relu)
    if plan == "direct":
        return accel.conv2d_direct_forward(x, kernel, bias, geo, relu)
    if plan == "implicit":
        return accel.conv2d_implicit_forward(x, kernel, bias, geo, relu)
    if plan == "winograd_s2":
        return winograd_s2.conv3x3_s2_forward(x, kernel, bias, geo.pads, relu)
    if plan == "depthwise":
        y = accel.depthwise_conv2d_forward(x, kernel, bias, geo, filters // s.groups)
        if relu:
            np.maximum(y, 0, out=y)
        return y
    # im2col: columns (M_block, kh*kw*C_g) @ kernel (kh*kw*C_g, F_g), a block of images and
    # one group at a time
    f_g = filters // s.groups
    y = output_empty((n, h_out, w_out, filters), s.dtype)
    if s.groups == 1:
        _cached_blocks_forward(x, geo, kernel.reshape(-1, filters), y, bias, relu)
        return y
    for g in range(s.groups):
        xg = _group_slice(x, g, c_g, s.groups)                       # (N, Hp, Wp, C_g)
        kg = np.ascontiguousarray(kernel[..., g * f_g:(g + 1) * f_g]).reshape(-1, f_g)
        for n0, n1 in _batch_blocks(s, geo, c_g):
            cols = accel.im2col(xg[n0:n1], geo)                     # (M_block, kh*kw*C_g)
            if s.groups == 1:
                _threads.matmul(cols, kg, out=y[n0:n1].reshape(-1, filters))
            else:
                y[n0:n1, ..., g * f_g:(g + 1) * f_g] = _threads.matmul(cols, kg).reshape(
                    n1 - n0, h_out, w_out, f_g)
    _bias_act(y.reshape(-1, filters), bias, relu)
    return y


def backward(s, plan: str, dyl: np.ndarray, yl, input_grad: bool):
    """``(dx NHWC or None, dkernel, dbias)`` of :func:`convkit.ops.conv2d` by ``plan``; ``yl`` is the
    output of a fused ReLU (``dy`` is masked by ``yl > 0`` first) or ``None``."""
    kh, kw, c_g, filters = s.kernel.shape
    kernel = np.ascontiguousarray(s.kernel)
    dy = np.ascontiguousarray(dyl)                                   # (N, H_out, W_out, F)
    if plan == "pointwise":
        if yl is not None:
            dy = accel.relu_backward(dy, yl)
        dy2d = dy.reshape(-1, filters)                               # (M, F)
        x2d = np.ascontiguousarray(s.x).reshape(-1, c_g)             # (M, C_in)
        dx, dkernel, dbias = _threads.pointwise_backward(x2d, dy2d, kernel.reshape(c_g, filters),
                                                         input_grad,
                                                         _register_products(s, c_g, filters))
        return (dx.reshape(s.x.shape) if input_grad else None,
                dkernel.reshape(1, 1, c_g, filters), dbias)
    x, geo = _zero_padded(s)
    if implicit.kernel_grad_taps_applies(s.dtype, kernel.shape, s.groups) \
            and (not input_grad or plan in ("implicit", "im2col")):
        # few input channels: ReLU mask, kernel and bias gradients in one pass over dy,
        # tiles of taps x filters in registers (about twice as fast as the wide grid or the
        # columns for 3x3x1 -> 32 and 3x3x3 -> 32); the input gradient, if asked for, from
        # the columns without their kernel gradient
        dkernel, dbias = implicit.kernel_grad_taps(dy, x, kernel.shape, geo, yl)
        if not input_grad:
            return None, dkernel, dbias
        dz = dy if yl is None else accel.relu_backward(dy, yl)
        dx, _ = _im2col_backward(s, x, geo, kernel, dz, with_kernel=False)
        return _fold_padding(s, dx), dkernel, dbias
    if plan == "taps":
        fallback = choose(x.shape[0], kernel.shape, geo, s.groups, s.dtype, taps=False,
                           backward=True)
        wide_is_faster = fallback == "wide" and kh * kw * c_g * filters <= WIDE_KGRAD_MAX_CELLS
        if not input_grad and not wide_is_faster:
            # ReLU mask, kernel and bias gradients over tap-major columns
            dkernel, dbias = tapcols.taps_kernel_grad(x, dy, yl, kernel.shape, geo)
            return None, dkernel, dbias
        plan = fallback
    if plan == "wide":      # ReLU mask, kernel, bias and input gradients in one pass
        dx, dkernel, dbias = accel.conv2d_wide_backward(dy, x, kernel, geo, yl, input_grad)
        return _fold_padding(s, dx), dkernel, dbias
    if plan == "winograd_s2" and winograd_s2.backward_applies(kernel.shape, geo.strides,
                                                              geo.dilation, s.groups, s.dtype):
        # the transforms' adjoints, ReLU mask and bias gradient fused (9 products, not 12)
        dx, dkernel, dbias = winograd_s2.conv3x3_s2_backward(dy, x, kernel, geo.pads, yl,
                                                             input_grad)
        return _fold_padding(s, dx), dkernel, dbias
    if plan in ("implicit", "winograd_s2"):
        plan = "im2col"                          # the gradients are products over columns
    if (plan == "im2col" or plan == "direct" and not input_grad) and _small_kernel_grad(s):
        # one pass over dy: ReLU mask, kernel and bias gradients, no columns
        dkernel, dbias, dz = accel.conv2d_kernel_grad_small(dy, x, kernel.shape, geo, yl,
                                                            write_dz=input_grad)
        dx = None
        if input_grad:
            dx, _ = _im2col_backward(s, x, geo, kernel, dz, with_kernel=False)
        return _fold_padding(s, dx), dkernel, dbias
    if yl is not None:
        dy = accel.relu_backward(dy, yl)                             # dy * (y > 0)
    dy2d = dy.reshape(-1, filters)                                   # (M, F)
    dx = None
    if plan == "winograd":
        if not input_grad:
            pass
        elif _tile_waste(x.shape[1:3]) <= MAX_TILE_WASTE:
            dx = winograd.conv3x3_winograd_input_grad(dy, kernel, geo.pads, x.shape[1:3])
        else:   # small images: 4x4 tiles over the input would be mostly padding
            dx, _ = _im2col_backward(s, x, geo, kernel, dy, with_kernel=False)
        dkernel = winograd.conv3x3_winograd_kernel_grad(x, dy, geo.pads)
        dbias = _threads.column_sums(dy2d)
    elif plan == "direct":
        dx, dkernel, dbias = accel.conv2d_direct_backward(dy, x, kernel, geo, input_grad)
    elif plan == "depthwise":
        dx, dkernel, dbias = accel.depthwise_conv2d_backward(dy, x, kernel, geo,
                                                             filters // s.groups)
        if not input_grad:
            dx = None
    else:
        dx, dkernel = _im2col_backward(s, x, geo, kernel, dy, with_kernel=True,
                                       with_input=input_grad)
        dbias = _threads.column_sums(dy2d)
    return _fold_padding(s, dx), dkernel, dbias.astype(s.dtype, copy=False)


def _fold_padding(s, dx):
    """``dx`` of the explicitly padded input folded back onto the input (padding modes
    other than zeros); ``None`` stays ``None``."""
    if dx is not None and s.mode != "zeros" and s.geo.pads != ((0, 0), (0, 0)):
        dx = pad_nhwc_backward(dx, s.geo.pads, s.mode, s.x.shape[1:3])
    return dx


def _small_kernel_grad(s) -> bool:
    """Whether :func:`convkit.fast.kernels.conv2d_kernel_grad_small` takes the kernel
    gradient: ungrouped, few taps times filters, enough filters to vectorise over."""
    kh, kw, c_g, filters = s.kernel.shape
    return (s.groups == 1 and filters >= accel.SMALL_KGRAD_MIN_FILTERS
            and kh * kw * c_g * filters <= accel.SMALL_KGRAD_MAX_CELLS)


#: the Winograd input gradient is used when its 4x4 tiles cover at most this much more area
#: than the input (beyond it, im2col's products are cheaper)
MAX_TILE_WASTE = 1.3
#: the most 4-wide tiles may overshoot a stride-2 output's width for ``"winograd_s2"``:
#: 9 products per tile against 3 per output pixel directly, so at 1.15 (e.g. 8 columns
#: of tiles for 7) the tiles still save about 14 % of the multiplies
S2_MAX_TILE_WASTE = 1.15


def _tile_waste(sizes, tile: int = winograd.TILE) -> float:
    """Cells of the ``tile``-wide tiles covering an array of ``sizes`` (one per axis), over
    the array's cells: 4x4 Winograd tiles over an ``(H, W)`` image by default."""
    waste = 1.0
    for v in sizes:
        waste *= -(-v // tile) * tile / max(v, 1)
    return waste


#: per thread, the ungrouped im2col path builds the columns of this many bytes of images at a
#: time, multiplies them and (backward) adds them back while they are in the core's cache
CACHE_BLOCK_BYTES = 1 << 21


def _cache_blocks(lo: int, hi: int, per_image: int) -> list[tuple[int, int]]:
    """Images ``lo:hi`` in equal blocks of at most ``CACHE_BLOCK_BYTES`` of columns."""
    most = max(1, CACHE_BLOCK_BYTES // max(per_image, 1))
    count = -(-(hi - lo) // most)
    return [(lo + (hi - lo) * i // count, lo + (hi - lo) * (i + 1) // count)
            for i in range(count)]


#: windows whose rows are at most this many values (``kw * C``) are copied into columns by
#: NumPy when no padding is involved: its copy loops run over the window-row runs faster
#: than one small ``memcpy`` per run (LeNet-5's 6 -> 16 5x5 layer: runs of 30 values)
NUMPY_COPY_MAX_RUN = 64


def _im2col_into(x: np.ndarray, geo: Geometry, out: np.ndarray) -> np.ndarray:
    """im2col of ``x (B, H, W, C)`` into ``out (B*H_out*W_out, kh*kw*C)``."""
    (kh, kw), (sh, sw), c = geo.kernel, geo.strides, x.shape[3]
    if geo.pads != ((0, 0), (0, 0)) or geo.dilation != (1, 1) or kw * c > NUMPY_COPY_MAX_RUN:
        return accel.im2col(x, geo, out=out)
    h_out, w_out = geo.out_hw
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))
    win = win[:, :(h_out - 1) * sh + 1:sh, :(w_out - 1) * sw + 1:sw]  # (B, Ho, Wo, C, kh, kw)
    np.copyto(out.reshape(x.shape[0], h_out, w_out, kh, kw, c), win.transpose(0, 1, 2, 4, 5, 3))
    return out


def _cached_blocks_forward(x: np.ndarray, geo: Geometry, kernel2d: np.ndarray,
                           y: np.ndarray, bias=None, relu: bool = False) -> None:
    """``y (N, H_out, W_out, F) = act(im2col(x) @ kernel2d + bias)`` for an ungrouped
    convolution: each thread takes a range of images and, a cache block at a time, writes
    their columns into its own buffer, multiplies them (one-thread BLAS) straight into ``y``
    and adds the bias (and ReLU) to that block of ``y`` while it is still in cache."""
    n, (h_out, w_out) = x.shape[0], geo.out_hw
    taps, filters = kernel2d.shape
    rows = h_out * w_out
    epilogue = _bias_act_epilogue(bias, relu, filters, x.dtype)

    def work(lo, hi):
        blocks = _cache_blocks(lo, hi, rows * taps * x.dtype.itemsize)
        buf = np.empty(max(b - a for a, b in blocks) * rows * taps, dtype=x.dtype)
        for n0, n1 in blocks:
            cols = _im2col_into(x[n0:n1], geo, buf[:(n1 - n0) * rows * taps].reshape(
                -1, taps))                                           # (block*Ho*Wo, taps)
            y_block = y[n0:n1].reshape(-1, filters)                  # (block*Ho*Wo, F)
            np.matmul(cols, kernel2d, out=y_block)
            if epilogue is not None:
                epilogue(y_block)
    _threads.run_chunks(work, n)


def _register_products(s, columns: int, filters: int):
    """The compiled register-tile products ``(matmul_rows, matmul_tn_add)`` of
    :mod:`convkit.fast.kernels.implicit` for a backward whose products are ``columns^T @ dy``
    (``(M, columns)``, ``(M, filters)``) and ``dy @ kernel^T``, or the BLAS ones
    (``_threads.BLAS_PRODUCTS``) when they do not apply: not float32, or sizes that are not
    whole tiles."""
    if not (implicit.products_apply(s.dtype, columns, filters)
                                   and implicit.products_apply(s.dtype, filters, columns)):
        return _threads.BLAS_PRODUCTS
    return implicit.matmul_rows, implicit.matmul_tn_add


def _cached_blocks_backward(x: np.ndarray, geo: Geometry, kernel: np.ndarray, dy: np.ndarray,
                            with_kernel: bool, with_input: bool,
                            products=_threads.BLAS_PRODUCTS):
    """``(dx (N, Hp, Wp, C) or None, dkernel (kh, kw, C, F) or None)`` of an ungrouped
    convolution, a cache block of images at a time per thread: the block's columns,
    ``dkernel += columns^T @ dy`` (a partial sum per thread), then ``dcols = dy @ kernel^T``
    in the same buffer and ``col2im`` of it into ``dx`` while it is still in cache. With
    the register products and whole tiles of channels, the kernel gradient comes first,
    for all the thread's images, without columns (:func:`implicit.kernel_grad_add`)."""
    kh, kw, c_in, filters = kernel.shape
    n, (h_out, w_out) = x.shape[0], geo.out_hw
    taps, rows = kh * kw * c_in, h_out * w_out
    kernel_t = np.ascontiguousarray(kernel.reshape(taps, filters).T)   # (F, taps)
    dy2 = dy.reshape(n, rows, filters)                               # (N, Ho*Wo, F)
    matmul_into, matmul_tn_add = products
    # the kernel gradient without columns where the register products run
    implicit_kgrad = products is not _threads.BLAS_PRODUCTS and \
        implicit.kernel_grad_applies(x.dtype, c_in, filters)
    dx = output_empty(x.shape, x.dtype) if with_input else None
    chunks = _threads.split(n, _threads.num_threads())
    slot = {start: q for q, (start, _) in enumerate(chunks)}
    partials = np.zeros((len(chunks), taps, filters), dtype=x.dtype) if with_kernel else None

    def work(lo, hi):
        if with_kernel and implicit_kgrad:       # the thread's images at once, no columns
            implicit.kernel_grad_add(x[lo:hi], dy2[lo:hi].reshape(-1, filters), geo,
                                     partials[slot[lo]])
            if not with_input:
                return
        blocks = _cache_blocks(lo, hi, rows * taps * x.dtype.itemsize)
        buf = np.empty(max(b - a for a, b in blocks) * rows * taps, dtype=x.dtype)
        for n0, n1 in blocks:
            cols = buf[:(n1 - n0) * rows * taps].reshape(-1, taps)   # (block*Ho*Wo, taps)
            dy_block = dy2[n0:n1].reshape(-1, filters)               # (block*Ho*Wo, F)
            if with_kernel and not implicit_kgrad:
                _im2col_into(x[n0:n1], geo, cols)
                matmul_tn_add(cols, dy_block, partials[slot[lo]])    # (taps, F)
            if with_input:
                matmul_into(dy_block, kernel_t, cols)
                accel.col2im(cols, geo, (n1 - n0, *x.shape[1:]), out=dx[n0:n1])
    _threads.run_chunks(work, n)
    dkernel = partials.sum(axis=0).reshape(kh, kw, c_in, filters) if with_kernel else None
    return dx, dkernel


def _im2col_backward(s, x: np.ndarray, geo: Geometry, kernel: np.ndarray,
                     dy: np.ndarray, with_kernel: bool, with_input: bool = True):
    """``(dx (N, Hp, Wp, C) or None, dkernel or None)`` through columns, a group and a
    block of images at a time: ``dkernel = columns^T @ dy``, ``dx = col2im(dy @ kernel^T)``."""
    kh, kw, c_g, filters = kernel.shape
    if s.groups == 1:
        return _cached_blocks_backward(x, geo, kernel, np.ascontiguousarray(dy), with_kernel,
                                       with_input, _register_products(s, kh * kw * c_g, filters))
    n, f_g = x.shape[0], filters // s.groups
    dx = output_empty(x.shape, s.dtype)                              # (N, Hp, Wp, C)
    dkernel = np.empty((kh * kw * c_g, filters), dtype=s.dtype) if with_kernel else None
    for g in range(s.groups):
        xg = _group_slice(x, g, c_g, s.groups)                       # (N, Hp, Wp, C_g)
        dyg = _group_slice(dy, g, f_g, s.groups).reshape(n, -1, f_g)  # (N, Ho*Wo, F_g)
        kg_t = np.ascontiguousarray(
            kernel[..., g * f_g:(g + 1) * f_g].reshape(-1, f_g).T)   # (F_g, kh*kw*C_g)
        dk_g = None
        for n0, n1 in _batch_blocks(s, geo, c_g):
            dy_block = dyg[n0:n1].reshape(-1, f_g)                   # (M_block, F_g)
            if with_kernel:
                cols = accel.im2col(xg[n0:n1], geo)                 # (M_block, kh*kw*C_g)
                part = _threads.matmul_tn(cols, dy_block)            # (kh*kw*C_g, F_g)
                dk_g = part if dk_g is None else dk_g + part
                if not with_input:
                    continue
                dcols = _threads.matmul(dy_block, kg_t, out=cols)    # reuse the buffer
            else:
                dcols = _threads.matmul(dy_block, kg_t)
            dx_block = accel.col2im(dcols, geo, xg[n0:n1].shape)    # (block, Hp, Wp, C_g)
            if s.groups == 1 and n1 - n0 == n:
                dx = dx_block
            elif s.groups == 1:
                dx[n0:n1] = dx_block
            else:
                dx[n0:n1, ..., g * c_g:(g + 1) * c_g] = dx_block
        if with_kernel:
            dkernel[:, g * f_g:(g + 1) * f_g] = dk_g
    if with_kernel:
        dkernel = dkernel.reshape(kh, kw, c_g, filters)
    return (dx if with_input else None), dkernel
