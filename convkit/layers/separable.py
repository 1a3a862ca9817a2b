"""Depthwise-separable convolution layer: :class:`SeparableConv2D`, a thin wrapper over
:func:`convkit.ops.separable.separable_conv2d` and its backward."""
from __future__ import annotations

from .. import initializers, regularizers
from .conv import _Conv, initializer_config, positive_int

__all__ = ["SeparableConv2D"]


class SeparableConv2D(_Conv):
    """A depthwise convolution (each input channel with its own ``depth_multiplier``
    kernels) followed by a 1x1 convolution that mixes the channels into ``filters``:
    Xception's and MobileNet's building block, far fewer weights than a full convolution.

    Shape::

        input             (N, H, W, C)              channels_first: (N, C, H, W)
        depthwise_kernel  (kh, kw, C, dm)
        pointwise_kernel  (1, 1, C*dm, filters)      bias (filters,)
        output            (N, H_out, W_out, filters), H_out as for Conv2D

    Parameters: ``kh*kw*C*dm + C*dm*filters + filters``; the weights are in Keras's order
    (``depthwise_kernel``, ``pointwise_kernel``, ``bias``), each initializer's fans from its
    own kernel shape as in Keras.

    >>> layer = SeparableConv2D(64, 3, padding="same")
    >>> layer.build((None, 32, 32, 32)); layer.output_shape, layer.count_params()
    ((None, 32, 32, 64), 2400)
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, depth_multiplier=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", pointwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None,
                 pointwise_regularizer=None, bias_regularizer=None, padding_mode="zeros",
                 **kwargs):
        super().__init__(kernel_size, strides, padding, data_format, dilation_rate,
                         activation, use_bias, bias_initializer, bias_regularizer,
                         padding_mode, **kwargs)
        where = "SeparableConv2D"
        self.filters = positive_int(filters, "filters", where)
        self.depth_multiplier = positive_int(depth_multiplier, "depth_multiplier", where)
        self.depthwise_initializer = initializers.get(depthwise_initializer)
        self.pointwise_initializer = initializers.get(pointwise_initializer)
        self.depthwise_regularizer = regularizers.get(depthwise_regularizer)
        self.pointwise_regularizer = regularizers.get(pointwise_regularizer)

    @property
    def out_channels(self) -> int:
        return self.filters

    def _make_weights(self, channels: int) -> None:
        kh, kw = self.kernel_size
        expanded = channels * self.depth_multiplier
        self.add_weight("depthwise_kernel", (kh, kw, channels, self.depth_multiplier),
                        self.depthwise_initializer, regularizer=self.depthwise_regularizer)
        self.add_weight("pointwise_kernel", (1, 1, expanded, self.filters),
                        self.pointwise_initializer, regularizer=self.pointwise_regularizer)
        self._add_bias(self.filters)

    def _op_kwargs(self) -> dict:
        return {"strides": self.strides, "padding": self.padding,
                "dilation_rate": self.dilation_rate, "padding_mode": self.padding_mode,
                "data_format": self.data_format}

    def forward(self, x, training: bool = False):
        from ..ops.separable import separable_conv2d
        x = self._image(x, self.in_channels)
        kernels = [self._weight("depthwise_kernel"), self._weight("pointwise_kernel")]
        dtype = self._compute_dtype(x, *kernels)
        x = x.astype(dtype, copy=False)
        depthwise, pointwise = (k.astype(dtype, copy=False) for k in kernels)
        bias = self._weight("bias").astype(dtype, copy=False) if self.use_bias else None
        z, mid = separable_conv2d(x, depthwise, pointwise, bias, return_depthwise=True,
                                  **self._op_kwargs())
        y = self.activation.forward(z)
        self.cache = (x, depthwise, pointwise, mid, z, y)
        return y

    def backward(self, dy, skip_activation: bool = False):
        from ..ops.separable import separable_conv2d_backward
        x, depthwise, pointwise, mid, z, y = self._cached()
        dy = self._gradient(dy, y.shape, z.dtype)
        dz = dy if skip_activation else self.activation.backward(dy, z, y)
        dx, d_depthwise, d_pointwise, dbias = separable_conv2d_backward(
            dz, x, depthwise, pointwise, depthwise_output=mid,
            input_grad=self.input_gradient, **self._op_kwargs())
        self._set_grads([d_depthwise, d_pointwise] + ([dbias] if self.use_bias else []))
        return dx

    def get_config(self):
        where = "SeparableConv2D"
        return {**super().get_config(), "filters": self.filters,
                "depth_multiplier": self.depth_multiplier,
                "depthwise_initializer": initializer_config(self.depthwise_initializer, where),
                "pointwise_initializer": initializer_config(self.pointwise_initializer, where),
                "depthwise_regularizer": regularizers.serialize(self.depthwise_regularizer),
                "pointwise_regularizer": regularizers.serialize(self.pointwise_regularizer)}
