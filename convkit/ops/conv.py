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
input channel per group) a multiply-add per kernel offset.

That NumPy code is the reference. With the default backend ``"auto"``
(:func:`convkit.ops.accel.set_backend`) the same functions dispatch to faster paths where
they apply -- Winograd for 3x3 stride-1 convolutions with >= 8 channels, compiled direct,
depthwise and im2col kernels, threaded matrix products -- see :func:`conv_plan`.
"""
from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

import numpy as np

from .._validate import as_float_array, result_float_dtype
from ..errors import ShapeError
from ..shapes import Geometry, window_geometry
from . import _threads, accel, tapcols, winograd
from .accel import implicit, winograd_s2
from .padding import (check_pads_fit, check_data_format, check_pad_mode, from_channels_last,
                      layout_of, layout_shape, pad_nhwc, pad_nhwc_backward, to_channels_last)
from .windows import offset_window, pad_for_windows, window_view, windows_backward

__all__ = ["conv2d", "conv2d_backward", "conv2d_relu", "conv2d_relu_backward", "conv_plan"]

#: below this many input channels per group, the input gradient is accumulated channel-major
SMALL_CHANNELS = 16
#: im2col columns are built in blocks of output rows of about this many bytes
BLOCK_BYTES = 1 << 23


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


def _row_blocks(s: _ConvSetup) -> list[tuple[int, int]]:
    """Output-row ranges whose im2col columns take about ``BLOCK_BYTES`` each.

    Building the columns block by block keeps them in cache between the copy and the
    matrix product and reuses one buffer, instead of writing an array ``kh*kw`` times the
    size of the input.
    """
    h_out, w_out = s.geo.out_hw
    row_bytes = s.x.shape[0] * w_out * s.kernel[..., 0].size * s.groups * s.dtype.itemsize
    rows = max(1, BLOCK_BYTES // row_bytes)
    return [(r, min(r + rows, h_out)) for r in range(0, h_out, rows)]


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
    n, (h_out, w_out), filters = s.x.shape[0], s.geo.out_hw, s.kernel.shape[3]
    if bias is not None:
        bias = as_float_array(bias, where, "bias")
        if bias.shape != (filters,):
            raise ShapeError(f"{where}: bias shape {bias.shape} does not match the "
                             f"{filters} filters of kernel shape {s.kernel.shape}")
        bias = bias.astype(s.dtype, copy=False)
    plan = _plan(s)
    if plan != "numpy":
        y = _fast_forward(s, plan, bias, relu)                     # (N, H_out, W_out, F)
        return from_channels_last(y, data_format)
    if _is_pointwise(s):
        x2d = s.x.reshape(n * h_out * w_out, s.x.shape[3])        # (M, C_in)
        y = x2d @ s.kernel.reshape(s.kernel.shape[2], filters)    # (M, F)
    elif s.kernel.shape[2] == 1 and s.groups > 1:
        y = _depthwise_forward(s)                                  # (N, H_out, W_out, F)
    else:
        padded = pad_for_windows(s.x, s.geo, s.mode)
        kernel_g = _grouped_kernel(s)                              # (G, kh*kw*C_g, F_g)
        blocks = _row_blocks(s)
        buffer = _column_buffer(s, blocks)
        y = np.empty((n, h_out, w_out, filters), dtype=s.dtype)
        for r0, r1 in blocks:
            y_rows = np.matmul(_columns(s, padded, (r0, r1), buffer), kernel_g)  # (G, M_rows, F_g)
            y[:, r0:r1] = y_rows.transpose(1, 0, 2).reshape(n, r1 - r0, w_out, filters)
    y = y.reshape(n, h_out, w_out, filters)                        # (N, H_out, W_out, F)
    if bias is not None:
        y += bias.astype(s.dtype, copy=False)
    if relu:
        np.maximum(y, 0, out=y)
    return from_channels_last(y, data_format)


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
    n, (h_out, w_out) = s.x.shape[0], s.geo.out_hw
    kh, kw, c_g, filters = s.kernel.shape
    m = n * h_out * w_out
    plan = _plan(s, backward=True)
    if plan != "numpy":
        dx, dkernel, dbias = _fast_backward(s, plan, dyl, yl, bool(input_grad))
        return (from_channels_last(dx, data_format) if dx is not None else None,
                dkernel, dbias)
    if yl is not None:
        dyl = dyl * (yl > 0)                                           # through the ReLU
    dbias = dyl.sum(axis=(0, 1, 2))

    if _is_pointwise(s):
        dy2d = np.ascontiguousarray(dyl).reshape(m, filters)           # (M, F)
        x2d = s.x.reshape(m, c_g)                                      # (M, C_in)
        dkernel = (x2d.T @ dy2d).reshape(1, 1, c_g, filters)
        if not input_grad:
            return None, dkernel, dbias
        dx = (dy2d @ s.kernel.reshape(c_g, filters).T).reshape(s.x.shape)
        return from_channels_last(dx, data_format), dkernel, dbias
    if c_g == 1 and s.groups > 1:
        dx, dkernel = _depthwise_backward(s, dyl, input_grad)
        return (from_channels_last(dx, data_format) if dx is not None else None,
                dkernel, dbias)

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
    if not input_grad:
        return None, dkernel, dbias

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

    dx = windows_backward(offset_grad, s.geo, s.x.shape, s.dtype, s.mode,
                          channels_major=c_g < SMALL_CHANNELS)
    dx = np.ascontiguousarray(from_channels_last(dx, data_format))
    return dx, dkernel, dbias


# ---------------------------------------------------------------- depthwise fast path
# With one input channel per group the "matrix" products are G tiny ones; a multiply-add
# per kernel offset over the whole batch is faster and just as clear.
def _depthwise_forward(s: _ConvSetup) -> np.ndarray:
    n, (h_out, w_out) = s.x.shape[0], s.geo.out_hw
    kh, kw, _, filters = s.kernel.shape
    mult = filters // s.groups                                  # depth multiplier
    k = s.kernel.reshape(kh, kw, s.groups, mult)                # (kh, kw, C, mult)
    padded = pad_for_windows(s.x, s.geo, s.mode)
    y = np.zeros((n, h_out, w_out, s.groups, mult), dtype=s.dtype)
    for a in range(kh):
        for b in range(kw):
            y += offset_window(padded, s.geo, a, b)[..., None] * k[a, b]
    return y                                                    # (N, H_out, W_out, C, mult)


def _depthwise_backward(s: _ConvSetup, dyl: np.ndarray, input_grad: bool = True):
    n, (h_out, w_out) = s.x.shape[0], s.geo.out_hw
    kh, kw, _, filters = s.kernel.shape
    mult = filters // s.groups
    k = s.kernel.reshape(kh, kw, s.groups, mult)
    dy5 = dyl.reshape(n, h_out, w_out, s.groups, mult)          # (N, H_out, W_out, C, mult)
    padded = pad_for_windows(s.x, s.geo, s.mode)
    dkernel = np.empty((kh, kw, s.groups, mult), dtype=s.dtype)
    for a in range(kh):
        for b in range(kw):
            win = offset_window(padded, s.geo, a, b)            # (N, H_out, W_out, C)
            dkernel[a, b] = np.einsum("nhwc,nhwcm->cm", win, dy5, optimize=True)
    if not input_grad:
        return None, dkernel.reshape(kh, kw, 1, filters)

    def offset_grad(a, b):
        if mult == 1:
            return dy5[..., 0] * k[a, b, :, 0]
        return np.einsum("nhwcm,cm->nhwc", dy5, k[a, b])

    dx = windows_backward(offset_grad, s.geo, s.x.shape, s.dtype, s.mode)
    return dx, dkernel.reshape(kh, kw, 1, filters)


# ---------------------------------------------------------------- compiled / threaded paths
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


def conv_plan(x_shape, kernel_shape, strides=1, padding="valid", dilation_rate=1, groups=1,
              data_format="channels_last", dtype=np.float32, backward=False) -> str:
    """Which implementation :func:`conv2d` (or, with ``backward=True``,
    :func:`conv2d_backward`) uses for these shapes under the current backend
    (:func:`convkit.ops.accel.set_backend`). The first that applies, in this order:

    ``"winograd"``   ungrouped 3x3, stride 1, dilation 1, ``C_in, filters >= 8``
                     (:mod:`convkit.ops.winograd`, ReLU and bias fused in the forward);
                     where ``"implicit"`` applies, only from ``C_in * filters`` of
                     :data:`WINOGRAD_MIN_PAIRS_FORWARD` (forward) or
                     :data:`WINOGRAD_MIN_PAIRS_BACKWARD` (gradients) on
    ``"implicit"``   (forward only, ahead of the next four) where the register-tile
                     product applies (see below) and ``"winograd_s2"`` does not
    ``"taps"``       ungrouped, ``kh*kw*C_in <= 32``, ``C_in <= 4``, ``filters >= 16``
                     (a first layer on grey or RGB images, any stride / dilation): one GEMM
                     per block of images over tap-major columns (:mod:`convkit.ops.tapcols`),
                     bias and ReLU fused; its input gradient takes the next plan in this list
    ``"wide"``       ungrouped, stride 1, ``kh*kw*C_in <= 25`` (e.g. a first layer on
                     grey images): compiled direct convolution on the wide grid, one
                     image per task, ReLU and bias fused, gradients in one pass
    ``"direct"``     ungrouped, ``C_in * filters <= 16``, kernel at least 5x5 (compiled)
    ``"depthwise"``  one input channel per group (compiled, any stride / dilation)
    ``"pointwise"``  ungrouped 1x1, stride 1, no padding: threaded matrix products (float32
                     with at least 16 input channels and a multiple of 16 filters: the
                     register-tile product of :mod:`convkit.ops.accel.implicit`, bias and
                     ReLU in registers)
    ``"winograd_s2"`` ungrouped float32 3x3, stride 2, dilation 1, at least 16 input
                     channels, a multiple of 16 filters, output width cut into 4-wide tiles
                     with at most 15 % waste: F(4, 2) along the width, 75 % of the
                     multiplies (:mod:`convkit.ops.accel.winograd_s2`, bias and ReLU fused);
                     its gradients by the transforms' adjoints, also 75 % (input channels
                     a multiple of 16; else the ``"im2col"`` ones)
    ``"implicit"``   ungrouped float32, a multiple of 16 filters, at least 3 contiguous
                     input values per kernel row (``kw*C_in``; ``C_in`` with a dilated
                     width; a 1x1 kernel needs 16 channels): the forward as an implicit
                     product, no columns, the output tile, bias and ReLU in registers
                     (:mod:`convkit.ops.accel.implicit`); its gradients are the
                     ``"im2col"`` ones
    ``"im2col"``     anything else: compiled im2col / col2im around threaded products
                     (grouped convolutions one group at a time)
    ``"numpy"``      the NumPy code (backend ``"numpy"``, or numba unavailable)

    Other padding modes pad first, then take the plan of the zero-padded problem.

    >>> conv_plan((8, 56, 56, 64), (1, 1, 64, 128)) in ("pointwise", "numpy")
    True
    >>> conv_plan((128, 14, 14, 6), (5, 5, 6, 16)) in ("implicit", "numpy")   # LeNet-5
    True
    """
    check_data_format(data_format, "conv_plan")
    n, h, w = (x_shape[0], *x_shape[1:3]) if data_format == "channels_last" else \
        (x_shape[0], *x_shape[2:4])
    geo = window_geometry((h, w), kernel_shape[:2], strides, padding, dilation_rate,
                          where="conv_plan")
    return _choose(n, tuple(kernel_shape), geo, int(groups), np.dtype(dtype),
                   backward=bool(backward))


def _plan(s: _ConvSetup, backward: bool = False) -> str:
    """See :func:`conv_plan`."""
    return _choose(s.x.shape[0], s.kernel.shape, s.geo, s.groups, s.dtype, backward=backward)


def _choose(batch: int, kernel_shape, geo: Geometry, groups: int, dtype,
            taps: bool = True, backward: bool = False) -> str:
    # the one switch (CONVKIT_ACCEL, set_backend, numba importable) is asked first: no plan
    # below runs without it
    if not accel.enabled() or batch == 0 or dtype not in (np.float32, np.float64):
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


def _zero_padded(s: _ConvSetup):
    """``(x, geo)`` with zero pads: other padding modes are applied to ``x`` first."""
    x = np.ascontiguousarray(s.x)
    if s.mode == "zeros" or s.geo.pads == ((0, 0), (0, 0)):
        return x, s.geo
    padded = pad_nhwc(x, s.geo.pads, s.mode)                     # (N, H + pads, W + pads, C)
    geo = window_geometry(padded.shape[1:3], s.geo.kernel, s.geo.strides, 0, s.geo.dilation)
    return padded, geo


def _batch_blocks(s: _ConvSetup, geo: Geometry, channels: int) -> list[tuple[int, int]]:
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
    if accel.enabled():
        accel.bias_act_(y2d, bias, relu)
        return
    if bias is not None:
        y2d += bias
    if relu:
        np.maximum(y2d, 0, out=y2d)


def _bias_act_epilogue(bias, relu: bool, channels: int, dtype):
    """:func:`_bias_act` as a function of blocks of rows (``None`` when there is nothing to
    add), with the compiled kernel's set-up done once."""
    if bias is None and not relu:
        return None
    if accel.enabled():
        return accel.bias_act_rows(bias, relu, channels, dtype)
    return lambda rows: _bias_act(rows, bias, relu)


