"""Compiled fast paths for the CPU (numba), channels_last only.

These kernels do the same arithmetic as the NumPy ops in :mod:`convkit.ops.conv` and
:mod:`convkit.ops.pool`, but compiled and spread over the cores: each kernel works on a
range of ``batch * rows`` (or of images, where several windows write the same input cell),
one contiguous range per thread (:func:`convkit.ops._threads.run_chunks`; the kernels
release the GIL), and the innermost loop runs over contiguous channels (or output columns)
through a 1-D view so it vectorises. Reductions (kernel and bias gradients) add into one
partial sum per thread. Plain threads rather than numba's parallel loops: no thread-pool
barrier spinning when the cores are shared, and a much shorter compile.

numba is optional (``pip install convkit[fast]``) and imported only when a kernel is first
needed. :func:`available` says whether the kernels can run: it is ``False`` without numba or
when the environment variable ``CONVKIT_ACCEL=0`` is set; callers then use the NumPy ops.
The public ops in :mod:`convkit.ops` call these kernels when :func:`enabled` (backend
``"auto"``, see :func:`set_backend`, and numba available).
Kernels compile once per machine (``cache=True``); one compiled kernel serves every stride,
dilation and padding (they are runtime integers), specialised only by dtype (float32 and
float64 are both supported; the dtype of ``x`` is kept).

Every function takes the window geometry from :func:`convkit.shapes.window_geometry`
(pads ``((top, bottom), (left, right))``, ceil-mode ``extra`` ``(bottom, right)``,
output size); arrays are NHWC::

    max_pool2d_forward(x, geo)                     (N, H, W, C) -> y, argmax (N, Ho, Wo, C)
    max_pool2d_values(x, geo)                      -> y only (inference)
    max_pool2d_backward(dy, argmax, x_shape)       -> dx (N, H, W, C)
    max_pool2d_backward_direct(dy, x, geo)         -> dx, no argmax (windows not overlapping)
    avg_pool2d_forward(x, geo, count_include_pad)  -> y (N, Ho, Wo, C)
    avg_pool2d_backward(dy, geo, x_shape, count_include_pad) -> dx
    depthwise_conv2d_forward(x, kernel (kh, kw, 1, C*dm), bias, geo, dm) -> (N, Ho, Wo, C*dm)
    depthwise_conv2d_backward(dy, x, kernel, geo, dm) -> dx, dkernel, dbias
    conv2d_direct_forward(x, kernel (kh, kw, Cin, Cout), bias, geo, relu) -> (N, Ho, Wo, Cout)
    conv2d_direct_backward(dy, x, kernel, geo)     -> dx, dkernel, dbias
    conv2d_wide_forward(x, kernel, bias, geo, relu) -> y   (stride 1, few channels)
    conv2d_wide_backward(dy, x, kernel, geo, relu_y, input_grad) -> dx, dkernel, dbias
    im2col(x, geo)                                 -> (N*Ho*Wo, kh*kw*C)
    col2im(dcols, geo, x_shape)                    -> dx (N, H, W, C)
    bias_act_(y, bias, relu)                       y += bias (then ReLU), in place
    relu_backward(dy, y)                           dy * (y > 0), any shape
    conv2d_kernel_grad_small(dy, x, kernel_shape, geo, relu_y, write_dz)
                                                   -> dkernel, dbias, dz (few taps, one pass)

Output sizes per axis (input ``n``, kernel ``k``, stride ``s``, dilation ``d``, pads
``before/after``) are the geometry's: ``floor((n + before + after - d*(k-1) - 1) / s) + 1``
(ceil in ceil mode). Conv padding is zeros; max pooling's padding never wins (-inf).

>>> from convkit.shapes import window_geometry
>>> geo = window_geometry((4, 4), 2, 2)
>>> x = np.arange(16.0).reshape(1, 4, 4, 1)
>>> if available():
...     y, arg = max_pool2d_forward(x, geo)
...     print(y[0, :, :, 0].tolist(), arg[0, :, :, 0].tolist())
... else:
...     print([[5.0, 7.0], [13.0, 15.0]], [[5, 7], [13, 15]])
[[5.0, 7.0], [13.0, 15.0]] [[5, 7], [13, 15]]
"""
from __future__ import annotations

import contextlib
import os

import numpy as np

from ..errors import ConvkitError, ShapeError
from ..shapes import Geometry
from . import _threads

__all__ = [
    "available", "enabled", "threaded", "set_backend", "get_backend", "use_backend",
    "num_threads", "jit",
    "max_pool2d_forward", "max_pool2d_values", "max_pool2d_backward",
    "max_pool2d_backward_direct",
    "avg_pool2d_forward", "avg_pool2d_backward",
    "depthwise_conv2d_forward", "depthwise_conv2d_backward",
    "conv2d_direct_forward", "conv2d_direct_backward", "conv2d_wide_forward",
    "conv2d_wide_backward",
    "im2col", "col2im", "bias_act_", "relu_backward", "conv2d_kernel_grad_small",
]

# Reassociation and fused multiply-add only change results by float32 rounding; NaN and
# infinity handling stays exact (no "nnan"/"ninf"), and pooling kernels use no fastmath.
FASTMATH = frozenset({"reassoc", "contract", "nsz"})

_numba = None          # the numba module once imported
_import_failed = False
_compiled: dict = {}   # python kernel function -> numba dispatcher


def _disabled_by_env() -> bool:
    return os.environ.get("CONVKIT_ACCEL", "1").strip().lower() in ("0", "false", "no", "off")


# ============================================================================ backend choice
#: ``"auto"``: the public ops use these kernels (and the threaded products of
#: :mod:`convkit.ops._threads`) where they apply; ``"numpy"``: the plain NumPy ops only.
BACKENDS = ("auto", "numpy")
_backend = "numpy" if os.environ.get("CONVKIT_BACKEND", "").strip().lower() == "numpy" \
    else "auto"


def set_backend(name: str) -> None:
    """Choose how the public ops in :mod:`convkit.ops` compute: ``"auto"`` (default: the
    compiled kernels when :func:`available`, threaded matrix products always) or ``"numpy"``
    (the plain NumPy code, the reference the fast paths are tested against). The environment
    variable ``CONVKIT_BACKEND=numpy`` sets it at import; ``CONVKIT_ACCEL=0`` keeps ``"auto"``
    from using numba.

    >>> set_backend("numpy"); get_backend()
    'numpy'
    >>> set_backend("auto")
    """
    global _backend
    if not isinstance(name, str) or name.lower() not in BACKENDS:
        raise ConvkitError(f"set_backend: backend must be one of {BACKENDS}, got {name!r}")
    _backend = name.lower()


def get_backend() -> str:
    """The backend :func:`set_backend` chose: ``"auto"`` or ``"numpy"``."""
    return _backend


@contextlib.contextmanager
def use_backend(name: str):
    """``with use_backend("numpy"): ...`` -- :func:`set_backend` inside the block only."""
    previous = _backend
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)


def enabled() -> bool:
    """True when the ops should call the compiled kernels: backend ``"auto"`` and
    :func:`available`."""
    return _backend == "auto" and available()


def threaded() -> bool:
    """True when the ops should use the threaded matrix products (backend ``"auto"``)."""
    return _backend == "auto"


def available() -> bool:
    """True when numba is importable and ``CONVKIT_ACCEL`` is not ``0``."""
    global _numba, _import_failed
    if _disabled_by_env():
        return False
    if _numba is None and not _import_failed:
        try:
            import numba
        except ImportError:
            _import_failed = True
        else:
            _numba = numba
    return _numba is not None


def _require(where: str):
    if not available():
        reason = ("CONVKIT_ACCEL=0 is set" if _disabled_by_env()
                  else "numba is not installed (pip install convkit[fast])")
        raise ConvkitError(f"{where}: the compiled kernels are unavailable: {reason}; "
                           f"use the NumPy ops in convkit.ops instead")
    return _numba


def num_threads() -> int:
    """Threads the kernels split their rows over (``CONVKIT_NUM_THREADS`` or the CPUs)."""
    return _threads.num_threads()


def jit(func, where: str, fastmath=FASTMATH, helpers=()):
    """The compiled version of a kernel written as a plain module-level function:
    ``numba.njit(cache=True, nogil=True)``, serial (the threads come from
    :func:`convkit.ops._threads.run_chunks`, which calls it on ranges of rows).

    ``helpers`` are module-level functions the kernel calls; they are compiled first and
    replaced in the kernel's module by their compiled versions. Later calls return the same
    dispatcher. Raises :class:`ConvkitError` naming ``where`` when numba is unavailable.
    """
    numba = _require(where)            # also honours CONVKIT_ACCEL=0 set later
    if hasattr(func, "py_func"):       # already compiled
        return func
    dispatcher = _compiled.get(func)
    if dispatcher is None:
        for helper in helpers:
            if not hasattr(helper, "py_func"):
                func.__globals__[helper.__name__] = jit(helper, where, fastmath)
        options = dict(nogil=True, fastmath=set(fastmath) if fastmath else False)
        try:
            dispatcher = numba.njit(cache=True, **options)(func)
        except RuntimeError:   # no writable cache directory: compile in memory each run
            dispatcher = numba.njit(cache=False, **options)(func)
        _compiled[func] = dispatcher
    return dispatcher


def _run(kernel, total: int, *args) -> None:
    """``kernel(*args, lo, hi)`` over contiguous chunks of ``range(total)``, one per thread."""
    _threads.run_chunks(lambda lo, hi: kernel(*args, lo, hi), total, single_blas=False)


def _run_partial(kernel, total: int, shapes, dtype, *args):
    """Like :func:`_run` for reductions: each chunk adds into its own zeroed partial arrays
    (``kernel(*args, *partials, lo, hi)``); returns the partials summed over the chunks."""
    chunks = _threads.split(total, _threads.num_threads())
    partials = [np.zeros((len(chunks), *shape), dtype) for shape in shapes]
    slot = {start: q for q, (start, _) in enumerate(chunks)}

    def work(lo, hi):
        q = slot[lo]
        kernel(*args, *(p[q] for p in partials), lo, hi)
    _threads.run_chunks(work, total, single_blas=False)
    return [p.sum(axis=0) for p in partials]


