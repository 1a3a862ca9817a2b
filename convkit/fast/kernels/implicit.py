"""Compiled convolution as an implicit matrix product (ungrouped, float32, any kernel size,
stride, dilation and zero padding), NHWC: no column matrix is written.

Output pixels are taken 8 at a time and filters :data:`LANES` at a time; the tile's sums stay
in registers while the reduction runs over the taps and the input channels (generated kernels
in :mod:`._conv_regs`), with bias and ReLU added before the tile is stored. The pixels whose
windows lie inside the input take a kernel without padding checks that reduces a kernel
row's taps in one run; the border pixels take one that checks each tap. A 1x1 convolution
is the plain product ``x2d @ w2d`` by the same tile without the pixel and tap bookkeeping
(:func:`convkit.fast._generated.conv_regs._k_gemm_regs`).

Measured on the 2-core Zen 4 machine of ``benchmarks/README.md``, two threads, 8 images of
56x56x64 -> 128 filters: the 1x1 convolution 2.27 ms (through the implicit kernel: 2.40 ms,
in the same run; PyTorch: 2.42 ms), the 3x3 stride-2 convolution 4.4-4.6 ms (im2col and
OpenBLAS: 5.4-5.5 ms).
"""
from __future__ import annotations

import functools
import math

import numpy as np

from ..._aligned import output_empty
from ...errors import ShapeError
from ...shapes import Geometry, window_geometry
from .._generated import conv_regs as _conv_regs
from .._generated.conv_regs import KROWS, KTAPS, LANES
from ..runtime import threads as _threads
from ...ops.padding import pad_nhwc
from ..runtime import backend as _backend
from ..runtime.backend import _chunk_slots, _run, jit
from .checks import _check_dy, _check_geometry, _geo_ints, _nhwc
from . import tiles
from .tiles import TAPS_MAX_SPAN, run_length  # noqa: F401 (the planner's rule)

#: fastmath of the register kernels: fused multiply-add, but no reassociation (with it,
#: LLVM would vectorise over the reduction instead of over the tile's filters)
REGISTER_FASTMATH = frozenset({"contract", "nsz"})

#: rows of both operands per pass of :func:`matmul_tn_add` (kept in the core's cache while
#: every output tile runs over them; 48-96 measured best for K = 64 and K = 576)
TN_CHUNK = 96

#: the fewest input channels of a 1x1 kernel worth the register kernel: each tile sets up
#: ``ROWS`` input rows per run of contiguous values (a kernel row of ``kw*C`` values when
#: the kernel is not dilated along the width, else one tap's ``C``), and a reduction of a
#: few values per run would not pay for that
MIN_CHANNELS = 16
#: the shortest such run for larger kernels (a 3x3 kernel over grey images: 3 values per
#: kernel row, 0.7 against 0.9 ms for the tap-major columns at 128 x 28 x 28 x 1 -> 32)
MIN_SPAN = 3
def applies(kernel_shape, groups: int, dtype, dilation_w: int = 1) -> bool:
    """Whether the convolution planner may give a convolution to
    :func:`conv2d_implicit_forward`: ungrouped, float32, a multiple of :data:`LANES` filters
    (others would leave the last filters to the much slower tail loop), and runs of
    contiguous input values per tap that pay for the tile's set-up: at least
    :data:`MIN_CHANNELS` input channels for a 1x1 kernel, else at least :data:`MIN_SPAN`
    values (``kw*C`` with ``dilation_w == 1``, ``C`` with a dilated width). The kernel
    itself takes any filter and channel count."""
    kh, kw, c_in, filters = kernel_shape
    if groups != 1 or np.dtype(dtype) != np.float32 or filters <= 0 or filters % LANES:
        return False
    if kh * kw == 1:
        return c_in >= MIN_CHANNELS
    return run_length(kw, c_in, dilation_w) >= MIN_SPAN


@functools.lru_cache(maxsize=64)
def _border_pixels(images: int, out_hw: tuple, inner: tuple) -> np.ndarray:
    """The rows of the flattened output ``(images*H_out*W_out, F)`` outside the inner window
    ``inner = ((oh0, oh1), (ow0, ow1))``, in order: the pixels whose windows reach into the
    padding. Read-only; cached per shape."""
    (a, b), (c, d) = inner
    outside = np.ones(out_hw, dtype=bool)
    outside[a:b, c:d] = False
    per_image = np.flatnonzero(outside)
    rows = (np.arange(images)[:, None] * (out_hw[0] * out_hw[1]) + per_image).ravel()
    rows.setflags(write=False)
    return rows