def _group_slice(x: np.ndarray, g: int, width: int, groups: int) -> np.ndarray:
    return x if groups == 1 else np.ascontiguousarray(x[..., g * width:(g + 1) * width])


def _fast_forward(s: _ConvSetup, plan: str, bias, relu: bool) -> np.ndarray:
    """The forward of :func:`conv2d` (plus ReLU) by ``plan``: ``(N, H_out, W_out, F)``."""
    kh, kw, c_g, filters = s.kernel.shape
    n, (h_out, w_out) = s.x.shape[0], s.geo.out_hw
    kernel = np.ascontiguousarray(s.kernel)
    if plan == "pointwise" and accel.enabled() and implicit.applies(s.kernel.shape, 1, s.dtype):
        plan = "implicit"          # the same product, the bias and ReLU added in registers
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
    y = np.empty((n, h_out, w_out, filters), dtype=s.dtype)
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


def _fast_backward(s: _ConvSetup, plan: str, dyl: np.ndarray, yl, input_grad: bool):
    """``(dx NHWC or None, dkernel, dbias)`` of :func:`conv2d` by ``plan``; ``yl`` is the
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
    if accel.enabled() and implicit.kernel_grad_taps_applies(s.dtype, kernel.shape, s.groups) \
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
        fallback = _choose(x.shape[0], kernel.shape, geo, s.groups, s.dtype, taps=False,
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


def _fold_padding(s: _ConvSetup, dx):
    """``dx`` of the explicitly padded input folded back onto the input (padding modes
    other than zeros); ``None`` stays ``None``."""
    if dx is not None and s.mode != "zeros" and s.geo.pads != ((0, 0), (0, 0)):
        dx = pad_nhwc_backward(dx, s.geo.pads, s.mode, s.x.shape[1:3])
    return dx


def _small_kernel_grad(s: _ConvSetup) -> bool:
    """Whether :func:`convkit.ops.accel.conv2d_kernel_grad_small` takes the kernel
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


