"""Depthwise-separable 2-D convolution (Keras's ``SeparableConv2D``): a depthwise
convolution followed by a 1x1 (pointwise) one, both by :func:`convkit.ops.conv2d` so its
fast paths (depthwise, pointwise) serve them.

Shapes (channels_last; channels_first is ``(N, C, H, W)`` in and out)::

    x                 (N, H, W, C)
    depthwise_kernel  (kh, kw, C, dm)           input channel c -> channels c*dm .. c*dm + dm-1
    pointwise_kernel  (1, 1, C*dm, filters)
    bias              (filters,)
    z                 (N, H_out, W_out, C*dm)   z = depthwise(x)  (strides, padding, dilation)
    y                 (N, H_out, W_out, filters) y = z @ pointwise + bias

Sizes are those of the depthwise step (:func:`convkit.shapes.window_geometry`).
"""
from __future__ import annotations

import numpy as np

from .._validate import as_float_array
from ..errors import ShapeError
from .conv import conv2d, conv2d_backward

__all__ = ["separable_conv2d", "separable_conv2d_backward"]


def _depthwise_as_grouped(where: str, depthwise_kernel, pointwise_kernel):
    """The depthwise kernel as conv2d's grouped kernel ``(kh, kw, 1, C*dm)``, and ``C``."""
    depthwise_kernel = as_float_array(depthwise_kernel, where, "depthwise_kernel", ndim=4,
                                      layout="(kh, kw, in_channels, depth_multiplier)")
    pointwise_kernel = as_float_array(pointwise_kernel, where, "pointwise_kernel", ndim=4,
                                      layout="(1, 1, in_channels * depth_multiplier, filters)")
    kh, kw, channels, multiplier = depthwise_kernel.shape
    if pointwise_kernel.shape[:3] != (1, 1, channels * multiplier):
        raise ShapeError(f"{where}: pointwise_kernel must have shape (1, 1, "
                         f"{channels * multiplier}, filters) for depthwise_kernel shape "
                         f"{depthwise_kernel.shape}, got {pointwise_kernel.shape}")
    grouped = depthwise_kernel.reshape(kh, kw, 1, channels * multiplier)   # (kh, kw, 1, C*dm)
    return grouped, pointwise_kernel, channels


def separable_conv2d(x, depthwise_kernel, pointwise_kernel, bias=None, *, strides=1,
                     padding="valid", dilation_rate=1, padding_mode="zeros",
                     data_format="channels_last", return_depthwise=False):
    """``conv2d(depthwise(x), pointwise_kernel, bias)`` (see the module docstring); with
    ``return_depthwise=True`` returns ``(y, z)``, ``z`` the depthwise output that
    :func:`separable_conv2d_backward` can reuse.

    >>> x = np.ones((1, 3, 3, 2))
    >>> dk = np.ones((3, 3, 2, 1)); pk = np.array([1.0, -2.0]).reshape(1, 1, 2, 1)
    >>> separable_conv2d(x, dk, pk).ravel()            # 9*1 - 2*9
    array([-9.])
    """
    where = "separable_conv2d"
    grouped, pointwise, channels = _depthwise_as_grouped(where, depthwise_kernel,
                                                         pointwise_kernel)
    z = conv2d(x, grouped, None, strides=strides, padding=padding,
               dilation_rate=dilation_rate, groups=channels, padding_mode=padding_mode,
               data_format=data_format)                              # (N, H_out, W_out, C*dm)
    y = conv2d(z, pointwise, bias, data_format=data_format)          # (N, H_out, W_out, F)
    return (y, z) if return_depthwise else y


def separable_conv2d_backward(dy, x, depthwise_kernel, pointwise_kernel, *, strides=1,
                              padding="valid", dilation_rate=1, padding_mode="zeros",
                              data_format="channels_last", depthwise_output=None,
                              input_grad=True):
    """Gradients of :func:`separable_conv2d`: ``(dx, d_depthwise, d_pointwise, dbias)``
    (``dx`` ``None`` with ``input_grad=False``), by the chain rule through the two
    convolutions::

        dz, d_pointwise, dbias = conv2d_backward(dy, z, pointwise_kernel)
        dx, d_depthwise        = conv2d_backward(dz, x, depthwise kernel, groups=C)

    ``depthwise_output`` is ``z`` from the forward pass (recomputed when not given).
    """
    where = "separable_conv2d_backward"
    grouped, pointwise, channels = _depthwise_as_grouped(where, depthwise_kernel,
                                                         pointwise_kernel)
    depthwise_args = {"strides": strides, "padding": padding, "dilation_rate": dilation_rate,
                      "groups": channels, "padding_mode": padding_mode,
                      "data_format": data_format}
    z = depthwise_output
    if z is None:
        z = conv2d(x, grouped, None, **depthwise_args)
    dz, d_pointwise, dbias = conv2d_backward(dy, z, pointwise, data_format=data_format)
    dx, d_grouped, _ = conv2d_backward(dz, x, grouped, input_grad=input_grad,
                                       **depthwise_args)
    return dx, d_grouped.reshape(np.shape(depthwise_kernel)), d_pointwise, dbias