def conv2d_implicit_forward(x: np.ndarray, kernel: np.ndarray, bias, geometry: Geometry,
                            relu: bool = False) -> np.ndarray:
    """``y (N, H_out, W_out, F) = act(conv(x, kernel) + bias)`` for an ungrouped float32
    convolution with zero padding, ``x (N, H, W, C)``, ``kernel (kh, kw, C, F)``::

        y[n, oh, ow, f] = bias[f] + sum_{i, j, c} x_pad[n, oh*sh + i*dh, ow*sw + j*dw, c]
                                                  * kernel[i, j, c, f]

    ``act`` is ReLU when ``relu``. The padding is never materialised: the pixels whose
    windows lie inside the input (:attr:`Geometry.inner_out`) go to the register kernel
    without padding checks, the rest (:func:`_border_pixels`) to the one with them. An input
    of fewer than :data:`MIN_CHANNELS` channels is zero-padded first instead (a small copy;
    the border kernel reads each tap's few channels on their own, and with one to eight
    channels it made a 'same' layer 1.3-2.6 times slower). A filter count that is not a
    multiple of :data:`LANES` is computed with zero filters added, then cut.
    """
    where = "conv2d_implicit_forward"
    x = _nhwc(where, "x", x, np.float32)
    geo = _check_geometry(where, geometry, x.shape)
    kernel = np.asarray(kernel)
    if kernel.ndim != 4 or kernel.shape[:3] != (*geo.kernel, x.shape[3]):
        raise ShapeError(f"{where}: kernel shape {kernel.shape} does not match the geometry's "
                         f"{geo.kernel} window over {x.shape[3]} input channels "
                         f"(input shape {x.shape})")
    filters = kernel.shape[3]
    if bias is not None and np.shape(bias) != (filters,):
        raise ShapeError(f"{where}: bias must have shape ({filters},), got {np.shape(bias)}")
    return prepare_forward(x.shape, kernel.shape, geo, bool(relu))(x, kernel, bias)


