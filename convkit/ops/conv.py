"""2-D convolution (cross-correlation), forward and backward, on the shared windowing
primitive of :mod:`convkit.ops.windows`.

Shapes (channels_last; channels_first is ``(N, C, H, W)`` in and out)::

    x       (N, H, W, C_in)
    kernel  (kh, kw, C_in // groups, filters)          HWIO, not flipped
    bias    (filters,)
    y       (N, H_out, W_out, filters)

    y[n, i, j, f] = bias[f] + sum_{a, b, c} padded[n, i*sh + a*dh, j*sw + b*dw, g*C_g + c]
                                            * kernel[a, b, c, f],    g = f // (filters/groups)

Forward is im2col: the window view ``(N, H_out, W_out, kh, kw, C)`` copied into a matrix
``(N*H_out*W_out, kh*kw*C)`` and multiplied by the kernel ``(kh*kw*C, filters)`` (a batched
product over groups); the matrix is built for a few output rows at a time so it stays in
cache. Backward: ``dkernel = columns^T @ dy``; ``dx`` is the adjoint of the window view, one
GEMM ``dy @ kernel[a, b]^T`` per kernel offset added onto a strided slice, then the adjoint
of the padding. 1x1 stride-1 kernels are a plain matrix product; depthwise kernels (one
input channel per group) a multiply-add per kernel offset, whose stride-1 input gradient is
the same multiply-adds over ``dy`` with the kernel turned by 180 degrees::

    dx = depthwise(dy zero-padded by d*(k-1) - pad on each side, kernel[::-1, ::-1])

Two forms of the same sums where im2col's product would be slow: a convolution with a few
filters multiplies 8 neighbouring output pixels of a row at once by the kernel laid out as a
banded matrix (:func:`_banded_forward`), and a 3x3 stride-1 one with many channels runs
Winograd F(2x2, 3x3) (:mod:`convkit.ops.winograd`; its input gradient too, as the
convolution of ``dy`` with the kernel turned and transposed).

This NumPy code is the reference. Each op first asks the dispatch table
(:mod:`convkit.fast.dispatch`) for a fast path for its shapes and dtype -- Winograd,
compiled direct, depthwise, implicit-product and im2col kernels, threaded products, see
:func:`conv_plan` -- and runs the code below when there is none (``CONVKIT_ACCEL=0``, numba
not installed, or no path applies), over the batch on a few threads when the work is large
(:func:`~convkit.ops.batch_threads.map_batch`; the output rows of a single image).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from numbers import Integral

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .._validate import as_float_array, result_float_dtype
from ..errors import ShapeError
from ..shapes import Geometry, window_geometry
from .padding import (check_pads_fit, check_data_format, check_pad_mode, from_channels_last,
                      layout_of, layout_shape, to_channels_last)
from .batch_threads import map_batch, over_images, sum_chunks
from .windows import image_blocks, pad_for_windows, window_view, windows_backward
from . import winograd
from ..fast import dispatch     # after .padding, which the fast paths use
from ..fast.dispatch import conv_plan

__all__ = ["conv2d", "conv2d_backward", "conv2d_relu", "conv2d_relu_backward", "conv_plan"]

#: below this many input channels per group, the input gradient is accumulated channel-major
SMALL_CHANNELS = 16
#: im2col columns are built in blocks of output rows of about this many bytes, about a
#: core's L2 cache (against 8 MiB, one thread: 47 -> 34 ms for the 7x7 seed convolution and
#: 27 -> 22 ms for a 3x3 64 -> 64 one at 8x56x56; 1 MiB was as fast on one thread but gave
#: the products too few rows for two BLAS threads: 27-33 against 24-27 ms for the 3x3)
BLOCK_BYTES = 1 << 21
#: a 1x1 convolution's product goes in blocks of output rows of about this many bytes, each
#: given its bias and ReLU while it is in the core's cache, instead of a pass over the whole
#: output after the product (see benchmarks/README.md)
POINTWISE_BLOCK_BYTES = 1 << 18
POINTWISE_BLOCK_MIN_ROWS = 256


@dataclass
class _ConvSetup:
    x: np.ndarray        # (N, H, W, C_in), channels_last view, common dtype
    kernel: np.ndarray   # (kh, kw, C_g, F), common dtype
    geo: Geometry
    groups: int
    mode: str
    dtype: np.dtype

    @property
    def out_shape(self):  # channels_last
        return (self.x.shape[0], *self.geo.out_hw, self.kernel.shape[3])


def _setup(where, x, kernel, strides, padding, dilation_rate, groups, padding_mode,
           data_format) -> _ConvSetup:
    check_data_format(data_format, where)
    x = as_float_array(x, where, "input", ndim=4, layout=layout_of(data_format))
    kernel = as_float_array(kernel, where, "kernel", ndim=4,
                            layout="(kh, kw, in_channels // groups, filters)")
    mode = check_pad_mode(padding_mode, where)
    if not isinstance(groups, Integral) or isinstance(groups, bool) or groups < 1:
        raise ShapeError(f"{where}: groups must be a positive int, got {groups!r}")
    groups = int(groups)
    xl = to_channels_last(x, data_format)
    in_channels, filters = xl.shape[3], kernel.shape[3]
    if in_channels % groups or filters % groups:
        raise ShapeError(f"{where}: groups={groups} must divide both the input channels "
                         f"({in_channels}, input shape {x.shape}) and the filters "
                         f"({filters}, kernel shape {kernel.shape})")
    if kernel.shape[2] * groups != in_channels:
        raise ShapeError(f"{where}: expected {kernel.shape[2] * groups} input channels, got "
                         f"{in_channels} (input shape {x.shape}, {data_format}; kernel shape "
                         f"{kernel.shape} with groups={groups})")
    try:
        geo = window_geometry(xl.shape[1:3], kernel.shape[:2], strides, padding, dilation_rate,
                              where=where)
    except ShapeError as exc:
        raise ShapeError(f"{exc} (input shape {x.shape}, kernel shape {kernel.shape})") from None
    check_pads_fit(xl.shape[1:3], geo.pads, mode, where, x.shape)
    dtype = result_float_dtype(x, kernel)
    return _ConvSetup(xl.astype(dtype, copy=False), kernel.astype(dtype, copy=False), geo,
                      groups, mode, dtype)


def _is_pointwise(s: _ConvSetup) -> bool:
    """1x1 kernel, stride 1, no padding: the convolution is a plain matrix product."""
    return (s.geo.kernel == (1, 1) and s.geo.strides == (1, 1)
            and s.geo.pads == ((0, 0), (0, 0)) and s.groups == 1)


def _row_blocks(s: _ConvSetup, row_bytes: int | None = None,
                rows: tuple[int, int] | None = None) -> list[tuple[int, int]]:
    """Ranges of output rows (within ``rows``, default all) of about ``BLOCK_BYTES`` each,
    by default of im2col columns.

    Building the columns block by block keeps them in cache between the copy and the
    matrix product and reuses one buffer, instead of writing an array ``kh*kw`` times the
    size of the input. ``row_bytes``: the bytes one output row (all images) takes instead.
    """
    h_out, w_out = s.geo.out_hw
    start, stop = rows or (0, h_out)
    if row_bytes is None:
        row_bytes = s.x.shape[0] * w_out * s.kernel[..., 0].size * s.groups * s.dtype.itemsize
    step = max(1, BLOCK_BYTES // max(1, row_bytes))
    return [(r, min(r + step, stop)) for r in range(start, stop, step)]


def _columns(s: _ConvSetup, padded: np.ndarray, rows: tuple[int, int],
             buffer: np.ndarray) -> np.ndarray:
    """im2col of output rows ``rows[0]:rows[1]``: ``(G, N*rows*W_out, kh*kw*C_g)``, written
    into ``buffer`` (one copy of the windows)."""
    n, w_out, (kh, kw) = s.x.shape[0], s.geo.out_hw[1], s.geo.kernel
    c_g, block = s.kernel.shape[2], rows[1] - rows[0]
    win = window_view(padded, s.geo)[:, rows[0]:rows[1]]       # (N, rows, W_out, kh, kw, C)
    win = win.reshape(n, block, w_out, kh, kw, s.groups, c_g)  # split C = G * C_g, still a view
    win = win.transpose(5, 0, 1, 2, 3, 4, 6)                   # (G, N, rows, W_out, kh, kw, C_g)
    # np.copyto into an array is about twice as fast as the copy reshape() would make
    cols = buffer[:win.size].reshape(win.shape)
    np.copyto(cols, win)
    return cols.reshape(s.groups, n * block * w_out, kh * kw * c_g)  # (G, M_rows, kh*kw*C_g)


def _column_buffer(s: _ConvSetup, blocks) -> np.ndarray:
    rows = max(r1 - r0 for r0, r1 in blocks)
    return np.empty(s.x.shape[0] * rows * s.geo.out_hw[1] * s.kernel[..., 0].size * s.groups,
                    dtype=s.dtype)


def _grouped_kernel(s: _ConvSetup) -> np.ndarray:
    """Kernel as ``(G, kh*kw*C_g, F_g)``."""
    kh, kw, c_g, filters = s.kernel.shape
    f_g = filters // s.groups
    k = s.kernel.reshape(kh, kw, c_g, s.groups, f_g).transpose(3, 0, 1, 2, 4)  # (G, kh, kw, C_g, F_g)
    return k.reshape(s.groups, kh * kw * c_g, f_g)


def _grouped_dy(s: _ConvSetup, dy: np.ndarray) -> np.ndarray:
    """``dy`` ``(N, H_out, W_out, F)`` as ``(G, M, F_g)``, contiguous."""
    m = dy.shape[0] * dy.shape[1] * dy.shape[2]
    f_g = dy.shape[3] // s.groups
    if s.groups == 1:
        return np.ascontiguousarray(dy).reshape(1, m, f_g)
    return np.ascontiguousarray(dy.reshape(m, s.groups, f_g).transpose(1, 0, 2))


def conv2d(x, kernel, bias=None, *, strides=1, padding="valid", dilation_rate=1, groups=1,
           padding_mode="zeros", data_format="channels_last") -> np.ndarray:
    """2-D cross-correlation (what deep-learning libraries call convolution; no kernel flip).

    Shapes: ``x`` ``(N, H, W, C_in)`` (``(N, C_in, H, W)`` for channels_first), ``kernel``
    ``(kh, kw, C_in // groups, filters)``, ``bias`` ``(filters,)`` or None; result
    ``(N, H_out, W_out, filters)`` (or ``(N, filters, H_out, W_out)``).

    Output size per axis (input ``n``, kernel ``k``, stride ``s``, dilation ``d``)::

        valid     H_out = floor((n - d*(k-1) - 1) / s) + 1
        same      H_out = ceil(n / s), pads split before = total // 2, after = the rest
        explicit  H_out = floor((n + before + after - d*(k-1) - 1) / s) + 1

    ``padding`` is ``"valid"``, ``"same"`` (any case), an int, ``(ph, pw)`` or
    ``((top, bottom), (left, right))``; padded cells hold 0 with ``padding_mode="zeros"``,
    or copies of the input with ``"reflect"``, ``"replicate"``, ``"circular"``.
    ``groups`` splits channels and filters into that many independent convolutions
    (``groups == C_in`` is depthwise).

    >>> x = np.arange(16.0).reshape(1, 4, 4, 1)
    >>> conv2d(x, np.ones((3, 3, 1, 1)))[0, :, :, 0]      # sums of 3x3 windows
    array([[45., 54.],
           [81., 90.]])
    """
    return _conv2d("conv2d", x, kernel, bias, strides, padding, dilation_rate, groups,
                   padding_mode, data_format, relu=False)


def conv2d_relu(x, kernel, bias=None, *, strides=1, padding="valid", dilation_rate=1, groups=1,
                padding_mode="zeros", data_format="channels_last") -> np.ndarray:
    """``max(conv2d(x, kernel, bias, ...), 0)`` with the ReLU fused into the convolution's
    last pass where a fast path allows it (same arguments and shapes as :func:`conv2d`).
    Its gradient is :func:`conv2d_backward` of ``dy * (y > 0)``.

    >>> conv2d_relu(np.array([[[[1.0], [-2.0]]]]), np.ones((1, 1, 1, 1)))[0, 0, :, 0]
    array([1., 0.])
    """
    return _conv2d("conv2d_relu", x, kernel, bias, strides, padding, dilation_rate, groups,
                   padding_mode, data_format, relu=True)


def _conv2d(where, x, kernel, bias, strides, padding, dilation_rate, groups, padding_mode,
            data_format, relu: bool) -> np.ndarray:
    s = _setup(where, x, kernel, strides, padding, dilation_rate, groups, padding_mode,
               data_format)
    filters = s.kernel.shape[3]
    if bias is not None:
        bias = as_float_array(bias, where, "bias")
        if bias.shape != (filters,):
            raise ShapeError(f"{where}: bias shape {bias.shape} does not match the "
                             f"{filters} filters of kernel shape {s.kernel.shape}")
        bias = bias.astype(s.dtype, copy=False)
    fast = dispatch.lookup("conv2d", "forward", s, bias, relu)
    if fast is not None:
        return from_channels_last(fast(s, bias, relu), data_format)   # (N, H_out, W_out, F)
    y = np.empty(s.out_shape, dtype=s.dtype)                       # (N, H_out, W_out, F)
    over_images(lambda x, out, rows: _forward_into(replace(s, x=x), bias, relu, out, rows),
                y, s.x, extra_bytes=_window_bytes(s), block_bytes=_image_block_bytes(s))
    return from_channels_last(y, data_format)


def _image_block_bytes(s: _ConvSetup) -> int | None:
    """A depthwise convolution goes through a few images at a time, ``BLOCK_BYTES`` of
    arrays, so that its padded input stays in cache for the nine passes (8x56x56x128 on one
    thread, data not in cache at the start: forward 7.3 -> 6.0 ms, backward 14.7 -> 12.8 ms
    against the whole batch at once); the others whole (their columns go by row blocks)."""
    return BLOCK_BYTES if s.kernel.shape[2] == 1 and s.groups > 1 else None


def _window_bytes(s: _ConvSetup) -> int:
    """Bytes of every output pixel's window, ``N*H_out*W_out*kh*kw*C_in``: the columns the
    reference builds, or the products a depthwise convolution adds up."""
    return s.x.shape[0] * int(np.prod(s.geo.out_hw)) * s.kernel[..., 0].size * s.groups \
        * s.dtype.itemsize


def _forward_into(s: _ConvSetup, bias, relu: bool, y: np.ndarray,
                  rows: tuple[int, int] | None = None, im2col_only: bool = False) -> None:
    """The NumPy forward of ``s`` written into ``y`` ``(N, H_out, W_out, F)``, its output
    rows ``rows[0]:rows[1]`` only when given (then ``N == 1``): a matrix product for a 1x1
    kernel (:func:`_pointwise_forward`), multiply-adds per kernel offset for a depthwise one, banded products for a few
    filters (:func:`_banded_forward`), Winograd F(2x2, 3x3) for 3x3 stride-1 ones with many
    channels (:mod:`convkit.ops.winograd`), im2col blocks of output rows otherwise (always
    with ``im2col_only``); then the bias and the ReLU in place."""
    n, w_out, filters = s.x.shape[0], s.geo.out_hw[1], s.kernel.shape[3]
    start, stop = rows or (0, s.geo.out_hw[0])
    y_rows = y[:, start:stop]          # contiguous: all rows, or some rows of one image
    if _is_pointwise(s):               # output row i is input row i
        _pointwise_forward(s.x[:, start:stop], s.kernel, bias, relu, y_rows)
        return
    if s.kernel.shape[2] == 1 and s.groups > 1:
        _depthwise_forward(s, y, (start, stop))
    elif not im2col_only and _is_banded(s):
        _banded_forward(s, y, (start, stop))
    elif not im2col_only and _is_winograd(s):
        _winograd_forward(s, y, (start, stop))
    else:
        padded = pad_for_windows(s.x, s.geo, s.mode)
        kernel_g = _grouped_kernel(s)                              # (G, kh*kw*C_g, F_g)
        blocks = _row_blocks(s, rows=(start, stop))
        buffer = _column_buffer(s, blocks)
        for r0, r1 in blocks:
            product = np.matmul(_columns(s, padded, (r0, r1), buffer), kernel_g)  # (G, M_rows, F_g)
            y[:, r0:r1] = product.transpose(1, 0, 2).reshape(n, r1 - r0, w_out, filters)
    _bias_relu(y_rows, bias, relu)


def _pointwise_forward(x: np.ndarray, kernel: np.ndarray, bias, relu: bool,
                       y: np.ndarray) -> None:
    """A 1x1 stride-1 convolution of ``x`` ``(N, rows, W, C)`` into ``y`` ``(N, rows, W, F)``:
    one matrix product, in blocks of output rows of about :data:`POINTWISE_BLOCK_BYTES`
    (at least :data:`POINTWISE_BLOCK_MIN_ROWS`), each given its bias and ReLU while it is in
    cache."""
    filters = kernel.shape[3]
    x2d = x.reshape(-1, x.shape[3])                                # (M_rows, C_in)
    y2d = y.reshape(-1, filters)                                   # (M_rows, F)
    kernel2d = kernel.reshape(kernel.shape[2], filters)
    step = max(POINTWISE_BLOCK_MIN_ROWS, POINTWISE_BLOCK_BYTES // (filters * y.itemsize))
    for r in range(0, len(x2d), step):
        part = y2d[r:r + step]
        np.matmul(x2d[r:r + step], kernel2d, out=part)
        _bias_relu(part, bias, relu)


def _bias_relu(y: np.ndarray, bias, relu: bool) -> None:
    """``y += bias`` (unless None), then the ReLU, in place."""
    if bias is not None:
        y += bias
    if relu:
        np.maximum(y, 0, out=y)


def conv2d_backward(dy, x, kernel, *, strides=1, padding="valid", dilation_rate=1, groups=1,
                    padding_mode="zeros", data_format="channels_last", input_grad=True):
    """Gradients of :func:`conv2d` for the upstream gradient ``dy`` (shaped like its output).

    Returns ``(dx, dkernel, dbias)`` shaped like ``x``, ``kernel`` and ``(filters,)``
    (``dx`` is ``None`` with ``input_grad=False``: the input needs no gradient, e.g. a
    model's first layer, and its computation is skipped)::

        dbias[f]         = sum_{n,i,j} dy[n, i, j, f]
        dkernel[a,b,c,f] = sum_{n,i,j} padded[n, i*sh + a*dh, j*sw + b*dw, c] * dy[n, i, j, f]
        dx               = adjoint of the padding applied to
                           sum_{a,b} scatter(dy @ kernel[a, b]^T) at offset (a, b)

    >>> x = np.arange(16.0).reshape(1, 4, 4, 1)
    >>> dx, dk, db = conv2d_backward(np.ones((1, 2, 2, 1)), x, np.ones((3, 3, 1, 1)))
    >>> dx[0, :, :, 0]                     # how many windows cover each pixel
    array([[1., 2., 2., 1.],
           [2., 4., 4., 2.],
           [2., 4., 4., 2.],
           [1., 2., 2., 1.]])
    """
    return _conv2d_backward("conv2d_backward", dy, x, kernel, None, strides, padding,
                            dilation_rate, groups, padding_mode, data_format, input_grad)


def conv2d_relu_backward(dy, x, kernel, y, *, strides=1, padding="valid", dilation_rate=1,
                         groups=1, padding_mode="zeros", data_format="channels_last",
                         input_grad=True):
    """Gradients of :func:`conv2d_relu` given its output ``y``: :func:`conv2d_backward` of
    ``dy * (y > 0)`` (``y > 0`` exactly where the pre-activation is), with the mask fused
    into the gradient's first pass where a fast path allows it. Same arguments and results
    as :func:`conv2d_backward` plus ``y`` (shaped like ``dy``).

    >>> x = np.array([[[[1.0], [-2.0]]]]); k = np.ones((1, 1, 1, 1))
    >>> y = conv2d_relu(x, k)
    >>> conv2d_relu_backward(np.ones_like(y), x, k, y)[1].ravel()    # only x = 1 counts
    array([1.])
    """
    return _conv2d_backward("conv2d_relu_backward", dy, x, kernel, y, strides, padding,
                            dilation_rate, groups, padding_mode, data_format, input_grad)


def _conv2d_backward(where, dy, x, kernel, relu_y, strides, padding, dilation_rate, groups,
                     padding_mode, data_format, input_grad):
    s = _setup(where, x, kernel, strides, padding, dilation_rate, groups, padding_mode,
               data_format)
    dy = as_float_array(dy, where, "dy", ndim=4, layout=layout_of(data_format))
    dyl = to_channels_last(dy, data_format).astype(s.dtype, copy=False)
    if dyl.shape != s.out_shape:
        raise ShapeError(f"{where}: dy has shape {dy.shape} but the output of conv2d for "
                         f"input shape {np.shape(x)} and kernel shape {s.kernel.shape} has "
                         f"shape {layout_shape(s.out_shape, data_format)}")
    yl = None
    if relu_y is not None:
        relu_y = as_float_array(relu_y, where, "y", ndim=4, layout=layout_of(data_format))
        if relu_y.shape != dy.shape:
            raise ShapeError(f"{where}: y has shape {relu_y.shape}, expected the shape of dy "
                             f"{dy.shape}")
        yl = to_channels_last(relu_y, data_format).astype(s.dtype, copy=False)
    fast = dispatch.lookup("conv2d", "backward", s, dyl, yl, bool(input_grad))
    if fast is not None:
        dx, dkernel, dbias = fast(s, dyl, yl, bool(input_grad))
        return (from_channels_last(dx, data_format) if dx is not None else None,
                dkernel, dbias)
    dx = np.empty(s.x.shape, dtype=s.dtype) if input_grad else None  # (N, H, W, C_in)
    parts = map_batch(lambda x, dy, y, out: _backward_into(replace(s, x=x), dy, y, out),
                      dx, s.x, dyl, yl, extra_bytes=_window_bytes(s),
                      block_bytes=_image_block_bytes(s))
    dkernel = sum_chunks([dkernel for dkernel, _ in parts])
    dbias = sum_chunks([dbias for _, dbias in parts])
    if dx is None:
        return None, dkernel, dbias
    return np.ascontiguousarray(from_channels_last(dx, data_format)), dkernel, dbias


def _backward_into(s: _ConvSetup, dyl: np.ndarray, yl: np.ndarray | None,
                   dx: np.ndarray | None):
    """The NumPy gradients of ``s`` for ``dyl`` (through the ReLU of output ``yl`` when
    given): the input gradient written into ``dx`` ``(N, H, W, C_in)`` unless it is None,
    ``(dkernel, dbias)`` returned."""
    n, (h_out, w_out) = s.x.shape[0], s.geo.out_hw
    kh, kw, c_g, filters = s.kernel.shape
    m = n * h_out * w_out
    if yl is not None:
        dyl = dyl * (yl > 0)                                           # through the ReLU
    dbias = dyl.sum(axis=(0, 1, 2))

    if _is_pointwise(s):
        dy2d = np.ascontiguousarray(dyl).reshape(m, filters)           # (M, F)
        x2d = s.x.reshape(m, c_g)                                      # (M, C_in)
        dkernel = (x2d.T @ dy2d).reshape(1, 1, c_g, filters)
        if dx is not None:
            np.matmul(dy2d, s.kernel.reshape(c_g, filters).T, out=dx.reshape(m, c_g))
        return dkernel, dbias
    if c_g == 1 and s.groups > 1:
        return _depthwise_backward(s, dyl, dx), dbias

    dyg = _grouped_dy(s, dyl)                                          # (G, M, F_g)
    f_g = filters // s.groups
    # dkernel: columns^T @ dy, per group, summed over blocks of output rows
    padded = pad_for_windows(s.x, s.geo, s.mode)
    blocks = _row_blocks(s)
    buffer = _column_buffer(s, blocks)
    dk = np.zeros((s.groups, kh * kw * c_g, f_g), dtype=s.dtype)
    for r0, r1 in blocks:
        cols = _columns(s, padded, (r0, r1), buffer)                   # (G, M_rows, kh*kw*C_g)
        dk += np.matmul(cols.transpose(0, 2, 1), _grouped_dy(s, dyl[:, r0:r1]))
    dkernel = (dk.reshape(s.groups, kh, kw, c_g, f_g)
               .transpose(1, 2, 3, 0, 4).reshape(kh, kw, c_g, filters))
    if dx is None:
        return dkernel, dbias

    transposed = _flipped_setup(s, dyl, transpose=True)
    if transposed is not None and _is_winograd(transposed):
        _forward_into(transposed, None, False, dx)     # Winograd over dy, the kernel turned
        return dkernel, dbias
    # dx: for each kernel offset, dy @ kernel[a, b]^T lands on a strided slice of the input
    kernel_g = s.kernel.reshape(kh, kw, c_g, s.groups, f_g).transpose(0, 1, 3, 2, 4)
    if c_g >= SMALL_CHANNELS:
        # (M, F_g) @ (F_g, C_g): rows of C_g channels, added along contiguous (W, C) rows
        kernel_t = np.ascontiguousarray(kernel_g.transpose(0, 1, 2, 4, 3))  # (kh, kw, G, F_g, C_g)

        def offset_grad(a, b):
            g = np.matmul(dyg, kernel_t[a, b])                         # (G, M, C_g)
            if s.groups > 1:
                g = g.transpose(1, 0, 2)                               # (M, G, C_g)
            return g.reshape(n, h_out, w_out, c_g * s.groups)          # (N, H_out, W_out, C)
    else:
        # few channels: (C_g, F_g) @ (F_g, M) keeps the long axis M in the product and in the
        # adds (channel-major buffers); a product with only C_g columns would be far slower
        kernel_c = np.ascontiguousarray(kernel_g)                      # (kh, kw, G, C_g, F_g)
        dy_t = np.ascontiguousarray(dyg.transpose(0, 2, 1))            # (G, F_g, M)

        def offset_grad(a, b):
            g = np.matmul(kernel_c[a, b], dy_t)                        # (G, C_g, M)
            g = g.reshape(s.groups * c_g, n, h_out, w_out)             # (C, N, H_out, W_out)
            return g.transpose(1, 2, 3, 0)                             # NHWC view

    dx[...] = windows_backward(offset_grad, s.geo, s.x.shape, s.dtype, s.mode,
                               channels_major=c_g < SMALL_CHANNELS)
    return dkernel, dbias


# ---------------------------------------------------------------- few filters
# im2col with a handful of filters is a product with a handful of columns, which the BLAS
# runs far below its peak, after a copy of kh*kw*C values per pixel. The banded form takes
# ``band`` neighbouring output pixels of a row together: their windows cover kh rows of
# ``band + kw - 1`` input pixels, one contiguous run per kernel row, and the kernel becomes
# a banded matrix mapping that patch to the ``band`` pixels' filters:
#
#     T[a, q, c, p, f] = kernel[a, q - p, c, f]   if 0 <= q - p < kw, else 0
#     y[n, i, j*band + p, f] = sum_{a, q, c} padded[n, i*sh + a*dh, j*band + q, c] * T[a, q, c, p, f]
#
# so the product has ``band*F`` columns and writes the output rows in place, and the copy
# is ``kh*(band + kw - 1)*C / band`` values per pixel instead of ``kh*kw*C``. The price is
# the zeros of T: ``(band + kw - 1) / kw`` times the multiply-adds, cheap next to a product
# with two columns. (The 7x7 seed convolution 2x427x640x3 -> 2, two threads: 17.5 -> 6.4
# ms; see benchmarks/README.md.)
#: convolutions with at most this many filters (and one group) take the banded product
BANDED_MAX_FILTERS = 8
#: output pixels per band, unless a divisor of the output width lies in BAND_CHOICES
BAND_PIXELS = 8
BAND_CHOICES = (8, 7, 9, 6, 10)


def _is_banded(s: _ConvSetup) -> bool:
    """Few filters, one group, a kernel wider than 1 moving by 1 pixel along the row."""
    kh, kw, _, filters = s.kernel.shape
    return (s.groups == 1 and filters <= BANDED_MAX_FILTERS and kw > 1
            and s.geo.strides[1] == 1 and s.geo.dilation[1] == 1)


def _band_width(w_out: int) -> int:
    """A band of :data:`BAND_CHOICES` pixels dividing the output width, else
    :data:`BAND_PIXELS` (the last band then runs past the row; its extra pixels are
    dropped)."""
    return next((b for b in BAND_CHOICES if w_out % b == 0), BAND_PIXELS)


def _band_kernel(kernel: np.ndarray, band: int) -> np.ndarray:
    """The banded matrix ``T`` ``(kh*(band+kw-1)*C, band*F)`` of ``kernel``
    ``(kh, kw, C, F)``: row ``(a, q, c)``, column ``(p, f)`` holds ``kernel[a, q-p, c, f]``
    where ``0 <= q - p < kw``, else 0.

    >>> _band_kernel(np.array([1.0, 2.0]).reshape(1, 2, 1, 1), 2)   # q = 0, 1, 2 by p = 0, 1
    array([[1., 0.],
           [2., 1.],
           [0., 2.]])
    """
    kh, kw, c, filters = kernel.shape
    t = np.zeros((kh, band + kw - 1, c, band, filters), dtype=kernel.dtype)
    for p in range(band):
        t[:, p:p + kw, :, p, :] = kernel
    return t.reshape(kh * (band + kw - 1) * c, band * filters)


def _banded_forward(s: _ConvSetup, y: np.ndarray, rows: tuple[int, int]) -> None:
    """The convolution of ``s`` (:func:`_is_banded`) as banded products, written into the
    output rows ``rows`` of ``y`` ``(N, H_out, W_out, F)``, image by image and block by
    block of rows. A block whose result holds a non-finite value is computed again by
    im2col: there each output sees only its own window, not an inf or NaN elsewhere in its
    band times a zero of ``T``."""
    n, (h_out, w_out) = s.x.shape[0], s.geo.out_hw
    kh, kw, c, filters = s.kernel.shape
    if not y.size or rows[0] == rows[1]:
        return
    band = _band_width(w_out)
    bands = -(-w_out // band)
    padded = pad_for_windows(s.x, s.geo, s.mode)                  # (N, Hp, w_out + kw - 1, C)
    tail = bands * band - w_out
    if tail or not padded.flags.c_contiguous:
        padded = np.pad(padded, ((0, 0), (0, 0), (0, tail), (0, 0)))
    # C-contiguous, so these strides hold (an axis of length 1 may carry any stride)
    s_c = padded.itemsize
    s_w, s_h = c * s_c, padded.shape[2] * c * s_c
    s_n = padded.shape[1] * s_h
    (sh, _), (dh, _) = s.geo.strides, s.geo.dilation
    run = (band + kw - 1) * c                                      # one kernel row's patch
    patches = as_strided(padded, shape=(n, h_out, bands, kh, run),
                         strides=(s_n, s_h * sh, s_w * band, s_h * dh, s_c), writeable=False)
    t = _band_kernel(s.kernel, band)                               # (kh*run, band*F)
    blocks = image_blocks(n, rows, bands * kh * run * s.dtype.itemsize, BLOCK_BYTES)
    most = max((i1 - i0) * (r1 - r0) for i0, i1, r0, r1 in blocks) * bands
    buffer = np.empty(most * kh * run, dtype=s.dtype)
    scratch = None
    for i0, i1, r0, r1 in blocks:
        cols = buffer[:(i1 - i0) * (r1 - r0) * bands * kh * run]
        cols = cols.reshape(i1 - i0, r1 - r0, bands, kh, run)
        np.copyto(cols, patches[i0:i1, r0:r1])
        cols = cols.reshape(-1, kh * run)                          # (images*rows*bands, kh*run)
        target = y[i0:i1, r0:r1]                                    # (images, rows, W_out, F)
        with np.errstate(invalid="ignore"):     # inf * 0: checked below
            if not tail and target.flags.c_contiguous:   # whole images, or rows of one
                np.matmul(cols, t, out=target.reshape(-1, band * filters))
            else:
                if scratch is None:
                    scratch = np.empty((most, band * filters), dtype=s.dtype)
                out = np.matmul(cols, t, out=scratch[:len(cols)])
                target[...] = out.reshape(i1 - i0, r1 - r0, bands * band, filters)[:, :, :w_out]
        if not np.isfinite(target).all():
            _im2col_block(s, y, (i0, i1, r0, r1))


# ---------------------------------------------------------------- Winograd F(2x2, 3x3)
def _is_winograd(s: _ConvSetup) -> bool:
    return winograd.applies(s.kernel.shape, s.geo.strides, s.geo.dilation, s.groups)


def _winograd_forward(s: _ConvSetup, y: np.ndarray, rows: tuple[int, int]) -> None:
    """:func:`convkit.ops.winograd.forward` into the output rows ``rows`` of ``y``; a block
    with a non-finite result is computed again by im2col (see there)."""
    padded = pad_for_windows(s.x, s.geo, s.mode)                   # (N, H_out + 2, W_out + 2, C)
    for block in winograd.forward(padded, s.kernel, y, rows, block_bytes=BLOCK_BYTES):
        _im2col_block(s, y, block)


def _im2col_block(s: _ConvSetup, y: np.ndarray, block: tuple[int, int, int, int]) -> None:
    """The block ``(image0, image1, row0, row1)`` of ``y`` computed again by im2col, where
    each output sees only its own window (for the forms whose sums reach an inf or NaN
    outside it through zeros); the bias and ReLU come after, from the caller."""
    i0, i1, r0, r1 = block
    _forward_into(replace(s, x=s.x[i0:i1]), None, False, y[i0:i1],
                  None if i1 - i0 > 1 else (r0, r1), im2col_only=True)


# ---------------------------------------------------------------- depthwise
# With one input channel per group the "matrix" products are G tiny ones; multiply-adds over
# the kernel offsets are faster and just as clear. ``np.einsum`` does them: for each output
# row its loop adds ``window(a, b) * kernel[a, b]`` into the row one offset after the other,
# one pass per offset with no product array (a multiply and an add per offset make two).
# Three things keep it fast: the output row and the window's row are merged into segments
# of ``g*C`` contiguous values (stride 1: a window row is contiguous), so einsum's inner loop
# runs along a thousand values or so (a separate ``(W_out, C)`` pair made it 1.6x slower);
# each tap of the kernel is repeated along one segment to match (:data:`SEGMENT_VALUES`);
# and the rows go a block at a time (``BLOCK_BYTES``), so the nine passes over a block stay
# in cache. A depth multiplier above 1 repeats each input channel ``mult`` times first: the
# same sums with ``C*mult`` channels of multiplier 1.
def _depthwise_input(s: _ConvSetup) -> np.ndarray:
    """The padded input ``(N, Hp, Wp, C*mult)``, C-contiguous: each channel repeated once
    per output channel of its group."""
    padded = np.ascontiguousarray(pad_for_windows(s.x, s.geo, s.mode))  # (N, Hp, Wp, C)
    mult = s.kernel.shape[3] // s.groups
    return padded if mult == 1 else np.repeat(padded, mult, axis=3)


#: a window's row of ``W_out*C`` contiguous values is cut into segments of whole pixels of
#: about this many values, each tap repeated along one segment only: einsum's inner loop
#: stays long, and a tap's repetition is a few KB of L1 cache instead of a whole row read
#: from L2 for every output row (8x56x56x128, one image on one thread: 0.56 ms for whole
#: rows of 7,168 values, 0.44-0.46 for 896-1,792, 0.48 for 512, 0.78 for single pixels)
SEGMENT_VALUES = 1024


def _depthwise_rows(padded: np.ndarray, geo, segments: bool = True) -> tuple[np.ndarray, str]:
    """The windows of ``padded`` ``(N, Hp, Wp, C)`` as a read-only view and its einsum
    subscripts: ``(N, H_out, kh, kw, S, g*C)`` ``"nhabsj"`` when the column stride is 1 (a
    window's row is ``W_out*C`` contiguous values, cut into ``S`` segments of ``g`` pixels,
    ``g`` a divisor of ``W_out``, :data:`SEGMENT_VALUES`; one segment, the whole row,
    without ``segments``), else ``(N, H_out, kh, kw, W_out, C)`` ``"nhabwc"``."""
    n, _, _, c = padded.shape
    s_n, s_h, s_w, s_c = padded.strides
    (sh, sw), (dh, dw), (kh, kw), (h_out, w_out) = geo.strides, geo.dilation, geo.kernel, geo.out_hw
    if sw == 1:
        g = max(d for d in range(1, w_out + 1)
                if w_out % d == 0 and (d == 1 or d * c <= SEGMENT_VALUES or not segments))
        return as_strided(padded, shape=(n, h_out, kh, kw, w_out // g, g * c),
                          strides=(s_n, s_h * sh, s_h * dh, s_w * dw, s_w * g, s_c),
                          writeable=False), "nhabsj"
    return as_strided(padded, shape=(n, h_out, kh, kw, w_out, c),
                      strides=(s_n, s_h * sh, s_h * dh, s_w * dw, s_w * sw, s_c),
                      writeable=False), "nhabwc"


def _depthwise_taps(kernel: np.ndarray, windows: np.ndarray, index: str) -> tuple[np.ndarray, str]:
    """The kernel ``(kh, kw, 1, F)`` repeated to match a window's row: ``(kh, kw, g*F)``
    ``"abj"`` for the segments ``"nhabsj"`` of :func:`_depthwise_rows` (the same taps for
    every segment), ``(kh, kw, W_out, F)`` ``"abwc"`` otherwise; C-contiguous."""
    kh, kw, _, filters = kernel.shape
    row = windows.shape[5:] if index == "nhabsj" else windows.shape[4:]   # (g*F,) or (W_out, F)
    taps = np.broadcast_to(kernel.reshape(kh, kw, 1, filters),
                           (kh, kw, int(np.prod(row)) // filters, filters))
    return np.ascontiguousarray(taps).reshape(kh, kw, *row), "ab" + index[-len(row):]


def _depthwise_blocks(s: _ConvSetup, rows=None) -> list[tuple[int, int]]:
    n, w_out, filters = s.x.shape[0], s.geo.out_hw[1], s.kernel.shape[3]
    return _row_blocks(s, n * w_out * filters * s.dtype.itemsize, rows)


def _depthwise_forward(s: _ConvSetup, out: np.ndarray,
                       rows: tuple[int, int] | None = None) -> None:
    """``y[n, i, j, c*mult + m] = sum over offsets (a, b) of window(a, b)[n, i, j, c]
    * kernel[a, b, 0, c*mult + m]``, written into ``out`` ``(N, H_out, W_out, C*mult)``
    (contiguous; any shape with those elements), output rows ``rows`` only when given."""
    n, h_out = s.x.shape[0], s.geo.out_hw[0]
    windows, index = _depthwise_rows(_depthwise_input(s), s.geo)
    taps, tap_index = _depthwise_taps(s.kernel, windows, index)
    y = out.reshape(n, h_out, *windows.shape[4:])               # (N, H_out, S, g*F) or (..., W_out, F)
    subscripts = f"{index},{tap_index}->nh{index[4:]}"
    for r0, r1 in _depthwise_blocks(s, rows):
        np.einsum(subscripts, windows[:, r0:r1], taps, out=y[:, r0:r1])


def _depthwise_backward(s: _ConvSetup, dyl: np.ndarray, dx: np.ndarray | None) -> np.ndarray:
    """``dkernel[a, b, 0, f] = sum over pixels of window(a, b)[..., f] * dy[..., f]`` (the
    window of the channel-repeated input) returned, block by block of output rows; ``dx``
    (unless None) written with the correlation of ``dy`` with the kernel turned by 180
    degrees where :func:`_flipped_setup` allows it, else by scattering ``dy * kernel[a, b]``
    (summed over the multiplier) onto each offset's window."""
    n, (h_out, w_out) = s.x.shape[0], s.geo.out_hw
    kh, kw, _, filters = s.kernel.shape
    windows, index = _depthwise_rows(_depthwise_input(s), s.geo, segments=False)
    dy = dyl.reshape(n, h_out, *windows.shape[4:])              # (N, H_out, 1, W_out*F) or (..., W_out, F)
    row_sums = np.zeros((kh, kw, *windows.shape[4:]), dtype=s.dtype)
    subscripts = f"{index},nh{index[4:]}->ab{index[4:]}"
    parts = _kernel_grad_parts(w_out, filters) if index == "nhabsj" else [slice(None)]
    for r0, r1 in _depthwise_blocks(s):
        for part in parts:                  # the same sums, each over some pixels of a row
            row_sums[..., part] += np.einsum(subscripts, windows[:, r0:r1, ..., part],
                                             dy[:, r0:r1, ..., part])
    dkernel = row_sums.reshape(kh, kw, w_out, filters).sum(axis=2).reshape(kh, kw, 1, filters)
    if dx is None:
        return dkernel
    flipped = _flipped_setup(s, dyl)
    if flipped is not None:
        _depthwise_forward(flipped, out=dx)
        return dkernel
    mult = filters // s.groups
    taps = np.ascontiguousarray(np.broadcast_to(
        s.kernel.reshape(kh, kw, 1, s.groups, mult), (kh, kw, w_out, s.groups, mult)))
    dy5 = dyl.reshape(n, h_out, w_out, s.groups, mult)          # (N, H_out, W_out, C, mult)

    def offset_grad(a, b):
        grad = dy5 * taps[a, b]                                 # (N, H_out, W_out, C, mult)
        return grad[..., 0] if mult == 1 else grad.sum(axis=4)

    dx[...] = windows_backward(offset_grad, s.geo, s.x.shape, s.dtype, s.mode)
    return dkernel


#: the kernel gradient's sums of products into the rows ``(kh, kw, W_out*F)`` go over parts of
#: a row of at most this many values and more than 8,192 / 3 (NumPy's buffer of 8,192 values:
#: einsum's sums into rows of 2,720 values or fewer take twice as long a product as into
#: rows of 2,736-4,096, and longer rows a third longer again). 8x56x56x128, one thread: 0.54
#: ms an image over two parts of 3,584 values against 0.70 for whole rows of 7,168
KERNEL_GRAD_PART_VALUES = 4096


def _kernel_grad_parts(w_out: int, filters: int) -> list:
    """Slices of a row of ``W_out*F`` values, each of ``g`` whole pixels, ``g`` the largest
    divisor of ``W_out`` with ``g*F`` at most :data:`KERNEL_GRAD_PART_VALUES`, when ``g*F``
    is above 8,192 / 3 and ``g`` is not ``W_out``; else the whole row."""
    fitting = [d for d in range(1, w_out + 1)
               if w_out % d == 0 and d * filters <= KERNEL_GRAD_PART_VALUES]
    g = max(fitting, default=w_out)
    if g == w_out or 3 * g * filters <= 8192:
        return [slice(None)]
    step = g * filters
    return [slice(j, j + step) for j in range(0, w_out * filters, step)]


def _flipped_setup(s: _ConvSetup, dyl: np.ndarray, transpose: bool = False
                   ) -> _ConvSetup | None:
    """The input gradient of a stride-1 convolution (zero padding) as a convolution: ``dy``
    zero-padded by ``d*(k-1) - pad`` on each side, correlated with the kernel turned by 180
    degrees, gives back ``(N, H, W, C)``. For a depthwise kernel (one filter per group) the
    turned kernel as it is; with ``transpose``, for one group, its channels and filters
    swapped, ``(kh, kw, F, C)``. None where that does not hold (strides, other padding
    modes, a pad wider than ``d*(k-1)``, other groups)."""
    kh, kw, _, filters = s.kernel.shape
    (dh, dw), ((top, bottom), (left, right)) = s.geo.dilation, s.geo.pads
    reach_h, reach_w = dh * (kh - 1), dw * (kw - 1)
    if (s.geo.strides != (1, 1) or s.mode != "zeros"
            or (s.groups != 1 if transpose else filters != s.groups)
            or max(top, bottom) > reach_h or max(left, right) > reach_w):
        return None
    pads = ((reach_h - top, reach_h - bottom), (reach_w - left, reach_w - right))
    geo = window_geometry(dyl.shape[1:3], (kh, kw), 1, pads, (dh, dw))
    if transpose:                   # filters become channels
        return _ConvSetup(dyl, s.kernel[::-1, ::-1].transpose(0, 1, 3, 2), geo, 1, "zeros",
                          s.dtype)
    return _ConvSetup(dyl, s.kernel[::-1, ::-1], geo, s.groups, "zeros", s.dtype)