# ============================================================================ validation
def _nhwc(where: str, name: str, arr, dtype=None) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 4:
        raise ShapeError(f"{where}: expected a 4-D (batch, height, width, channels) {name}, "
                         f"got shape {arr.shape}")
    if dtype is None:
        if arr.dtype not in (np.float32, np.float64):
            raise ShapeError(f"{where}: {name} must be float32 or float64, got {arr.dtype}")
        dtype = arr.dtype
    return np.ascontiguousarray(arr, dtype=dtype)


def _check_geometry(where: str, geometry, x_shape) -> Geometry:
    if not isinstance(geometry, Geometry):
        raise ShapeError(f"{where}: geometry must be a convkit.shapes.Geometry "
                         f"(from window_geometry), got {type(geometry).__name__}")
    if tuple(x_shape[1:3]) != tuple(geometry.in_hw):
        raise ShapeError(f"{where}: input shape {tuple(x_shape)} does not match the geometry's "
                         f"input size {geometry.in_hw}")
    return geometry


def _check_dy(where: str, dy, geo: Geometry, batch: int, channels: int, dtype) -> np.ndarray:
    dy = _nhwc(where, "dy", dy, dtype)
    expected = (batch, *geo.out_hw, channels)
    if dy.shape != expected:
        raise ShapeError(f"{where}: dy has shape {dy.shape}, expected the output shape "
                         f"{expected}")
    return dy


def _geo_ints(geo: Geometry):
    """(kh, kw, sh, sw, dh, dw, top, left) as plain ints for the kernels."""
    (kh, kw), (sh, sw), (dh, dw) = geo.kernel, geo.strides, geo.dilation
    (top, _), (left, _) = geo.pads
    return kh, kw, sh, sw, dh, dw, top, left


# ============================================================================ max pooling
def _k_maxpool_fwd(x, y, arg, kh, kw, sh, sw, dh, dw, top, left, lo, hi):
    n_batch, height, width, channels = x.shape
    h_out, w_out = y.shape[1], y.shape[2]
    for r in range(lo, hi):
        n = r // h_out
        oh = r - n * h_out
        for ow in range(w_out):
            dst = y[n, oh, ow]                  # (C,) views: inner loops index by c only
            where = arg[n, oh, ow]
            first = True
            for i in range(kh):
                ih = oh * sh - top + i * dh
                if ih < 0 or ih >= height:
                    continue
                for j in range(kw):
                    iw = ow * sw - left + j * dw
                    if iw < 0 or iw >= width:
                        continue
                    flat = ih * width + iw
                    src = x[n, ih, iw]
                    if first:
                        for c in range(channels):
                            dst[c] = src[c]
                            where[c] = flat
                        first = False
                    else:
                        for c in range(channels):
                            v = src[c]
                            best = dst[c]
                            # strict '>' keeps the first maximum; a NaN always takes
                            # over, so the last NaN of the window wins (PyTorch's rule).
                            # Selects, not a branch: the loop vectorises and a random
                            # winner pattern costs no mispredictions
                            take = (v > best) | (v != v)
                            dst[c] = v if take else best
                            where[c] = flat if take else where[c]
            if first:  # the window holds only padding
                for c in range(channels):
                    dst[c] = -np.inf
                    where[c] = -1


def _k_maxpool_fwd_values(x, y, kh, kw, sh, sw, dh, dw, top, left, lo, hi):
    """:func:`_k_maxpool_fwd` without the argmax (inference): the same values."""
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    h_out, w_out = y.shape[1], y.shape[2]
    for r in range(lo, hi):
        n = r // h_out
        oh = r - n * h_out
        for ow in range(w_out):
            dst = y[n, oh, ow]
            first = True
            for i in range(kh):
                ih = oh * sh - top + i * dh
                if ih < 0 or ih >= height:
                    continue
                for j in range(kw):
                    iw = ow * sw - left + j * dw
                    if iw < 0 or iw >= width:
                        continue
                    src = x[n, ih, iw]
                    if first:
                        for c in range(channels):
                            dst[c] = src[c]
                        first = False
                    else:
                        for c in range(channels):
                            v = src[c]
                            best = dst[c]
                            dst[c] = v if (v > best) | (v != v) else best
            if first:
                for c in range(channels):
                    dst[c] = -np.inf


def _k_maxpool_bwd(dy, arg, dx_flat, lo, hi):
    """``dx_flat (N, H*W*C)``: cell ``(ih, iw, c)`` of image ``n`` is ``(ih*W + iw)*C + c``."""
    h_out, w_out, channels = dy.shape[1], dy.shape[2], dy.shape[3]
    for n in range(lo, hi):          # windows of one image may overlap: one image per task
        dst = dx_flat[n]
        for p in range(dst.shape[0]):
            dst[p] = 0
        for oh in range(h_out):
            for ow in range(w_out):
                g = dy[n, oh, ow]
                where = arg[n, oh, ow]
                for c in range(channels):
                    a = where[c]
                    if a >= 0:
                        dst[a * channels + c] += g[c]


def _k_maxpool_bwd_tiles(dy, arg, dx, kh, kw, lo, hi):
    """Max-pool gradient from the argmax when the windows tile the input (stride = window,
    no padding, no dilation): input rows ``lo:hi`` over ``N*H``; every cell is written once,
    ``dy`` where the argmax names it and 0 elsewhere (a select, no scatter), so ``dx``
    needs no zeroing; rows and columns no window reaches get 0."""
    height, width, channels = dx.shape[1], dx.shape[2], dx.shape[3]
    h_out, w_out = dy.shape[1], dy.shape[2]
    for r in range(lo, hi):
        n = r // height
        ih = r - n * height
        oh = ih // kh
        row = dx[n, ih]
        if oh >= h_out:
            for iw in range(width):
                cell = row[iw]
                for c in range(channels):
                    cell[c] = 0
            continue
        for ow in range(w_out):
            g = dy[n, oh, ow]
            where = arg[n, oh, ow]
            for j in range(kw):
                iw = ow * kw + j
                flat = ih * width + iw
                cell = row[iw]
                for c in range(channels):
                    cell[c] = g[c] if where[c] == flat else 0
        for iw in range(w_out * kw, width):
            cell = row[iw]
            for c in range(channels):
                cell[c] = 0


def _k_maxpool_bwd_direct(x, dy, dx, best, win, tiled, kh, kw, sh, sw, dh, dw, top, left,
                          lo, hi):
    """Max-pool gradient without an argmax array, for windows that do not overlap: per
    window, find the winner of each channel (as :func:`_k_maxpool_fwd`: first maximum, the
    last NaN) and write ``dy`` there and 0 in the window's other cells. Rows ``lo:hi`` over
    ``N*H_out``; output row ``oh`` first zeroes its band of input rows (``oh*sh - top`` up
    to the next row's band, the last row to the bottom), so cells no window covers are 0
    and ``dx`` needs no zeroing beforehand; with ``tiled`` (the windows tile the input
    exactly) every cell is some window's and that pass is skipped."""
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    h_out, w_out = dy.shape[1], dy.shape[2]
    for r in range(lo, hi):
        n = r // h_out
        oh = r - n * h_out
        band_lo = 0 if oh == 0 else max(0, oh * sh - top)
        band_hi = height if oh == h_out - 1 else min(height, (oh + 1) * sh - top)
        for ih in range(band_lo, band_hi if not tiled else band_lo):
            row = dx[n, ih]
            for iw in range(width):
                cell = row[iw]
                for c in range(channels):
                    cell[c] = 0
        for ow in range(w_out):
            first = True
            k = 0
            for i in range(kh):
                ih = oh * sh - top + i * dh
                if ih < 0 or ih >= height:
                    continue
                for j in range(kw):
                    iw = ow * sw - left + j * dw
                    if iw < 0 or iw >= width:
                        continue
                    src = x[n, ih, iw]
                    if first:
                        for c in range(channels):
                            best[c] = src[c]
                            win[c] = 0
                        first = False
                    else:
                        for c in range(channels):
                            v = src[c]
                            b = best[c]
                            take = (v > b) | (v != v)
                            best[c] = v if take else b
                            win[c] = k if take else win[c]
                    k += 1
            if first:       # only padding: no gradient
                continue
            g = dy[n, oh, ow]
            k = 0
            for i in range(kh):
                ih = oh * sh - top + i * dh
                if ih < 0 or ih >= height:
                    continue
                for j in range(kw):
                    iw = ow * sw - left + j * dw
                    if iw < 0 or iw >= width:
                        continue
                    dst = dx[n, ih, iw]
                    for c in range(channels):
                        dst[c] = g[c] if win[c] == k else 0
                    k += 1