@functools.lru_cache(maxsize=128)
def prepare_forward(x_shape: tuple, kernel_shape: tuple, geo: Geometry, relu: bool):
    """:func:`conv2d_implicit_forward` for inputs of ``x_shape`` and kernels of
    ``kernel_shape`` with its set-up done once: returns ``run(x, kernel, bias) -> y``. The
    geometry's numbers, the border pixels and the compiled kernels are fixed here; ``run``
    takes C-contiguous float32 arrays of those shapes (unchecked: the caller checked them
    once) and reads the kernel and bias afresh on every call, so new weights are seen.
    Cached per shapes (a model's inference calls the same few)."""
    where = "conv2d_implicit_forward"
    n, c_in, filters = x_shape[0], x_shape[3], kernel_shape[3]
    pre_pads = None
    if c_in < MIN_CHANNELS and geo.pads != ((0, 0), (0, 0)):
        pre_pads = geo.pads          # few channels: pad a small copy instead of checking taps
        geo = window_geometry(geo.padded_hw, geo.kernel, geo.strides, 0, geo.dilation,
                              where=where)
    kh, kw, sh, sw, dh, dw, top, left = _geo_ints(geo)
    width = -(-filters // LANES) * LANES           # whole register tiles of filters
    h_out, w_out = geo.out_hw
    padded_shape = (n, *geo.in_hw, c_in)
    out_shape = (n, h_out, w_out, width)
    pixels = n * h_out * w_out
    work_bytes = 4 * (math.prod(padded_shape) + kh * kw * c_in * width + pixels * width)
    # the border pixels' kernel without or with the ReLU before the store; the inner
    # pixels' and the 1x1 product's variants are chosen by kernels.tiles
    border_kernel = (_conv_regs._k_conv_fwd_regs_pad_relu if relu else
                     _conv_regs._k_conv_fwd_regs_pad)

    def operands(x, kernel, bias):
        """The padded input, the kernel as (taps, width) and the bias as (width,)."""
        if pre_pads is not None:
            x = pad_nhwc(x, pre_pads)
        if width == filters:
            w2 = np.ascontiguousarray(kernel, np.float32).reshape(-1, filters)
        else:
            w2 = np.zeros((kh * kw * c_in, width), np.float32)
            w2[:, :filters] = kernel.reshape(-1, filters)
        bias_v = np.zeros(width, np.float32)
        if bias is not None:
            bias_v[:filters] = bias
        return x, w2, bias_v

    def finish(y):
        return y if width == filters else np.ascontiguousarray(y[..., :filters])

    if (kh, kw, sh, sw) == (1, 1, 1, 1) and geo.pads == ((0, 0), (0, 0)):
        # a plain product of the pixels' rows: the kernel without the pixel and tap
        # bookkeeping
        gemm = tiles.gemm(where)

        def run_pointwise(x, kernel, bias):
            x, w2, bias_v = operands(x, kernel, bias)
            y = output_empty(out_shape, np.float32)
            y2 = y.reshape(-1, width)
            _run(gemm, pixels, x.reshape(-1, c_in), w2, bias_v, y2, relu,
                 small=work_bytes < _backend.SMALL_WORK_BYTES)
            return finish(y)
        return run_pointwise

    (oh0, oh1), (ow0, ow1) = geo.inner_out
    inner_count = n * (oh1 - oh0) * (ow1 - ow0)
    border = _border_pixels(n, geo.out_hw, geo.inner_out)
    inner_kernel = tiles.conv(where)
    if len(border):
        border_kernel = jit(border_kernel, where, fastmath=REGISTER_FASTMATH, slp=True)
    zrow = np.zeros(c_in, np.float32)

    def run(x, kernel, bias):
        x, w2, bias_v = operands(x, kernel, bias)
        y = output_empty(out_shape, np.float32)
        window = (kh, kw, sh, sw, dh, dw, top, left, h_out, w_out, y.reshape(-1, width))

        def rows(lo, hi):
            # lo:hi numbers the inner window's pixels, then the border pixels
            if lo < inner_count:
                inner_kernel(x, w2, bias_v, relu, *window, oh0, oh1, ow0, ow1, lo,
                             min(hi, inner_count))
            if hi > inner_count:
                border_kernel(x, w2, bias_v, zrow, *window, border,
                              max(lo - inner_count, 0), hi - inner_count)
        if work_bytes < _backend.SMALL_WORK_BYTES:      # the calling thread alone
            rows(0, inner_count + len(border))
        else:
            _run(rows, inner_count + len(border), small=False)
        return finish(y)
    return run


def kernel_grad_applies(dtype, channels: int, filters: int) -> bool:
    """Whether :func:`kernel_grad_add` takes a kernel gradient whole: float32, ``C`` a
    multiple of ``KROWS`` and the filters of :data:`LANES`."""
    return np.dtype(dtype) == np.float32 and channels > 0 and channels % KROWS == 0 \
        and filters > 0 and filters % LANES == 0


def kernel_grad_add(x: np.ndarray, dy2: np.ndarray, geometry: Geometry,
                    out: np.ndarray) -> None:
    """``out (kh*kw*C, F) += columns(x)^T @ dy2`` on the calling thread, without writing
    the columns of the inner window's pixels: ``x (N, H, W, C)`` and ``dy2 (N*H_out*W_out,
    F)`` C-contiguous float32, sizes as :func:`kernel_grad_applies` says (unchecked). The
    inner window (:attr:`Geometry.inner_out`) goes to the generated kernel
    (``_conv_regs._k_conv_kgrad_regs``, :data:`TN_CHUNK` pixels at a time); the border
    pixels' columns are gathered by NumPy (:func:`_border_taps`, zeros for the padding) and
    go to :func:`matmul_tn_add`."""
    where = "kernel_grad_add"
    kh, kw, sh, sw, dh, dw, top, left = _geo_ints(geometry)
    h_out, w_out = geometry.out_hw
    (oh0, oh1), (ow0, ow1) = geometry.inner_out
    inner_count = x.shape[0] * (oh1 - oh0) * (ow1 - ow0)
    if inner_count:
        kgrad = jit(_conv_regs._k_conv_kgrad_regs, where, fastmath=REGISTER_FASTMATH,
                    slp=True)
        kgrad(x, dy2, out, kh, kw, sh, sw, dh, dw, top, left, h_out, w_out, oh0, oh1, ow0,
              ow1, TN_CHUNK, 0, inner_count)
    border, taps, inside = _border_taps(x.shape[0], geometry)
    if len(border):
        cols = x.reshape(-1, x.shape[3])[taps]                   # (B, kh*kw, C)
        cols[~inside] = 0.0
        matmul_tn_add(cols.reshape(len(border), -1), dy2[border], out)


#: :func:`kernel_grad_taps` takes kernels of at most this many taps (``kh*kw*C_in``): the
#: tap tiles each pass over a chunk's gathered ``dy``. Measured against the wide grid and
#: the column products (kernel gradient alone, two threads): 0.51-0.69 of their time from
#: 100 to 150 taps (5x5x4, 3x3x12, 5x5x6, 7x7x3), 0.87 at 300 (5x5x12 -> 64)
TAPS_KGRAD_MAX = 300


def kernel_grad_taps_applies(dtype, kernel_shape, groups: int = 1) -> bool:
    """Whether :func:`kernel_grad_taps` takes this kernel gradient: float32, ungrouped, at
    most :data:`TAPS_KGRAD_MAX` taps, input channels that :func:`kernel_grad_add`'s
    channel tiles do not fit (not a multiple of ``KROWS``: a first layer's 1 or 3, LeNet-5's
    6), and whole register tiles of filters (a multiple of :data:`LANES`; with 6 or 8
    filters most of each tile would be padding, and the wide-grid kernels are faster)."""
    kh, kw, c_in, filters = (int(v) for v in kernel_shape)
    return (np.dtype(dtype) == np.float32 and groups == 1 and filters > 0
            and filters % LANES == 0 and c_in % KROWS != 0
            and 0 < kh * kw * c_in <= TAPS_KGRAD_MAX)


def kernel_grad_taps(dy: np.ndarray, x: np.ndarray, kernel_shape, geometry: Geometry,
                     relu_y=None):
    """``(dkernel (kh, kw, C, F), dbias (F,))`` of a float32 convolution with few input
    channels, ``x (N, H, W, C)``, ``dy (N, H_out, W_out, F)``; ``dy`` is masked by
    ``relu_y > 0`` first when the output of a fused ReLU is given::

        dkernel[a, b, c, f] = sum_{n, i, j} x_pad[n, i*sh + a*dh, j*sw + b*dw, c] * dz[n, i, j, f]
        dbias[f] = sum_{n, i, j} dz[n, i, j, f]

    In one pass over ``dy`` and ``relu_y`` per thread, nothing the size of ``dy`` written:
    :data:`TN_CHUNK` pixels' ``dz`` at a time are gathered (mask and bias sums on the way),
    then tiles of ``KTAPS`` (9) taps x :data:`LANES` filters
    (``_conv_regs._k_conv_kgrad_taps_regs``) sum over them in registers, reading the taps
    from ``x`` in place. Zero padding is applied to ``x`` first (a copy of the input, small
    beside ``dy`` for few channels). Each thread's sums are float32 over its pixels, the
    threads' sums added in float64. The MNIST convnet's first layer (128 x 28 x 28 x 1,
    3x3 -> 32, ReLU): 0.9-1.2 ms on two threads, against 2.1-2.3 ms for the wide-grid kernel.
    Sizes as :func:`kernel_grad_taps_applies` says (unchecked beyond the shapes)."""
    where = "kernel_grad_taps"
    x = _nhwc(where, "x", x, np.float32)
    geo = _check_geometry(where, geometry, x.shape)
    kh, kw, c_in, filters = (int(v) for v in kernel_shape)
    if (kh, kw) != tuple(geo.kernel) or c_in != x.shape[3]:
        raise ShapeError(f"{where}: kernel shape {tuple(kernel_shape)} does not fit input "
                         f"shape {x.shape} and kernel size {geo.kernel}")
    h_out, w_out = geo.out_hw
    dy2 = _check_dy(where, dy, geo, x.shape[0], filters, np.float32).reshape(-1, filters)
    mask = relu_y is not None
    y2 = _check_dy(where, relu_y, geo, x.shape[0], filters, np.float32,
                   "relu_y").reshape(-1, filters) if mask else dy2
    x = pad_nhwc(x, geo.pads)                     # no copy without padding
    _, _, sh, sw, dh, dw, _, _ = _geo_ints(geo)
    width = x.shape[2]
    taps = kh * kw * c_in
    toff = ((np.arange(kh)[:, None, None] * dh * width + np.arange(kw)[None, :, None] * dw)
            * c_in + np.arange(c_in)).reshape(-1)
    toff = np.concatenate([toff, np.zeros(-taps % KTAPS, np.int64)]).astype(np.int64)
    wide = -(-filters // LANES) * LANES
    kgrad = jit(_conv_regs._k_conv_kgrad_taps_regs, where, fastmath=REGISTER_FASTMATH,
                slp=True)
    chunks, slot = _chunk_slots(dy2.shape[0])
    outs = np.zeros((len(chunks), len(toff), wide), np.float32)
    dbs = np.zeros((len(chunks), filters), np.float64)

    def work(lo, hi):
        q = slot[lo]
        kgrad(x, dy2, y2, mask, toff, outs[q], dbs[q], sh, sw, h_out, w_out, TN_CHUNK, lo, hi)
    if dy2.shape[0]:
        _threads.run_chunks(work, dy2.shape[0], single_blas=False)
    dk = outs.sum(axis=0, dtype=np.float64)[:taps, :filters]
    return (dk.astype(np.float32).reshape(kh, kw, c_in, filters),
            dbs.sum(axis=0).astype(np.float32))


@functools.lru_cache(maxsize=64)
def _border_taps(images: int, geometry: Geometry):
    """``(rows, taps, inside)`` for the border pixels of :func:`_border_pixels`: ``taps (B,
    kh*kw)`` the input pixel (a row of ``x.reshape(-1, C)``) of each tap, clipped into the
    input, and ``inside`` whether the tap is really there (else it reads padding: zero).
    Read-only; cached per shape."""
    rows = _border_pixels(images, geometry.out_hw, geometry.inner_out)
    (kh, kw), (sh, sw), (dh, dw) = geometry.kernel, geometry.strides, geometry.dilation
    (top, _), (left, _) = geometry.pads
    height, width = geometry.in_hw
    n, rest = np.divmod(rows, geometry.out_hw[0] * geometry.out_hw[1])
    oh, ow = np.divmod(rest, geometry.out_hw[1])
    ih = (oh * sh - top)[:, None, None] + (np.arange(kh) * dh)[None, :, None]
    iw = (ow * sw - left)[:, None, None] + (np.arange(kw) * dw)[None, None, :]
    inside = ((ih >= 0) & (ih < height) & (iw >= 0) & (iw < width)).reshape(len(rows),
                                                                            kh * kw)
    taps = ((n[:, None, None] * height + np.clip(ih, 0, height - 1)) * width
            + np.clip(iw, 0, width - 1)).reshape(len(rows), kh * kw)
    for array in (taps, inside):
        array.setflags(write=False)
    return rows, taps, inside


def products_apply(dtype, k_dim: int, n_dim: int) -> bool:
    """Whether :func:`matmul_rows` (``(M, K) @ (K, N)``) and :func:`matmul_tn_add`
    (``(M, K)^T @ (M, N)``) run whole in registers: float32, ``K`` a multiple of ``KROWS``
    and ``N`` a multiple of :data:`LANES`."""
    return np.dtype(dtype) == np.float32 and k_dim % KROWS == 0 and n_dim % LANES == 0 \
        and k_dim > 0 and n_dim > 0


def matmul_rows(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """``out = a @ b`` on the calling thread, ``a (M, K)``, ``b (K, N)``, ``out (M, N)``
    C-contiguous float32 with ``N`` a multiple of :data:`LANES` (see :func:`products_apply`):
    the plain register-tile product, no bias. Against one-thread OpenBLAS, 12544 x 128 @
    128 x 64 (a 1x1 convolution's input gradient, per half of the rows): 1.84 against
    2.17 ms; 3136 x 128 @ 128 x 576: 4.10 against 4.42 ms."""
    tiles.gemm("matmul_rows")(a, b, np.zeros(b.shape[1], np.float32), out, False, 0,
                              a.shape[0])


def matmul_tn_add(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """``out += a^T @ b`` on the calling thread, ``a (M, K)``, ``b (M, N)``, ``out (K, N)``
    C-contiguous float32 with ``K`` a multiple of ``KROWS`` and ``N`` of :data:`LANES`
    (:func:`products_apply`): a kernel gradient's partial sum, its tiles in registers over
    :data:`TN_CHUNK` rows at a time. Against one-thread OpenBLAS per half of the rows:
    1.83 against 2.23 ms for ``K = 64, N = 128``, 4.2 against 4.7 ms for ``K = 576``."""
    tn = jit(_conv_regs._k_gemm_tn_regs, "matmul_tn_add", fastmath=REGISTER_FASTMATH,
             slp=True)
    tn(a, b, out, TN_CHUNK, 0, a.shape[0])
