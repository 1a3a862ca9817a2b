"""2-D transposed convolution (Keras's ``Conv2DTranspose``, PyTorch's ``ConvTranspose2d``),
forward and backward, written with :func:`convkit.ops.conv2d` and its gradient so the fast
paths behind those serve it too.

Shapes (channels_last; channels_first is ``(N, C, H, W)`` in and out)::

    x       (N, H, W, C_in)
    kernel  (kh, kw, filters, C_in)          Keras's layout: the kernel of the convolution
                                             from the output back to the input, HWIO
    bias    (filters,)
    y       (N, H_out, W_out, filters)

    y[n, i*sh + a*dh - top, j*sw + b*dw - left, f] += x[n, i, j, c] * kernel[a, b, f, c]

Every input pixel writes a copy of the kernel, scaled by its value, into the output at
``s`` times its position; ``top``/``left`` are the cells cropped at the start. It is the
adjoint (the input gradient) of the convolution with the same kernel that maps the output
back onto the input, so::

    forward   conv2d_backward's input gradient for the upstream gradient x (the
              convolution's input, a zero stand-in, only gives its shape; the kernel
              gradient that comes with it is dropped, and yet this measured faster than
              a stride-1 convolution over x spread s apart with the kernel flipped)
    dx        conv2d(dy, kernel, strides, pads = the crops)          (the convolution itself)
    dkernel   conv2d_backward(dy=x, x=dy, kernel)'s kernel gradient
    dbias     dy summed over batch, height and width

Sizes (per axis, input ``n``, ``k_eff = d*(k-1) + 1``; from
:func:`convkit.shapes.transpose_geometry`)::

    valid     H_out = (n - 1)*s + max(k_eff, s)            (+ output_padding - that default)
    same      H_out = n*s;  with output_padding: (n - 1)*s + k_eff % 2 + output_padding
    explicit  H_out = (n - 1)*s + k_eff - before - after + output_padding   (PyTorch)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import as_float_array, result_float_dtype
from ..errors import ShapeError
from ..shapes import TransposeGeometry, transpose_geometry
from .conv import conv2d, conv2d_backward
from .padding import (check_data_format, from_channels_last, layout_of, layout_shape,
                      pad_nhwc, to_channels_last)

__all__ = ["conv2d_transpose", "conv2d_transpose_backward"]


@dataclass
class _Setup:
    x: np.ndarray         # (N, H, W, C_in), channels_last view, common dtype
    kernel: np.ndarray    # (kh, kw, filters, C_in), common dtype
    geo: TransposeGeometry

    @property
    def out_shape(self):  # channels_last
        return (self.x.shape[0], *self.geo.out_hw, self.kernel.shape[2])


def _setup(where, x, kernel, strides, padding, output_padding, dilation_rate,
           data_format) -> _Setup:
    check_data_format(data_format, where)
    x = as_float_array(x, where, "input", ndim=4, layout=layout_of(data_format))
    kernel = as_float_array(kernel, where, "kernel", ndim=4,
                            layout="(kh, kw, filters, in_channels)")
    xl = to_channels_last(x, data_format)
    if kernel.shape[3] != xl.shape[3]:
        raise ShapeError(f"{where}: expected {kernel.shape[3]} input channels (kernel shape "
                         f"{kernel.shape}, (kh, kw, filters, in_channels)), got {xl.shape[3]} "
                         f"(input shape {x.shape}, {data_format})")
    try:
        geo = transpose_geometry(xl.shape[1:3], kernel.shape[:2], strides, padding,
                                 output_padding, dilation_rate, where=where)
    except ShapeError as exc:
        raise ShapeError(f"{exc} (input shape {x.shape}, kernel shape {kernel.shape})") from None
    dtype = result_float_dtype(x, kernel)
    return _Setup(xl.astype(dtype, copy=False), kernel.astype(dtype, copy=False), geo)


def conv2d_transpose(x, kernel, bias=None, *, strides=1, padding="valid", output_padding=None,
                     dilation_rate=1, data_format="channels_last") -> np.ndarray:
    """2-D transposed convolution (see the module docstring for shapes and sizes).

    ``padding`` is ``"valid"`` or ``"same"`` (Keras), or explicit pads ``p``, ``(ph, pw)``
    or ``((top, bottom), (left, right))``: cells cropped from the full output (PyTorch).
    ``output_padding`` (None, an int or a pair, each smaller than the stride) adds cells at
    the bottom/right.

    >>> x = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2, 1)
    >>> conv2d_transpose(x, np.ones((2, 2, 1, 1)), strides=2)[0, :, :, 0]  # each pixel -> 2x2
    array([[1., 1., 2., 2.],
           [1., 1., 2., 2.],
           [3., 3., 4., 4.],
           [3., 3., 4., 4.]])
    """
    s = _setup("conv2d_transpose", x, kernel, strides, padding, output_padding, dilation_rate,
               data_format)
    n, filters = s.x.shape[0], s.kernel.shape[2]
    stand_in = np.zeros((n, *s.geo.core_hw, filters), dtype=s.x.dtype)  # only its shape counts
    y = conv2d_backward(s.x, stand_in, s.kernel, strides=s.geo.strides, padding=s.geo.conv.pads,
                        dilation_rate=s.geo.dilation)[0]   # (N, core_h, core_w, F)
    extra_h, extra_w = s.geo.extra
    if extra_h or extra_w:                                 # cells no input reaches
        y = pad_nhwc(y, ((0, extra_h), (0, extra_w)))      # (N, H_out, W_out, F)
    if bias is not None:
        y += np.asarray(bias, dtype=y.dtype)
    return from_channels_last(y, data_format)


def conv2d_transpose_backward(dy, x, kernel, *, strides=1, padding="valid",
                              output_padding=None, dilation_rate=1,
                              data_format="channels_last", input_grad=True):
    """Gradients of :func:`conv2d_transpose` for the upstream gradient ``dy`` (shaped like
    its output): ``(dx, dkernel, dbias)`` shaped like ``x``, ``kernel`` and ``(filters,)``;
    ``dx`` is ``None`` with ``input_grad=False``::

        dx       = conv2d(dy[:, :core_h, :core_w], kernel, strides, pads = crops)
        dkernel  = kernel gradient of that convolution for its output gradient x
        dbias[f] = sum_{n,i,j} dy[n, i, j, f]

    (``core`` leaves out the cells ``output_padding`` adds beyond the full output: no
    input pixel reaches them.)

    >>> x = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2, 1)
    >>> dx, dk, db = conv2d_transpose_backward(np.ones((1, 4, 4, 1)), x, np.ones((2, 2, 1, 1)),
    ...                                        strides=2)
    >>> dx[0, :, :, 0], dk.ravel(), db            # each input pixel reaches 4 outputs
    (array([[4., 4.],
           [4., 4.]]), array([10., 10., 10., 10.]), array([16.]))
    """
    where = "conv2d_transpose_backward"
    s = _setup(where, x, kernel, strides, padding, output_padding, dilation_rate, data_format)
    dy = as_float_array(dy, where, "dy", ndim=4, layout=layout_of(data_format))
    dyl = to_channels_last(dy, data_format).astype(s.x.dtype, copy=False)
    if dyl.shape != s.out_shape:
        raise ShapeError(f"{where}: dy has shape {dy.shape} but the output of "
                         f"conv2d_transpose for input shape {np.shape(x)} and kernel shape "
                         f"{s.kernel.shape} has shape {layout_shape(s.out_shape, data_format)}")
    core_h, core_w = s.geo.core_hw
    dy_core = dyl[:, :core_h, :core_w]                     # (N, core_h, core_w, F)
    conv_args = {"strides": s.geo.strides, "padding": s.geo.conv.pads,
                 "dilation_rate": s.geo.dilation}
    dkernel = conv2d_backward(s.x, dy_core, s.kernel, input_grad=False, **conv_args)[1]
    dbias = dyl.sum(axis=(0, 1, 2))
    if not input_grad:
        return None, dkernel, dbias
    dx = conv2d(dy_core, s.kernel, **conv_args)            # (N, H, W, C_in)
    return from_channels_last(dx, data_format), dkernel, dbias
