"""Transposed convolution layer: :class:`Conv2DTranspose`, a thin wrapper over
:func:`convkit.ops.conv_transpose.conv2d_transpose` and its backward."""
from __future__ import annotations

from .. import initializers, regularizers, shapes
from ..errors import ConvkitError
from .conv import _Conv, initializer_config, positive_int

__all__ = ["Conv2DTranspose"]


class Conv2DTranspose(_Conv):
    """Transposed convolution (sometimes called deconvolution): each input pixel writes
    the kernel, scaled by its value, ``strides`` apart into the output; the adjoint of a
    :class:`Conv2D`, used to upsample in decoders.

    Shape::

        input   (N, H, W, C_in)               channels_first: (N, C_in, H, W)
        kernel  (kh, kw, filters, C_in)        (Keras's layout)          bias (filters,)
        output  (N, H_out, W_out, filters)
        H_out   valid: (H - 1)*s + max(k_eff, s)       same: H*s          k_eff = d*(k-1) + 1
                with output_padding p: valid (H - 1)*s + k_eff + p;  same (H - 1)*s + k_eff % 2 + p
                explicit pads (PyTorch): (H - 1)*s + k_eff - top - bottom + p

    Parameters: ``kh * kw * filters * C_in + filters``. As in Keras, the initializer's fans
    come from the kernel shape: ``fan_in = kh*kw*filters``, ``fan_out = kh*kw*C_in``.

    >>> layer = Conv2DTranspose(32, 3, strides=2, padding="same")
    >>> layer.build((None, 7, 7, 64)); layer.output_shape, layer.count_params()
    ((None, 14, 14, 32), 18464)
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", output_padding=None,
                 data_format=None, dilation_rate=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(kernel_size, strides, padding, data_format, dilation_rate,
                         activation, use_bias, bias_initializer, bias_regularizer, **kwargs)
        where = "Conv2DTranspose"
        if self.padding_mode != "zeros":
            raise ConvkitError(f"{where}: the output is cropped, not padded; padding_mode "
                               f"must be 'zeros', got {self.padding_mode!r}")
        self.filters = positive_int(filters, "filters", where)
        self.output_padding = None if output_padding is None else \
            shapes.to_pair(output_padding, "output_padding", where, minimum=0)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        # output_padding against strides, pads against the kernel: checked before any data
        shapes.transpose_geometry((1 << 20, 1 << 20), self.kernel_size, self.strides,
                                  self.padding, self.output_padding, self.dilation_rate, where)

    @property
    def out_channels(self) -> int:
        return self.filters

    def _map_shape(self, shape, filters: int) -> tuple:
        return shapes.conv_transpose_output_shape(
            shape, filters, self.kernel_size, self.strides, self.padding,
            self.output_padding, self.dilation_rate, self.data_format,
            where="Conv2DTranspose")

    def _make_weights(self, channels: int) -> None:
        kh, kw = self.kernel_size
        self.add_weight("kernel", (kh, kw, self.filters, channels), self.kernel_initializer,
                        fan_in=kh * kw * self.filters, fan_out=kh * kw * channels,
                        regularizer=self.kernel_regularizer)
        self._add_bias(self.filters)

    def _op_kwargs(self) -> dict:
        return {"strides": self.strides, "padding": self.padding,
                "output_padding": self.output_padding, "dilation_rate": self.dilation_rate,
                "data_format": self.data_format}

    def _op(self, x, kernel, bias):
        from ..ops.conv_transpose import conv2d_transpose
        return conv2d_transpose(x, kernel, bias, **self._op_kwargs())

    def _op_backward(self, dz, x, kernel):
        from ..ops.conv_transpose import conv2d_transpose_backward
        return conv2d_transpose_backward(dz, x, kernel, input_grad=self.input_gradient,
                                         **self._op_kwargs())

    def _fused_relu(self) -> bool:
        return False              # conv2d_relu is the plain convolution's

    def get_config(self):
        config = {**super().get_config(), "filters": self.filters,
                  "output_padding": None if self.output_padding is None
                  else list(self.output_padding),
                  "kernel_initializer": initializer_config(self.kernel_initializer,
                                                           "Conv2DTranspose"),
                  "kernel_regularizer": regularizers.serialize(self.kernel_regularizer)}
        config.pop("padding_mode")          # transposed convolutions pad with zeros only
        return config

