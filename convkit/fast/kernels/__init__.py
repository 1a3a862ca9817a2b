"""Compiled fast paths for the CPU (numba), channels_last only.

These kernels do the same arithmetic as the NumPy ops in :mod:`convkit.ops.conv` and
:mod:`convkit.ops.pool`, but compiled and spread over the cores: each kernel works on a
range of ``batch * rows`` (or of images, where several windows write the same input cell),
one contiguous range per thread (:func:`convkit.fast.runtime.threads.run_chunks`; the kernels
release the GIL), and the innermost loop runs over contiguous channels (or output columns)
through a 1-D view so it vectorises. Reductions (kernel and bias gradients) add into one
partial sum per thread. Plain threads rather than numba's parallel loops: a much shorter
compile, and no thread-pool barrier spinning while the cores are shared (short, yielding
spin-waits are opt-in: ``CONVKIT_SPIN_US``, :mod:`convkit.fast.runtime.spin`).

numba is imported only when a kernel is first needed. :func:`available` says whether the
kernels can run: it is ``False`` without numba or when ``CONVKIT_ACCEL=0`` is set. The public
ops in :mod:`convkit.ops` reach these kernels only through :mod:`convkit.fast.dispatch`,
which asks the switch first. The switch's functions (``available``, ``enabled``,
``set_backend``, ...) are re-exported here for the tests and benchmarks that call kernels.
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
    conv3x3_s2_forward(x, kernel (3, 3, Cin, Cout), bias, pads, relu) -> y  (stride 2)
    im2col(x, geo)                                 -> (N*Ho*Wo, kh*kw*C)
    col2im(dcols, geo, x_shape)                    -> dx (N, H, W, C)
    bias_act_(y, bias, relu)                       y += bias (then ReLU), in place
    bias_act_rows(bias, relu, channels, dtype)     the same as a function of blocks of rows
    relu_backward(dy, y)                           dy * (y > 0), any shape
    conv2d_kernel_grad_small(dy, x, kernel_shape, geo, relu_y, write_dz)
                                                   -> dkernel, dbias, dz (few taps, one pass)

The package, one module per idea:

    checks.py       argument checks shared by the wrappers (NHWC arrays, geometry, dy)
    pooling.py      max pooling (values, argmax, scatter) and average pooling
    depthwise.py    depthwise convolution
    direct.py       direct convolution (planar, any stride) and the stride-1 wide grid
    im2col.py       im2col / col2im for the GEMM paths
    kernel_grad.py  one-pass kernel and bias gradients for few taps (ReLU mask fused)
    elementwise.py  bias (+ ReLU) in place, ReLU gradient
    implicit.py     the implicit-product convolution and the register-tile products
                    (around the generated ``convkit/fast/_generated/conv_regs.py``)
    winograd.py     Winograd F(4x4, 3x3) for stride-1 3x3 convolutions
    winograd_s2.py  stride-2 3x3 convolution by Winograd F(4, 2) along the width
    tapcols.py      tap-major columns for first layers on few channels

The switch, numba's lazy import, ``jit`` and the thread pool are in
:mod:`convkit.fast.runtime`; which kernel serves which op is :mod:`convkit.fast.dispatch`.

Everything below is importable from :mod:`convkit.fast.kernels` itself.

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

import numpy as np  # noqa: F401  (the docstring example uses it)

from ..runtime.backend import (BACKENDS, FASTMATH, available, enabled, get_backend, jit, num_threads,
                      set_backend, threaded, use_backend)
from .depthwise import depthwise_conv2d_backward, depthwise_conv2d_forward
from .direct import (conv2d_direct_backward, conv2d_direct_forward, conv2d_wide_backward,
                     conv2d_wide_forward)
from .elementwise import SMALL_ELEMENTWISE, bias_act_, bias_act_rows, relu_backward
from .im2col import col2im, im2col
from .implicit import conv2d_implicit_forward
from .kernel_grad import (SMALL_KGRAD_MAX_CELLS, SMALL_KGRAD_MIN_FILTERS,
                          conv2d_kernel_grad_small)
from .pooling import (SMALL_POOL, avg_pool2d_backward, avg_pool2d_forward,
                      max_pool2d_backward, max_pool2d_backward_direct, max_pool2d_forward,
                      max_pool2d_values)
from .winograd_s2 import conv3x3_s2_forward

__all__ = [
    "available", "enabled", "threaded", "set_backend", "get_backend", "use_backend",
    "num_threads", "jit",
    "max_pool2d_forward", "max_pool2d_values", "max_pool2d_backward",
    "max_pool2d_backward_direct",
    "avg_pool2d_forward", "avg_pool2d_backward",
    "depthwise_conv2d_forward", "depthwise_conv2d_backward",
    "conv2d_direct_forward", "conv2d_direct_backward", "conv2d_wide_forward",
    "conv2d_wide_backward",
    "conv2d_implicit_forward", "conv3x3_s2_forward", "im2col", "col2im", "bias_act_",
    "bias_act_rows", "relu_backward", "conv2d_kernel_grad_small",
]