def max_pool2d_backward_direct(dy: np.ndarray, x: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Gradient of max pooling from ``x`` itself (no argmax array), for windows that do not
    overlap (stride >= dilated window on both axes): one pass that finds each window's
    winner and writes ``dy`` to it. Same result as :func:`max_pool2d_backward` of
    :func:`max_pool2d_forward`'s argmax. ``x (N, H, W, C)``, ``dy (N, H_out, W_out, C)``."""
    where = "max_pool2d_backward_direct"
    kernel = jit(_k_maxpool_bwd_direct, where, fastmath=False)
    x = _nhwc(where, "input", x)
    geo = _check_geometry(where, geometry, x.shape)
    (kh, kw), (sh, sw), (dh, dw) = geo.kernel, geo.strides, geo.dilation
    if sh < (kh - 1) * dh + 1 or sw < (kw - 1) * dw + 1:
        raise ShapeError(f"{where}: the windows overlap (kernel {geo.kernel}, strides "
                         f"{geo.strides}, dilation {geo.dilation}); use max_pool2d_backward")
    dy = _check_dy(where, dy, geo, x.shape[0], x.shape[3], x.dtype)
    dx = np.empty(x.shape, dtype=x.dtype)      # every cell is written by the kernel
    if geo.out_hw[0] == 0 or geo.out_hw[1] == 0:
        dx[...] = 0
        return dx
    chunks = _threads.split(x.shape[0] * geo.out_hw[0], _threads.num_threads())
    scratch = np.empty((len(chunks), 2, x.shape[3]), dtype=x.dtype)
    wins = np.empty((len(chunks), x.shape[3]), dtype=np.int64)
    slot = {start: q for q, (start, _) in enumerate(chunks)}

    tiled = (geo.dilation == (1, 1) and geo.kernel == geo.strides
             and geo.pads == ((0, 0), (0, 0))
             and geo.out_hw[0] * sh == x.shape[1] and geo.out_hw[1] * sw == x.shape[2])

    def work(lo, hi):
        q = slot[lo]
        kernel(x, dy, dx, scratch[q, 0], wins[q], tiled, *_geo_ints(geo), lo, hi)
    _threads.run_chunks(work, x.shape[0] * geo.out_hw[0], single_blas=False)
    return dx


def max_pool2d_values(x: np.ndarray, geometry: Geometry) -> np.ndarray:
    """The ``y`` of :func:`max_pool2d_forward` alone (no argmax array is written): for
    inference. ``x (N, H, W, C)`` -> ``y (N, H_out, W_out, C)``; a NaN in a window gives NaN."""
    where = "max_pool2d_values"
    kernel = jit(_k_maxpool_fwd_values, where, fastmath=False)
    x = _nhwc(where, "input", x)
    geo = _check_geometry(where, geometry, x.shape)
    y = np.empty((x.shape[0], *geo.out_hw, x.shape[3]), dtype=x.dtype)
    _run(kernel, x.shape[0] * geo.out_hw[0], x, y, *_geo_ints(geo))
    return y


def max_pool2d_forward(x: np.ndarray, geometry: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """Max pooling with the position of each maximum.

    ``x (N, H, W, C)`` -> ``y (N, H_out, W_out, C)`` and ``argmax`` (int32, same shape): the
    flat index ``ih * W + iw`` of the winning cell in the unpadded input, the first maximum
    in row-major window order on a tie, ``-1`` (and ``y = -inf``) where a window holds only
    padding. Padded cells never win; a NaN in a window wins (the last NaN, as in PyTorch).
    Dilation, strides, pads and ceil mode come from ``geometry``.

    >>> from convkit.shapes import window_geometry
    >>> y, arg = max_pool2d_forward(np.array([[1., 4.], [4., 2.]]).reshape(1, 2, 2, 1),
    ...                             window_geometry((2, 2), 2))      # doctest: +SKIP
    >>> float(y[0, 0, 0, 0]), int(arg[0, 0, 0, 0])                     # doctest: +SKIP
    (4.0, 1)
    """
    where = "max_pool2d_forward"
    kernel = jit(_k_maxpool_fwd, where, fastmath=False)
    x = _nhwc(where, "input", x)
    geo = _check_geometry(where, geometry, x.shape)
    shape = (x.shape[0], *geo.out_hw, x.shape[3])
    y = np.empty(shape, dtype=x.dtype)
    arg = np.empty(shape, dtype=np.int32)
    _run(kernel, x.shape[0] * geo.out_hw[0], x, y, arg, *_geo_ints(geo))
    return y, arg


def max_pool2d_backward(dy: np.ndarray, argmax: np.ndarray, x_shape,
                        geometry: Geometry | None = None) -> np.ndarray:
    """Gradient of :func:`max_pool2d_forward`: ``dx[n, argmax // W, argmax % W, c] += dy``
    (overlapping windows add up; ``argmax == -1`` sends nothing). Returns ``x_shape``, the
    dtype of ``dy``. With the forward's ``geometry``, windows that tile the input take a
    faster pass that writes each cell once.
    """
    where = "max_pool2d_backward"
    kernel = jit(_k_maxpool_bwd, where, fastmath=False)
    dy = _nhwc(where, "dy", dy)
    argmax = np.ascontiguousarray(argmax)
    x_shape = tuple(int(v) for v in x_shape)
    if argmax.shape != dy.shape or argmax.dtype != np.int32:
        raise ShapeError(f"{where}: argmax must be int32 shaped like dy {dy.shape}, got "
                         f"{argmax.dtype} {argmax.shape}")
    if len(x_shape) != 4 or x_shape[0] != dy.shape[0] or x_shape[3] != dy.shape[3]:
        raise ShapeError(f"{where}: x_shape {x_shape} does not fit dy shape {dy.shape}")
    if argmax.size and int(argmax.max()) >= x_shape[1] * x_shape[2]:
        raise ShapeError(f"{where}: argmax holds index {int(argmax.max())}, beyond the "
                         f"{x_shape[1]}x{x_shape[2]} input")
    dx = np.empty(x_shape, dtype=dy.dtype)
    if geometry is not None and _is_tiling(_check_geometry(where, geometry, x_shape)) \
            and tuple(geometry.out_hw) == dy.shape[1:3]:
        tiles = jit(_k_maxpool_bwd_tiles, where, fastmath=False)
        _run(tiles, x_shape[0] * x_shape[1], dy, argmax, dx, *geometry.kernel)
        return dx
    _run(kernel, dy.shape[0], dy, argmax, dx.reshape(x_shape[0], -1))
    return dx


# ======================================================================== average pooling
def _k_avgpool_fwd(x, y, kh, kw, sh, sw, dh, dw, top, left, lo_h, hi_h, lo_w, hi_w, lo, hi):
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    h_out, w_out = y.shape[1], y.shape[2]
    divisor = np.empty(1, dtype=y.dtype)     # the count in the array's dtype: float32 math
    for r in range(lo, hi):
        n = r // h_out
        oh = r - n * h_out
        rows = 0
        for i in range(kh):
            p = oh * sh - top + i * dh
            if p >= lo_h and p < hi_h:
                rows += 1
        for ow in range(w_out):
            cols = 0
            for j in range(kw):
                p = ow * sw - left + j * dw
                if p >= lo_w and p < hi_w:
                    cols += 1
            divisor[0] = max(rows * cols, 1)
            count = divisor[0]
            dst = y[n, oh, ow]
            for c in range(channels):
                dst[c] = 0
            for i in range(kh):
                ih = oh * sh - top + i * dh
                if ih < 0 or ih >= height:
                    continue
                for j in range(kw):
                    iw = ow * sw - left + j * dw
                    if iw < 0 or iw >= width:
                        continue
                    src = x[n, ih, iw]
                    for c in range(channels):
                        dst[c] += src[c]
            for c in range(channels):
                dst[c] = dst[c] / count


def _k_avgpool_tiles_fwd(x3, y3, kh, kw, channels, divisor, rs, lo, hi):
    """Average pooling whose windows tile the input (stride = window, no padding, no
    dilation): output rows ``lo:hi`` over ``N*H_out``, ``x3 (N, H, W*C)``, ``y3 (N, H_out,
    W_out*C)``. The ``kh`` input rows are summed first along whole rows (long contiguous
    loops), then ``kw`` neighbouring cells; ``rs (W*C,)`` is this task's row buffer."""
    h_out = y3.shape[1]
    span = y3.shape[2] // channels * kw * channels     # the row cells the windows cover
    row_sum = rs[:span]
    for r in range(lo, hi):
        n = r // h_out
        oh = r - n * h_out
        first = x3[n, oh * kh, :span]
        for q in range(span):
            row_sum[q] = first[q]
        for i in range(1, kh):
            src = x3[n, oh * kh + i, :span]
            for q in range(span):
                row_sum[q] += src[q]
        out = y3[n, oh]
        for ow in range(out.shape[0] // channels):
            dst = out[ow * channels:(ow + 1) * channels]
            src = row_sum[ow * kw * channels:(ow * kw + 1) * channels]
            for c in range(channels):
                dst[c] = src[c]
            for j in range(1, kw):
                src = row_sum[(ow * kw + j) * channels:(ow * kw + j + 1) * channels]
                for c in range(channels):
                    dst[c] += src[c]
            for c in range(channels):
                dst[c] = dst[c] / divisor


def _k_avgpool_tiles_bwd(dy3, dx3, kh, kw, channels, divisor, rs, lo, hi):
    """Gradient of :func:`_k_avgpool_tiles_fwd`: input rows ``lo:hi`` over ``N*H``; each
    row is ``dy / divisor`` spread over its window's ``kw`` cells (0 in the rows and columns
    no window reaches)."""
    height, h_out = dx3.shape[1], dy3.shape[1]
    width_c = dx3.shape[2]
    w_out_c = dy3.shape[2]
    span = w_out_c * kw
    for r in range(lo, hi):
        n = r // height
        ih = r - n * height
        dst = dx3[n, ih]
        oh = ih // kh
        if oh >= h_out:
            for q in range(width_c):
                dst[q] = 0
            continue
        for ow in range(w_out_c // channels):
            g = dy3[n, oh, ow * channels:(ow + 1) * channels]
            for j in range(kw):
                cell = dst[(ow * kw + j) * channels:(ow * kw + j + 1) * channels]
                for c in range(channels):
                    cell[c] = g[c] / divisor
        for q in range(span, width_c):
            dst[q] = 0


#: tiling average pools of fewer elements than this run on the calling thread alone
SMALL_POOL = 1 << 19


def _is_tiling(geo: Geometry) -> bool:
    return (geo.strides == geo.kernel and geo.dilation == (1, 1) and geo.extra == (0, 0)
            and geo.pads == ((0, 0), (0, 0)))


def _k_avgpool_bwd(dy, dx, kh, kw, sh, sw, dh, dw, top, left, lo_h, hi_h, lo_w, hi_w, lo, hi):
    h_out, w_out, channels = dy.shape[1], dy.shape[2], dy.shape[3]
    height, width = dx.shape[1], dx.shape[2]
    share = np.empty(channels, dtype=dx.dtype)
    for n in range(lo, hi):          # windows of one image may overlap: one image per task
        dx[n] = 0
        for oh in range(h_out):
            rows = 0
            for i in range(kh):
                p = oh * sh - top + i * dh
                if p >= lo_h and p < hi_h:
                    rows += 1
            for ow in range(w_out):
                cols = 0
                for j in range(kw):
                    p = ow * sw - left + j * dw
                    if p >= lo_w and p < hi_w:
                        cols += 1
                share[0] = max(rows * cols, 1)
                count = share[0]
                g = dy[n, oh, ow]
                for c in range(channels):
                    share[c] = g[c] / count     # dy / divisor, in the array's dtype
                for i in range(kh):
                    ih = oh * sh - top + i * dh
                    if ih < 0 or ih >= height:
                        continue
                    for j in range(kw):
                        iw = ow * sw - left + j * dw
                        if iw < 0 or iw >= width:
                            continue
                        dst = dx[n, ih, iw]
                        for c in range(channels):
                            dst[c] += share[c]


def _count_bounds(geo: Geometry, count_include_pad: bool):
    (top, bottom), (left, right) = geo.pads
    height, width = geo.in_hw
    if count_include_pad:   # explicit padding counts, the ceil-mode extra cells never do
        return -top, height + bottom, -left, width + right
    return 0, height, 0, width


def avg_pool2d_forward(x: np.ndarray, geometry: Geometry,
                       count_include_pad: bool = False) -> np.ndarray:
    """Average pooling ``(N, H, W, C) -> (N, H_out, W_out, C)``.

    Each window's sum over its real cells is divided by the number of real cells
    (``count_include_pad=False``, Keras) or by the cells inside the input or its explicit
    padding (``True``, PyTorch; ceil-mode extra cells never count); at least 1.

    >>> from convkit.shapes import window_geometry
    >>> x = np.arange(9.0).reshape(1, 3, 3, 1)
    >>> avg_pool2d_forward(x, window_geometry((3, 3), 2, 2, "same"))[0, :, :, 0]  # doctest: +SKIP
    array([[2. , 3.5],
           [6.5, 8. ]])
    """
    where = "avg_pool2d_forward"
    kernel = jit(_k_avgpool_fwd, where, fastmath=False)
    x = _nhwc(where, "input", x)
    geo = _check_geometry(where, geometry, x.shape)
    y = np.empty((x.shape[0], *geo.out_hw, x.shape[3]), dtype=x.dtype)
    if _is_tiling(geo) and y.size:     # windows tile the input: every divisor is kh*kw
        tiles = jit(_k_avgpool_tiles_fwd, where, fastmath=False)
        chunks, slot = _wide_slots(x.shape[0] * geo.out_hw[0])
        rows = np.empty((len(chunks), x.shape[2] * x.shape[3]), dtype=x.dtype)
        x3 = x.reshape(x.shape[0], x.shape[1], -1)              # (N, H, W*C)
        y3 = y.reshape(y.shape[0], y.shape[1], -1)              # (N, H_out, W_out*C)
        divisor = x.dtype.type(geo.kernel[0] * geo.kernel[1])
        total = x.shape[0] * geo.out_hw[0]
        if x.size < SMALL_POOL:          # a hand-off to another thread costs more
            tiles(x3, y3, *geo.kernel, x.shape[3], divisor, rows[0], 0, total)
            return y
        _threads.run_chunks(lambda lo, hi: tiles(x3, y3, *geo.kernel, x.shape[3], divisor,
                                                 rows[slot[lo]], lo, hi),
                            total, single_blas=False)
        return y
    _run(kernel, x.shape[0] * geo.out_hw[0], x, y, *_geo_ints(geo),
         *_count_bounds(geo, bool(count_include_pad)))
    return y


def avg_pool2d_backward(dy: np.ndarray, geometry: Geometry, x_shape,
                        count_include_pad: bool = False) -> np.ndarray:
    """Gradient of :func:`avg_pool2d_forward`: each ``dy`` divided by its window's divisor
    is added to the window's real input cells. Returns ``x_shape``, the dtype of ``dy``."""
    where = "avg_pool2d_backward"
    kernel = jit(_k_avgpool_bwd, where, fastmath=False)
    x_shape = tuple(int(v) for v in x_shape)
    geo = _check_geometry(where, geometry, x_shape)
    dy = _nhwc(where, "dy", dy)
    dy = _check_dy(where, dy, geo, x_shape[0], x_shape[3], dy.dtype)
    dx = np.empty(x_shape, dtype=dy.dtype)
    if _is_tiling(geo) and dx.size:
        tiles = jit(_k_avgpool_tiles_bwd, where, fastmath=False)
        divisor = dy.dtype.type(geo.kernel[0] * geo.kernel[1])
        args = (dy.reshape(dy.shape[0], dy.shape[1], -1),
                dx.reshape(x_shape[0], x_shape[1], -1), *geo.kernel, x_shape[3], divisor,
                dx[0, 0, :, 0])
        if dx.size < SMALL_POOL:
            tiles(*args, 0, x_shape[0] * x_shape[1])
        else:
            _run(tiles, x_shape[0] * x_shape[1], *args)
        return dx
    _run(kernel, dy.shape[0], dy, dx, *_geo_ints(geo),
         *_count_bounds(geo, bool(count_include_pad)))
    return dx


# ============================================================================ depthwise
def _k_dw_fwd(x, k, bias, y, sh, sw, dh, dw, top, left, dm, lo, hi):
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    h_out, w_out, c_out = y.shape[1], y.shape[2], y.shape[3]
    kh, kw = k.shape[0], k.shape[1]
    fast3 = kh == 3 and kw == 3 and dm == 1
    k00, k01, k02 = k[0, 0], k[0, min(1, kw - 1)], k[0, min(2, kw - 1)]
    k10, k11, k12 = k[min(1, kh - 1), 0], k[min(1, kh - 1), min(1, kw - 1)], \
        k[min(1, kh - 1), min(2, kw - 1)]
    k20, k21, k22 = k[min(2, kh - 1), 0], k[min(2, kh - 1), min(1, kw - 1)], \
        k[min(2, kh - 1), min(2, kw - 1)]
    for r in range(lo, hi):
        n = r // h_out
        oh = r - n * h_out
        ih0 = oh * sh - top
        rows_inside = ih0 >= 0 and ih0 + 2 * dh < height
        for ow in range(w_out):
            dst = y[n, oh, ow]               # (C*dm,) views: inner loops index by c only
            iw0 = ow * sw - left
            if fast3 and rows_inside and iw0 >= 0 and iw0 + 2 * dw < width:
                # 3x3 window inside the input: nine taps summed in registers, one store
                a0, a1, a2 = x[n, ih0, iw0], x[n, ih0, iw0 + dw], x[n, ih0, iw0 + 2 * dw]
                b0, b1, b2 = (x[n, ih0 + dh, iw0], x[n, ih0 + dh, iw0 + dw],
                              x[n, ih0 + dh, iw0 + 2 * dw])
                c0, c1, c2 = (x[n, ih0 + 2 * dh, iw0], x[n, ih0 + 2 * dh, iw0 + dw],
                              x[n, ih0 + 2 * dh, iw0 + 2 * dw])
                for c in range(channels):
                    dst[c] = (bias[c] + a0[c] * k00[c] + a1[c] * k01[c] + a2[c] * k02[c]
                              + b0[c] * k10[c] + b1[c] * k11[c] + b2[c] * k12[c]
                              + c0[c] * k20[c] + c1[c] * k21[c] + c2[c] * k22[c])
                continue
            for o in range(c_out):
                dst[o] = bias[o]
            for i in range(kh):
                ih = oh * sh - top + i * dh
                if ih < 0 or ih >= height:
                    continue
                for j in range(kw):
                    iw = ow * sw - left + j * dw
                    if iw < 0 or iw >= width:
                        continue
                    src = x[n, ih, iw]
                    kr = k[i, j]
                    if dm == 1:
                        for c in range(channels):
                            dst[c] += src[c] * kr[c]
                    else:
                        for c in range(channels):
                            xv = src[c]
                            for m in range(dm):
                                dst[c * dm + m] += xv * kr[c * dm + m]


def _k_dw_bwd_kernel(x, dy, sh, sw, dh, dw, top, left, dm, dk, db, lo, hi):
    """Add the kernel and bias gradients of output rows ``lo:hi`` (over ``N*H_out``) to
    ``dk (kh, kw, C*dm)`` and ``db (C*dm,)``."""
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    h_out, w_out, c_out = dy.shape[1], dy.shape[2], dy.shape[3]
    kh, kw = dk.shape[0], dk.shape[1]
    for r in range(lo, hi):
        n = r // h_out
        oh = r - n * h_out
        for ow in range(w_out):
            g = dy[n, oh, ow]
            for o in range(c_out):
                db[o] += g[o]
        for i in range(kh):
            ih = oh * sh - top + i * dh
            if ih < 0 or ih >= height:
                continue
            for j in range(kw):
                off = j * dw - left
                ow_lo = max(0, -(off // sw))
                ow_hi = min(w_out, (width - 1 - off) // sw + 1)
                dkr = dk[i, j]
                for ow in range(ow_lo, ow_hi):
                    src = x[n, ih, ow * sw + off]
                    g = dy[n, oh, ow]
                    if dm == 1:
                        for c in range(channels):
                            dkr[c] += src[c] * g[c]
                    else:
                        for c in range(channels):
                            xv = src[c]
                            for m in range(dm):
                                dkr[c * dm + m] += xv * g[c * dm + m]


def _k_dw_bwd_input(k, dy, dx, sh, sw, dh, dw, top, left, dm, lo, hi):
    """``dx`` rows ``lo:hi`` (over ``N*H``): each input row gathers from the output rows that
    read it, so chunks never write the same cell."""
    height, width, channels = dx.shape[1], dx.shape[2], dx.shape[3]
    h_out, w_out = dy.shape[1], dy.shape[2]
    kh, kw = k.shape[0], k.shape[1]
    fast3 = kh == 3 and kw == 3 and dm == 1 and sh == 1 and sw == 1
    k00, k01, k02 = k[0, 0], k[0, min(1, kw - 1)], k[0, min(2, kw - 1)]
    k10, k11, k12 = k[min(1, kh - 1), 0], k[min(1, kh - 1), min(1, kw - 1)], \
        k[min(1, kh - 1), min(2, kw - 1)]
    k20, k21, k22 = k[min(2, kh - 1), 0], k[min(2, kh - 1), min(1, kw - 1)], \
        k[min(2, kh - 1), min(2, kw - 1)]
    for r in range(lo, hi):
        n = r // height
        ih = r - n * height
        oh0 = ih + top                       # output row read through tap i is oh0 - i*dh
        rows_inside = oh0 - 2 * dh >= 0 and oh0 < h_out
        for iw in range(width):
            dst = dx[n, ih, iw]
            ow0 = iw + left
            if fast3 and rows_inside and ow0 - 2 * dw >= 0 and ow0 < w_out:
                # stride 1, every tap inside dy: nine products summed in registers
                a0, a1, a2 = dy[n, oh0, ow0], dy[n, oh0, ow0 - dw], dy[n, oh0, ow0 - 2 * dw]
                b0, b1, b2 = (dy[n, oh0 - dh, ow0], dy[n, oh0 - dh, ow0 - dw],
                              dy[n, oh0 - dh, ow0 - 2 * dw])
                c0, c1, c2 = (dy[n, oh0 - 2 * dh, ow0], dy[n, oh0 - 2 * dh, ow0 - dw],
                              dy[n, oh0 - 2 * dh, ow0 - 2 * dw])
                for c in range(channels):
                    dst[c] = (a0[c] * k00[c] + a1[c] * k01[c] + a2[c] * k02[c]
                              + b0[c] * k10[c] + b1[c] * k11[c] + b2[c] * k12[c]
                              + c0[c] * k20[c] + c1[c] * k21[c] + c2[c] * k22[c])
                continue
            for c in range(channels):
                dst[c] = 0
            for i in range(kh):
                t = ih + top - i * dh
                if t < 0 or t % sh != 0 or t // sh >= h_out:
                    continue
                oh = t // sh
                for j in range(kw):
                    u = iw + left - j * dw
                    if u < 0 or u % sw != 0 or u // sw >= w_out:
                        continue
                    g = dy[n, oh, u // sw]
                    kr = k[i, j]
                    if dm == 1:
                        for c in range(channels):
                            dst[c] += g[c] * kr[c]
                    else:
                        for c in range(channels):
                            acc = dst[c]
                            for m in range(dm):
                                acc += g[c * dm + m] * kr[c * dm + m]
                            dst[c] = acc


def _depthwise_setup(where, x, kernel, geometry, depth_multiplier):
    x = _nhwc(where, "input", x)
    kernel = np.asarray(kernel)
    dm = int(depth_multiplier)
    channels = x.shape[3]
    if dm < 1 or kernel.ndim != 4 or kernel.shape[2] != 1 or kernel.shape[3] != channels * dm:
        raise ShapeError(f"{where}: kernel must be (kh, kw, 1, channels * depth_multiplier) = "
                         f"(kh, kw, 1, {channels * max(dm, 1)}) for input shape {x.shape} and "
                         f"depth_multiplier={depth_multiplier}, got {kernel.shape}")
    geo = _check_geometry(where, geometry, x.shape)
    if tuple(kernel.shape[:2]) != tuple(geo.kernel):
        raise ShapeError(f"{where}: kernel shape {kernel.shape} does not match the geometry's "
                         f"kernel size {geo.kernel}")
    k = np.ascontiguousarray(kernel.reshape(kernel.shape[0], kernel.shape[1], -1),
                             dtype=x.dtype)                      # (kh, kw, C*dm)
    return x, k, geo, dm


def depthwise_conv2d_forward(x: np.ndarray, kernel: np.ndarray, bias, geometry: Geometry,
                             depth_multiplier: int = 1) -> np.ndarray:
    """Depthwise convolution (``groups == channels``), zero padding.

    ``x (N, H, W, C)``, ``kernel (kh, kw, 1, C*dm)``, ``bias (C*dm,)`` or None ->
    ``y (N, H_out, W_out, C*dm)`` with output channel ``o = c*dm + m``::

        y[n, i, j, o] = bias[o] + sum_{a, b} x_pad[n, i*sh + a*dh, j*sw + b*dw, o // dm]
                                             * kernel[a, b, 0, o]
    """
    where = "depthwise_conv2d_forward"
    compiled = jit(_k_dw_fwd, where)
    x, k, geo, dm = _depthwise_setup(where, x, kernel, geometry, depth_multiplier)
    c_out = k.shape[2]
    b = np.zeros(c_out, x.dtype) if bias is None else np.ascontiguousarray(bias, x.dtype)
    if b.shape != (c_out,):
        raise ShapeError(f"{where}: bias must have shape ({c_out},), got {b.shape}")
    y = np.empty((x.shape[0], *geo.out_hw, c_out), dtype=x.dtype)
    kh, kw, sh, sw, dh, dw, top, left = _geo_ints(geo)
    _run(compiled, x.shape[0] * geo.out_hw[0], x, k, b, y, sh, sw, dh, dw, top, left, dm)
    return y


def depthwise_conv2d_backward(dy: np.ndarray, x: np.ndarray, kernel: np.ndarray,
                              geometry: Geometry, depth_multiplier: int = 1):
    """Gradients of :func:`depthwise_conv2d_forward`: ``(dx (N, H, W, C),
    dkernel (kh, kw, 1, C*dm), dbias (C*dm,))``."""
    where = "depthwise_conv2d_backward"
    x, k, geo, dm = _depthwise_setup(where, x, kernel, geometry, depth_multiplier)
    grad_kernel = jit(_k_dw_bwd_kernel, where)
    grad_input = jit(_k_dw_bwd_input, where)
    dy = _check_dy(where, dy, geo, x.shape[0], k.shape[2], x.dtype)
    kh, kw, sh, sw, dh, dw, top, left = _geo_ints(geo)
    dk, db = _run_partial(grad_kernel, x.shape[0] * geo.out_hw[0], (k.shape, k.shape[2:]),
                          x.dtype, x, dy, sh, sw, dh, dw, top, left, dm)
    dx = np.empty_like(x)
    _run(grad_input, x.shape[0] * x.shape[1], k, dy, dx, sh, sw, dh, dw, top, left, dm)
    return dx, dk.reshape(np.shape(kernel)), db


# ===================================================================== direct convolution
def _k_to_planar_padded(x, xp, top, left, lo, hi):
    """NHWC ``x`` into zero-padded planar ``xp (N, C, Hp, Wp)``."""
    n_batch, height, width, channels = x.shape
    hp, wp = xp.shape[2], xp.shape[3]
    for r in range(lo, hi):
        n = r // hp
        row = r - n * hp
        ih = row - top
        for c in range(channels):
            dst = xp[n, c, row]
            for col in range(wp):
                dst[col] = 0
            if ih >= 0 and ih < height:
                dst = xp[n, c, row, left:left + width]
                src = x[n, ih, :, c]
                for iw in range(width):
                    dst[iw] = src[iw]


def _k_planar_to_nhwc(xp, x, top, left, lo, hi):
    """Crop planar ``xp (N, C, Hp, Wp)`` at ``(top, left)`` into NHWC ``x``."""
    n_batch, height, width, channels = x.shape
    for r in range(lo, hi):
        n = r // height
        ih = r - n * height
        for c in range(channels):
            src = xp[n, c, ih + top, left:left + width]
            dst = x[n, ih, :, c]
            for iw in range(width):
                dst[iw] = src[iw]


def _k_direct_fwd(xp, k, bias, y, sh, sw, dh, dw, relu, lo, hi):
    n_batch, c_in = xp.shape[0], xp.shape[1]
    h_out, w_out, c_out = y.shape[1], y.shape[2], y.shape[3]
    kh, kw = k.shape[0], k.shape[1]
    for r in range(lo, hi):
        n = r // h_out
        oh = r - n * h_out
        acc = np.empty((c_out, w_out), dtype=y.dtype)           # one output row, planar
        for co in range(c_out):
            dst = acc[co]
            for ow in range(w_out):
                dst[ow] = bias[co]
        for ci in range(c_in):
            for i in range(kh):
                row = oh * sh + i * dh
                for j in range(kw):
                    # the input cells this offset reads, one per output column (a view)
                    src = xp[n, ci, row, j * dw:j * dw + (w_out - 1) * sw + 1:sw]
                    for co in range(c_out):
                        w = k[i, j, ci, co]
                        dst = acc[co]
                        if sw == 1:
                            src1 = xp[n, ci, row, j * dw:j * dw + w_out]   # contiguous
                            for ow in range(w_out):
                                dst[ow] += src1[ow] * w
                        else:
                            for ow in range(w_out):
                                dst[ow] += src[ow] * w
        for co in range(c_out):
            src = acc[co]
            dst = y[n, oh, :, co]
            for ow in range(w_out):
                v = src[ow]
                if relu and v < 0:
                    v = 0
                dst[ow] = v


def _k_direct_bwd_kernel(xp, dyp, sh, sw, dh, dw, zero, dk, db, lo, hi):
    """Add the kernel and bias gradients of output rows ``lo:hi`` (over ``N*H_out``) to
    ``dk (kh, kw, Cin, Cout)`` and ``db (Cout,)``:
    ``dk[i, j, ci, co] += sum_ow x_pad[n, ci, oh*sh + i*dh, ow*sw + j*dw] * dy[n, co, oh, ow]``.
    """
    c_in = xp.shape[1]
    c_out, h_out, w_out = dyp.shape[1], dyp.shape[2], dyp.shape[3]
    kh, kw = dk.shape[0], dk.shape[1]
    for r in range(lo, hi):
        n = r // h_out
        oh = r - n * h_out
        for co in range(c_out):
            g = dyp[n, co, oh]
            s = zero
            for ow in range(w_out):
                s += g[ow]
            db[co] += s
        for ci in range(c_in):
            for i in range(kh):
                row = oh * sh + i * dh
                for j in range(kw):
                    src = xp[n, ci, row, j * dw:j * dw + (w_out - 1) * sw + 1:sw]
                    src1 = xp[n, ci, row, j * dw:j * dw + w_out]
                    for co in range(c_out):
                        g = dyp[n, co, oh]
                        s = zero
                        if sw == 1:
                            for ow in range(w_out):
                                s += src1[ow] * g[ow]
                        else:
                            for ow in range(w_out):
                                s += src[ow] * g[ow]
                        dk[i, j, ci, co] += s


def _k_direct_bwd_input(k, dyp, dxp, sh, sw, dh, dw, lo, hi):
    """Padded planar ``dxp`` rows ``lo:hi`` (over ``N*Hp``): each gathers from the output
    rows that read it, so chunks never write the same cell."""
    c_in, hp, wp = dxp.shape[1], dxp.shape[2], dxp.shape[3]
    c_out, h_out, w_out = dyp.shape[1], dyp.shape[2], dyp.shape[3]
    kh, kw = k.shape[0], k.shape[1]
    for r in range(lo, hi):
        n = r // hp
        row = r - n * hp
        for ci in range(c_in):
            dst = dxp[n, ci, row]
            for col in range(wp):
                dst[col] = 0
        for i in range(kh):
            t = row - i * dh
            if t < 0 or t % sh != 0 or t // sh >= h_out:
                continue
            oh = t // sh
            for j in range(kw):
                for ci in range(c_in):
                    dst = dxp[n, ci, row, j * dw:j * dw + (w_out - 1) * sw + 1:sw]
                    dst1 = dxp[n, ci, row, j * dw:j * dw + w_out]
                    for co in range(c_out):
                        w = k[i, j, ci, co]
                        g = dyp[n, co, oh]
                        if sw == 1:
                            for ow in range(w_out):
                                dst1[ow] += g[ow] * w
                        else:
                            for ow in range(w_out):
                                dst[ow] += g[ow] * w


def _direct_setup(where, x, kernel, geometry):
    x = _nhwc(where, "input", x)
    kernel = np.asarray(kernel)
    if kernel.ndim != 4 or kernel.shape[2] != x.shape[3]:
        raise ShapeError(f"{where}: kernel must be (kh, kw, {x.shape[3]}, filters) for input "
                         f"shape {x.shape}, got {kernel.shape}")
    geo = _check_geometry(where, geometry, x.shape)
    if tuple(kernel.shape[:2]) != tuple(geo.kernel):
        raise ShapeError(f"{where}: kernel shape {kernel.shape} does not match the geometry's "
                         f"kernel size {geo.kernel}")
    kernel = np.ascontiguousarray(kernel, dtype=x.dtype)
    hp, wp = geo.padded_hw
    xp = np.empty((x.shape[0], x.shape[3], hp, wp), dtype=x.dtype)   # (N, Cin, Hp, Wp)
    _run(jit(_k_to_planar_padded, where), x.shape[0] * hp, x, xp, geo.pads[0][0],
         geo.pads[1][0])
    return x, kernel, geo, xp


def conv2d_direct_forward(x: np.ndarray, kernel: np.ndarray, bias, geometry: Geometry,
                          relu: bool = False) -> np.ndarray:
    """Direct convolution for few channels and large kernels (e.g. 7x7, 3 -> 2 channels).

    ``x (N, H, W, Cin)``, ``kernel (kh, kw, Cin, Cout)``, ``bias (Cout,)`` or None ->
    ``y (N, H_out, W_out, Cout)``, zero padding, any stride/dilation, then ``max(y, 0)`` if
    ``relu`` (the caller masks ``dy`` with ``y > 0`` before the backward)::

        y[n, i, j, f] = bias[f] + sum_{a, b, c} x_pad[n, i*sh + a*dh, j*sw + b*dw, c]
                                                * kernel[a, b, c, f]

    The input is copied once to a padded planar layout ``(N, Cin, Hp, Wp)``; each output row
    accumulates over ``(c, a, b)`` with a contiguous loop over its output columns.
    """
    where = "conv2d_direct_forward"
    compiled = jit(_k_direct_fwd, where)
    x, kernel, geo, xp = _direct_setup(where, x, kernel, geometry)
    c_out = kernel.shape[3]
    b = np.zeros(c_out, x.dtype) if bias is None else np.ascontiguousarray(bias, x.dtype)
    if b.shape != (c_out,):
        raise ShapeError(f"{where}: bias must have shape ({c_out},), got {b.shape}")
    y = np.empty((x.shape[0], *geo.out_hw, c_out), dtype=x.dtype)
    kh, kw, sh, sw, dh, dw, _, _ = _geo_ints(geo)
    _run(compiled, x.shape[0] * geo.out_hw[0], xp, kernel, b, y, sh, sw, dh, dw, bool(relu))
    return y


def conv2d_direct_backward(dy: np.ndarray, x: np.ndarray, kernel: np.ndarray,
                           geometry: Geometry, input_grad: bool = True):
    """Gradients of :func:`conv2d_direct_forward` (without ReLU): ``(dx (N, H, W, Cin),
    dkernel (kh, kw, Cin, Cout), dbias (Cout,))``; ``dx`` is ``None`` with
    ``input_grad=False``."""
    where = "conv2d_direct_backward"
    grad_kernel = jit(_k_direct_bwd_kernel, where)
    grad_input = jit(_k_direct_bwd_input, where)
    x, kernel, geo, xp = _direct_setup(where, x, kernel, geometry)
    n_batch, c_out = x.shape[0], kernel.shape[3]
    dy = _check_dy(where, dy, geo, n_batch, c_out, x.dtype)
    h_out, w_out = geo.out_hw
    dyp = np.empty((n_batch, c_out, h_out, w_out), dtype=x.dtype)   # (N, Cout, Ho, Wo)
    _run(jit(_k_to_planar_padded, where), n_batch * h_out, dy, dyp, 0, 0)
    kh, kw, sh, sw, dh, dw, top, left = _geo_ints(geo)
    # each output row's dot products in the input dtype, their sums in float64 (few cells)
    dk, db = _run_partial(grad_kernel, n_batch * h_out, (kernel.shape, (c_out,)), np.float64,
                          xp, dyp, sh, sw, dh, dw, x.dtype.type(0))
    dk, db = dk.astype(x.dtype), db.astype(x.dtype)
    if not input_grad:
        return None, dk, db
    dxp = np.empty_like(xp)                                          # (N, Cin, Hp, Wp)
    _run(grad_input, n_batch * xp.shape[2], kernel, dyp, dxp, sh, sw, dh, dw)
    dx = np.empty_like(x)
    _run(jit(_k_planar_to_nhwc, where), n_batch * x.shape[1], dxp, dx, top, left)
    return dx, dk, db


# ============================================== direct convolution on the wide grid (stride 1)
# For a stride-1 convolution of a zero-padded planar image ``xp (C, Hp, Wp)`` flattened to
# one row per channel, output pixel ``(i, j)`` reads ``xp[c, (i + a*dh)*Wp + j + b*dw]``.
# Computing the output on the "wide" grid ``p = i*Wp + j`` for all ``j < Wp`` (the columns
# ``j >= W_out`` are thrown away) makes every kernel offset one long contiguous product:
#     yw[f, p] += kernel[a, b, c, f] * xp[c, p + a*dh*Wp + b*dw],   p = 0 .. H_out*Wp - 1
# -- loops of hundreds of elements that vectorise fully, where a loop over one output row or
# over a few filters would not. The gradients are the same loops with the roles exchanged
# (``dy`` on the wide grid holds zeros in the thrown-away columns, so they add nothing).
# Each image is one task; a plane carries ``(kw-1)*dw`` zero cells of slack at its end for
# the reads past the last row.

def _wide_fill_x(x, n, xp, top, left, wp, plane):
    """Image ``n`` of NHWC ``x`` into the zeroed planar buffer ``xp`` (C * plane,)."""
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    for q in range(xp.shape[0]):
        xp[q] = 0
    for ih in range(height):
        row = x[n, ih]                                   # (W, C)
        base = (ih + top) * wp + left
        for iw in range(width):
            cell = row[iw]
            for c in range(channels):
                xp[c * plane + base + iw] = cell[c]


def _k_wide_fwd(x, k, bias, y, top, left, dh, dw, wp, plane, relu, xp, yw, lo, hi):
    """Images ``lo:hi``: ``y (N, H_out, W_out, F)`` of ``x (N, H, W, C)`` and ``k (kh, kw,
    C, F)``; ``xp (C * plane,)`` and ``yw (F, H_out * Wp)`` are this task's buffers."""
    channels = x.shape[3]
    kh, kw, filters = k.shape[0], k.shape[1], k.shape[3]
    h_out, w_out = y.shape[1], y.shape[2]
    length = h_out * wp
    for n in range(lo, hi):
        _wide_fill_x(x, n, xp, top, left, wp, plane)
        for f in range(filters):
            acc = yw[f]
            for p in range(length):
                acc[p] = 0
            for c in range(channels):
                for a in range(kh):
                    for b in range(kw):
                        off = c * plane + a * dh * wp + b * dw
                        src = xp[off:off + length]
                        w = k[a, b, c, f]
                        for p in range(length):
                            acc[p] += w * src[p]
        for oh in range(h_out):
            for ow in range(w_out):
                dst = y[n, oh, ow]
                q = oh * wp + ow
                for f in range(filters):
                    v = yw[f, q] + bias[f]
                    if relu and v < 0:
                        v = 0
                    dst[f] = v


def _k_wide_bwd(x, k, dy, ymask, mask, top, left, dh, dw, wp, plane, want_dx, zero, xp, dyw,
                dxp, dx, dk, db, lo, hi):
    """Images ``lo:hi``: add the kernel and bias gradients to ``dk (kh, kw, C, F)`` and ``db
    (F,)`` (this task's partial sums) and, with ``want_dx``, write ``dx (N, H, W, C)``.
    ``dy`` is masked by ``ymask > 0`` when ``mask`` (a fused ReLU). Buffers: ``xp`` and
    ``dxp`` ``(C * plane,)``, ``dyw (F, H_out * Wp)``."""
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    kh, kw, filters = k.shape[0], k.shape[1], k.shape[3]
    h_out, w_out = dy.shape[1], dy.shape[2]
    length = h_out * wp
    for n in range(lo, hi):
        _wide_fill_x(x, n, xp, top, left, wp, plane)
        for f in range(filters):
            row = dyw[f]
            for p in range(length):
                row[p] = 0
        for oh in range(h_out):
            for ow in range(w_out):
                g = dy[n, oh, ow]
                q = oh * wp + ow
                if mask:
                    yv = ymask[n, oh, ow]
                    for f in range(filters):
                        dyw[f, q] = g[f] if yv[f] > 0 else zero
                else:
                    for f in range(filters):
                        dyw[f, q] = g[f]
        for f in range(filters):
            g = dyw[f]
            s = zero
            for p in range(length):
                s += g[p]
            db[f] += s
            for c in range(channels):
                for a in range(kh):
                    for b in range(kw):
                        off = c * plane + a * dh * wp + b * dw
                        src = xp[off:off + length]
                        s = zero
                        for p in range(length):
                            s += src[p] * g[p]
                        dk[a, b, c, f] += s
        if not want_dx:
            continue
        for q in range(dxp.shape[0]):
            dxp[q] = 0
        for c in range(channels):
            for a in range(kh):
                for b in range(kw):
                    off = c * plane + a * dh * wp + b * dw
                    dst = dxp[off:off + length]
                    for f in range(filters):
                        w = k[a, b, c, f]
                        g = dyw[f]
                        for p in range(length):
                            dst[p] += w * g[p]
        for ih in range(height):
            base = (ih + top) * wp + left
            for iw in range(width):
                cell = dx[n, ih, iw]
                for c in range(channels):
                    cell[c] = dxp[c * plane + base + iw]


def _wide_setup(where, x, kernel, geometry):
    x = _nhwc(where, "input", x)
    kernel = np.asarray(kernel)
    geo = _check_geometry(where, geometry, x.shape)
    if kernel.ndim != 4 or kernel.shape[2] != x.shape[3] \
            or tuple(kernel.shape[:2]) != tuple(geo.kernel):
        raise ShapeError(f"{where}: kernel must be ({geo.kernel[0]}, {geo.kernel[1]}, "
                         f"{x.shape[3]}, filters) for input shape {x.shape}, got "
                         f"{kernel.shape}")
    if geo.strides != (1, 1) or geo.extra != (0, 0):
        raise ShapeError(f"{where}: needs stride 1 (got strides {geo.strides})")
    kernel = np.ascontiguousarray(kernel, dtype=x.dtype)
    hp, wp = geo.padded_hw
    plane = hp * wp + geo.kernel[1] * geo.dilation[1]     # slack past the last row
    (top, _), (left, _) = geo.pads
    return x, kernel, geo, int(hp), int(wp), int(plane), int(top), int(left)


def _wide_slots(total: int):
    chunks = _threads.split(total, _threads.num_threads())
    return chunks, {start: q for q, (start, _) in enumerate(chunks)}


def conv2d_wide_forward(x: np.ndarray, kernel: np.ndarray, bias, geometry: Geometry,
                        relu: bool = False) -> np.ndarray:
    """Stride-1 direct convolution for few channels, on the wide grid (see above).

    ``x (N, H, W, Cin)``, ``kernel (kh, kw, Cin, Cout)``, ``bias (Cout,)`` or None ->
    ``y (N, H_out, W_out, Cout)``; zero padding, any dilation, stride 1; ``max(y, 0)`` if
    ``relu``::

        y[n, i, j, f] = bias[f] + sum_{a, b, c} x_pad[n, i + a*dh, j + b*dw, c] * kernel[a, b, c, f]

    Work per image: ``kh*kw*Cin*Cout`` contiguous products of ``H_out * Wp`` elements.
    """
    where = "conv2d_wide_forward"
    compiled = jit(_k_wide_fwd, where, helpers=(_wide_fill_x,))
    x, kernel, geo, hp, wp, plane, top, left = _wide_setup(where, x, kernel, geometry)
    c_in, c_out = x.shape[3], kernel.shape[3]
    b = np.zeros(c_out, x.dtype) if bias is None else np.ascontiguousarray(bias, x.dtype)
    if b.shape != (c_out,):
        raise ShapeError(f"{where}: bias must have shape ({c_out},), got {b.shape}")
    h_out, w_out = geo.out_hw
    y = np.empty((x.shape[0], h_out, w_out, c_out), dtype=x.dtype)
    if y.size == 0:
        return y
    chunks, slot = _wide_slots(x.shape[0])
    xps = np.empty((len(chunks), c_in * plane), x.dtype)
    yws = np.empty((len(chunks), c_out, h_out * wp), x.dtype)
    (dh, dw) = geo.dilation

    def work(lo, hi):
        q = slot[lo]
        compiled(x, kernel, b, y, top, left, dh, dw, wp, plane, bool(relu), xps[q], yws[q],
                 lo, hi)
    _threads.run_chunks(work, x.shape[0], single_blas=False)
    return y


def conv2d_wide_backward(dy: np.ndarray, x: np.ndarray, kernel: np.ndarray, geometry: Geometry,
                         relu_y=None, input_grad: bool = True):
    """Gradients of :func:`conv2d_wide_forward`: ``(dx (N, H, W, Cin) or None, dkernel,
    dbias)``. With ``relu_y`` (the output of a fused ReLU) ``dy`` is masked by
    ``relu_y > 0`` first. Kernel and bias gradients: per-image dot products of length
    ``H_out * Wp`` summed per thread in float64."""
    where = "conv2d_wide_backward"
    compiled = jit(_k_wide_bwd, where, helpers=(_wide_fill_x,))
    x, kernel, geo, hp, wp, plane, top, left = _wide_setup(where, x, kernel, geometry)
    n_batch, c_in, c_out = x.shape[0], x.shape[3], kernel.shape[3]
    dy = _check_dy(where, dy, geo, n_batch, c_out, x.dtype)
    mask = relu_y is not None
    ymask = _check_dy(where, relu_y, geo, n_batch, c_out, x.dtype) if mask else dy
    h_out, _ = geo.out_hw
    chunks, slot = _wide_slots(n_batch)
    xps = np.empty((len(chunks), c_in * plane), x.dtype)
    dxps = np.empty((len(chunks), c_in * plane if input_grad else 1), x.dtype)
    dyws = np.empty((len(chunks), c_out, h_out * wp), x.dtype)
    dks = np.zeros((len(chunks), *kernel.shape), np.float64)
    dbs = np.zeros((len(chunks), c_out), np.float64)
    dx = np.empty_like(x) if input_grad else x
    (dh, dw) = geo.dilation

    def work(lo, hi):
        q = slot[lo]
        compiled(x, kernel, dy, ymask, mask, top, left, dh, dw, wp, plane, bool(input_grad),
                 x.dtype.type(0), xps[q], dyws[q], dxps[q], dx, dks[q], dbs[q], lo, hi)
    if n_batch:
        _threads.run_chunks(work, n_batch, single_blas=False)
    dk = dks.sum(axis=0).astype(x.dtype)
    db = dbs.sum(axis=0).astype(x.dtype)
    return (dx if input_grad else None), dk, db


# ========================================================================= im2col / col2im
def _k_im2col(x3, cols, channels, kh, kw, sh, sw, dh, dw, top, left, h_out, w_out, lo, hi):
    """``x3`` is the NHWC input as ``(N, H, W*C)``: with dilation 1 the ``kw`` cells of one
    window row are ``kw*C`` contiguous values, copied in one run."""
    height, width = x3.shape[1], x3.shape[2] // channels
    span = kw * channels                           # one window row in the columns
    for r in range(lo, hi):
        n = r // h_out
        oh = r - n * h_out
        for ow in range(w_out):
            dst = cols[r * w_out + ow]             # (kh*kw*C,) view
            iw0 = ow * sw - left
            j_lo = 0                               # taps j_lo:j_hi fall inside the row
            while j_lo < kw and iw0 + j_lo * dw < 0:
                j_lo += 1
            j_hi = kw
            while j_hi > j_lo and iw0 + (j_hi - 1) * dw >= width:
                j_hi -= 1
            for i in range(kh):
                ih = oh * sh - top + i * dh
                base = i * span
                if ih < 0 or ih >= height or j_lo >= j_hi:
                    dst[base:base + span] = 0
                    continue
                src = x3[n, ih]                    # (W*C,) view
                if j_lo > 0:
                    dst[base:base + j_lo * channels] = 0
                if j_hi < kw:
                    dst[base + j_hi * channels:base + span] = 0
                if dw == 1:                        # slice copies compile to a memcpy
                    s0 = iw0 * channels
                    dst[base + j_lo * channels:base + j_hi * channels] = \
                        src[s0 + j_lo * channels:s0 + j_hi * channels]
                else:
                    for j in range(j_lo, j_hi):
                        s0 = (iw0 + j * dw) * channels
                        d0 = base + j * channels
                        dst[d0:d0 + channels] = src[s0:s0 + channels]


def _k_col2im(dcols, dx3, channels, kh, kw, sh, sw, dh, dw, top, left, h_out, w_out, lo, hi):
    """``dx3`` is the NHWC gradient as ``(N, H, W*C)``; each task owns whole input rows and
    gathers the column entries that read them, so chunks never write the same cell."""
    height, width = dx3.shape[1], dx3.shape[2] // channels
    span = kw * channels
    for r in range(lo, hi):
        n = r // height
        ih = r - n * height
        dst = dx3[n, ih]                           # (W*C,) view
        dst[:] = 0
        for i in range(kh):
            t = ih + top - i * dh
            if t < 0 or t % sh != 0 or t // sh >= h_out:
                continue
            oh = t // sh
            base = i * span
            for ow in range(w_out):
                src = dcols[(n * h_out + oh) * w_out + ow]
                iw0 = ow * sw - left
                j_lo = 0
                while j_lo < kw and iw0 + j_lo * dw < 0:
                    j_lo += 1
                j_hi = kw
                while j_hi > j_lo and iw0 + (j_hi - 1) * dw >= width:
                    j_hi -= 1
                if dw == 1:                        # slices indexed from 0 vectorise
                    d_run = dst[(iw0 + j_lo) * channels:(iw0 + j_hi) * channels]
                    s_run = src[base + j_lo * channels:base + j_hi * channels]
                    for q in range(d_run.shape[0]):
                        d_run[q] += s_run[q]
                else:
                    for j in range(j_lo, j_hi):
                        d0 = (iw0 + j * dw) * channels
                        s0 = base + j * channels
                        for c in range(channels):
                            dst[d0 + c] += src[s0 + c]


def _k_kgrad_small(x3, dy2, y2, dz2, acc, channels, kh, kw, sh, sw, dh, dw, top, left,
                   h_out, w_out, mask, write_dz, dk, db, lo, hi):
    """Kernel and bias gradients for few taps (``kh*kw*C``), output rows ``lo:hi`` over
    ``N*H_out``: ``dk[(a*kw + b)*C + c, f] += x_pad[n, i*sh + a*dh, j*sw + b*dw, c] *
    dz[m, f]`` and ``db[f] += dz[m, f]`` with ``dz = dy * (y > 0)`` when ``mask`` (else
    ``dy``), written to ``dz2`` when ``write_dz``. One output row is summed in the input
    dtype (``acc``), the rows in ``dk``/``db`` (float64)."""
    height, width = x3.shape[1], x3.shape[2] // channels
    filters = dy2.shape[1]
    taps = kh * kw * channels
    g = np.empty(filters, dtype=dy2.dtype)
    row_db = np.empty(filters, dtype=dy2.dtype)
    for r in range(lo, hi):
        n = r // h_out
        oh = r - n * h_out
        acc[:, :] = 0
        row_db[:] = 0
        for ow in range(w_out):
            m = r * w_out + ow
            src = dy2[m]
            if mask:
                yv = y2[m]
                for f in range(filters):
                    g[f] = src[f] * (yv[f] > 0)
            else:
                for f in range(filters):
                    g[f] = src[f]
            if write_dz:
                out = dz2[m]
                for f in range(filters):
                    out[f] = g[f]
            for f in range(filters):
                row_db[f] += g[f]
            iw0 = ow * sw - left
            for a in range(kh):
                ih = oh * sh - top + a * dh
                if ih < 0 or ih >= height:
                    continue
                xrow = x3[n, ih]
                for b in range(kw):
                    iw = iw0 + b * dw
                    if iw < 0 or iw >= width:
                        continue
                    for c in range(channels):
                        xv = xrow[iw * channels + c]
                        dst = acc[(a * kw + b) * channels + c]
                        for f in range(filters):
                            dst[f] += xv * g[f]
        for t in range(taps):
            src_row = acc[t]
            dst_row = dk[t]
            for f in range(filters):
                dst_row[f] += src_row[f]
        for f in range(filters):
            db[f] += row_db[f]


#: :func:`conv2d_kernel_grad_small` applies when ``kh*kw*C_in*filters`` is at most this (the
#: per-thread sums stay in the L1 cache) and there are at least ``SMALL_KGRAD_MIN_FILTERS``
#: filters (the inner loop runs over them)
SMALL_KGRAD_MAX_CELLS = 1024
SMALL_KGRAD_MIN_FILTERS = 8


def conv2d_kernel_grad_small(dy: np.ndarray, x: np.ndarray, kernel_shape, geometry: Geometry,
                             relu_y=None, write_dz: bool = False):
    """``(dkernel (kh, kw, C, F), dbias (F,), dz)`` of a convolution with few taps, in one
    pass over ``dy`` without im2col columns: ``dz = dy * (relu_y > 0)`` when ``relu_y`` (the
    output of a fused ReLU) is given, else ``dy``; ``dz`` is returned (a new array) only
    with ``write_dz``, else ``None``. Ungrouped; any stride, dilation and zero padding.
    ``x (N, H, W, C)``, ``dy`` and ``relu_y`` ``(N, H_out, W_out, F)``."""
    where = "conv2d_kernel_grad_small"
    compiled = jit(_k_kgrad_small, where)
    x = _nhwc(where, "input", x)
    geo = _check_geometry(where, geometry, x.shape)
    kh, kw, c_in, filters = (int(v) for v in kernel_shape)
    if (kh, kw) != tuple(geo.kernel) or c_in != x.shape[3]:
        raise ShapeError(f"{where}: kernel shape {tuple(kernel_shape)} does not fit input "
                         f"shape {x.shape} and kernel size {geo.kernel}")
    dy = _check_dy(where, dy, geo, x.shape[0], filters, x.dtype)
    h_out, w_out = geo.out_hw
    dy2 = dy.reshape(-1, filters)                               # (M, F)
    mask = relu_y is not None
    if mask:
        relu_y = _check_dy(where, relu_y, geo, x.shape[0], filters, x.dtype)
        y2 = relu_y.reshape(-1, filters)
    else:
        y2 = dy2
    dz = np.empty_like(dy) if write_dz else None
    dz2 = dz.reshape(-1, filters) if write_dz else dy2
    x3 = x.reshape(x.shape[0], x.shape[1], -1)                  # (N, H, W*C)
    taps = kh * kw * c_in
    chunks = _threads.split(x.shape[0] * h_out, _threads.num_threads())
    accs = np.empty((len(chunks), taps, filters), x.dtype)
    slot = {start: q for q, (start, _) in enumerate(chunks)}
    dk_parts = np.zeros((len(chunks), taps, filters), np.float64)
    db_parts = np.zeros((len(chunks), filters), np.float64)

    def work(lo, hi):
        q = slot[lo]
        compiled(x3, dy2, y2, dz2, accs[q], c_in, *_geo_ints(geo), h_out, w_out, mask,
                 bool(write_dz), dk_parts[q], db_parts[q], lo, hi)
    _threads.run_chunks(work, x.shape[0] * h_out, single_blas=False)
    dk = dk_parts.sum(axis=0).astype(x.dtype).reshape(kh, kw, c_in, filters)
    return dk, db_parts.sum(axis=0).astype(x.dtype), dz


def _k_bias_act(y2, bias, relu, lo, hi):
    rows, channels = y2.shape
    for r in range(lo, hi):
        row = y2[r]
        for c in range(channels):
            v = row[c] + bias[c]
            if relu and v < 0:
                v = 0
            row[c] = v


def im2col(x: np.ndarray, geometry: Geometry, out: np.ndarray | None = None) -> np.ndarray:
    """Window columns ``(N*H_out*W_out, kh*kw*C)`` of an NHWC batch, zero padding folded in.

    ``cols[(n*H_out + i)*W_out + j, (a*kw + b)*C + c] = x_pad[n, i*sh + a*dh, j*sw + b*dw, c]``,
    so ``cols @ kernel.reshape(kh*kw*C, filters)`` is the convolution and
    ``cols.T @ dy.reshape(-1, filters)`` its kernel gradient. ``out``: a C-contiguous array
    of that shape and dtype to write into (a reused buffer).
    """
    where = "im2col"
    compiled = jit(_k_im2col, where)
    x = _nhwc(where, "input", x)
    geo = _check_geometry(where, geometry, x.shape)
    (kh, kw), (h_out, w_out) = geo.kernel, geo.out_hw
    shape = (x.shape[0] * h_out * w_out, kh * kw * x.shape[3])
    if out is None:
        cols = np.empty(shape, dtype=x.dtype)
    elif out.shape != shape or out.dtype != x.dtype or not out.flags.c_contiguous:
        raise ShapeError(f"{where}: out must be a C-contiguous {x.dtype} array of shape "
                         f"{shape}, got {out.dtype} {out.shape}")
    else:
        cols = out
    x3 = x.reshape(x.shape[0], x.shape[1], -1)                  # (N, H, W*C)
    _run(compiled, x.shape[0] * h_out, x3, cols, x.shape[3], *_geo_ints(geo), h_out, w_out)
    return cols


def col2im(dcols: np.ndarray, geometry: Geometry, x_shape,
           out: np.ndarray | None = None) -> np.ndarray:
    """Adjoint of :func:`im2col`: add each column entry back onto its input cell (cells in
    the padding are dropped). ``dcols (N*H_out*W_out, kh*kw*C)`` -> ``dx x_shape``, written
    into ``out`` (C-contiguous, ``x_shape``) when given."""
    where = "col2im"
    compiled = jit(_k_col2im, where)
    x_shape = tuple(int(v) for v in x_shape)
    geo = _check_geometry(where, geometry, x_shape)
    dcols = np.asarray(dcols)
    (kh, kw), (h_out, w_out) = geo.kernel, geo.out_hw
    expected = (x_shape[0] * h_out * w_out, kh * kw * x_shape[3])
    if dcols.shape != expected or dcols.dtype not in (np.float32, np.float64):
        raise ShapeError(f"{where}: dcols must be float32/float64 of shape {expected} for "
                         f"x_shape {x_shape}, got {dcols.dtype} {dcols.shape}")
    dcols = np.ascontiguousarray(dcols)
    if out is None:
        dx = np.empty(x_shape, dtype=dcols.dtype)
    elif out.shape != x_shape or out.dtype != dcols.dtype or not out.flags.c_contiguous:
        raise ShapeError(f"{where}: out must be a C-contiguous {dcols.dtype} array of shape "
                         f"{x_shape}, got {out.dtype} {out.shape}")
    else:
        dx = out
    dx3 = dx.reshape(x_shape[0], x_shape[1], -1)                # (N, H, W*C)
    _run(compiled, x_shape[0] * x_shape[1], dcols, dx3, x_shape[3], *_geo_ints(geo), h_out,
         w_out)
    return dx


def bias_act_(y: np.ndarray, bias, relu: bool = False) -> np.ndarray:
    """In place: ``y += bias`` over the last axis, then ``max(y, 0)`` if ``relu``; returns
    ``y`` (any rank, C-contiguous, last axis = channels)."""
    where = "bias_act_"
    compiled = jit(_k_bias_act, where)
    if not (isinstance(y, np.ndarray) and y.flags.c_contiguous
            and y.dtype in (np.float32, np.float64)):
        raise ShapeError(f"{where}: y must be a C-contiguous float32/float64 array")
    channels = y.shape[-1]
    b = np.zeros(channels, y.dtype) if bias is None else np.ascontiguousarray(bias, y.dtype)
    if b.shape != (channels,):
        raise ShapeError(f"{where}: bias must have shape ({channels},) for y shape {y.shape}, "
                         f"got {b.shape}")
    y2 = y.reshape(-1, channels)                                # (rows, C)
    _run(compiled, y2.shape[0], y2, b, bool(relu))
    return y


def _k_relu_mask(dy, y, out, lo, hi):
    # Slices indexed from 0 and a select on values already loaded: the loop then
    # vectorises (a data-dependent branch on a random sign pattern mispredicts every other
    # element, and a runtime start index keeps the negative-index check in the loop).
    d, v, o = dy[lo:hi], y[lo:hi], out[lo:hi]
    for i in range(d.shape[0]):
        o[i] = d[i] * (v[i] > 0)


#: below this many elements the element-wise kernels run on the calling thread alone
SMALL_ELEMENTWISE = 1 << 16


def relu_backward(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Gradient through a ReLU from its output: ``dy`` where ``y > 0``, else 0 (a new array
    shaped and typed like ``dy``; ``y`` is cast to ``dy``'s dtype if needed).

    >>> relu_backward(np.array([1., 2., 3.]), np.array([0., 5., 0.]))   # doctest: +SKIP
    array([0., 2., 0.])
    """
    where = "relu_backward"
    compiled = jit(_k_relu_mask, where, fastmath=False)
    dy = np.ascontiguousarray(dy)
    if dy.dtype not in (np.float32, np.float64) or np.shape(y) != dy.shape:
        raise ShapeError(f"{where}: dy (float32/float64) and y must have the same shape, got "
                         f"{dy.dtype} {dy.shape} and {np.shape(y)}")
    y = np.ascontiguousarray(y, dtype=dy.dtype)
    out = np.empty_like(dy)
    flat = (dy.reshape(-1), y.reshape(-1), out.reshape(-1))
    if dy.size < SMALL_ELEMENTWISE:
        compiled(*flat, 0, dy.size)
    else:
        _run(compiled, dy.size, *flat)
    return out
