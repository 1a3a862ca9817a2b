"""Functional ops: pure NumPy, no state, each forward next to its backward.

================================  ===============================================
conv2d / conv2d_backward          cross-correlation, groups, dilation, padding modes
max_pool2d / avg_pool2d (+ _backward), global_avg_pool2d / global_max_pool2d
pad2d / pad2d_backward            zeros/constant, reflect, replicate, circular
dense / dense_backward            x @ kernel + bias
activations.get(name)             Keras activations with their backward
convert_to_numpy, argmax, ...     Keras's ``keras.ops`` array functions (:mod:`.arrays`)
================================  ===============================================

Images are channels_last ``(N, H, W, C)`` unless ``data_format="channels_first"``; conv
kernels are HWIO ``(kh, kw, C_in // groups, filters)``. Every size comes from
:func:`convkit.shapes.window_geometry`; conv and pooling share one windowing primitive
(:mod:`convkit.ops.windows`); :mod:`convkit.ops.reference` holds the naive loop versions the
tests compare against.
"""
from . import activations, arrays, reference, windows
from .activations import (elu, exponential, gelu, hard_sigmoid, leaky_relu, linear,
                          log_softmax, relu, relu6, selu, sigmoid, silu, softmax, softplus,
                          softsign, swish, tanh)
from .conv import conv2d, conv2d_backward
from .dense import dense, dense_backward
from .arrays import *  # noqa: F401,F403 - Keras's keras.ops names (listed in arrays.__all__)
from .padding import pad2d, pad2d_backward
from .pool import (avg_pool2d, avg_pool2d_backward, global_avg_pool2d,
                   global_avg_pool2d_backward, global_max_pool2d, global_max_pool2d_backward,
                   max_pool2d, max_pool2d_backward)

__all__ = [
    "conv2d", "conv2d_backward", "max_pool2d", "max_pool2d_backward", "avg_pool2d",
    "avg_pool2d_backward", "global_avg_pool2d", "global_avg_pool2d_backward",
    "global_max_pool2d", "global_max_pool2d_backward", "pad2d", "pad2d_backward", "dense",
    "dense_backward", "activations", "windows", "reference",
    "linear", "relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "sigmoid",
    "hard_sigmoid", "swish", "silu", "tanh", "softplus", "softsign", "exponential",
    "softmax", "log_softmax", "arrays", *arrays.__all__,
]