def _register_products(s: _ConvSetup, columns: int, filters: int):
    """The compiled register-tile products ``(matmul_rows, matmul_tn_add)`` of
    :mod:`convkit.ops.accel.implicit` for a backward whose products are ``columns^T @ dy``
    (``(M, columns)``, ``(M, filters)``) and ``dy @ kernel^T``, or the BLAS ones
    (``_threads.BLAS_PRODUCTS``) when they do not apply: not float32, or sizes that are not
    whole tiles."""
    if not accel.enabled() or not (implicit.products_apply(s.dtype, columns, filters)
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
    dx = np.empty(x.shape, dtype=x.dtype) if with_input else None
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


def _im2col_backward(s: _ConvSetup, x: np.ndarray, geo: Geometry, kernel: np.ndarray,
                     dy: np.ndarray, with_kernel: bool, with_input: bool = True):
    """``(dx (N, Hp, Wp, C) or None, dkernel or None)`` through columns, a group and a
    block of images at a time: ``dkernel = columns^T @ dy``, ``dx = col2im(dy @ kernel^T)``."""
    kh, kw, c_g, filters = kernel.shape
    if s.groups == 1:
        return _cached_blocks_backward(x, geo, kernel, np.ascontiguousarray(dy), with_kernel,
                                       with_input, _register_products(s, kh * kw * c_g, filters))
    n, f_g = x.shape[0], filters // s.groups
    dx = np.empty(x.shape, dtype=s.dtype)                            # (N, Hp, Wp, C)
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
