"""Naive per-window loops: the oracle the compiled kernels are tested against."""
import numpy as np


def cells(geo, oh, ow):
    """Input coordinates ``(ih, iw)`` of the window of output ``(oh, ow)`` in row-major
    order, padding included (coordinates may be out of range)."""
    (kh, kw), (sh, sw), (dh, dw) = geo.kernel, geo.strides, geo.dilation
    (top, _), (left, _) = geo.pads
    return [(oh * sh - top + i * dh, ow * sw - left + j * dw)
            for i in range(kh) for j in range(kw)]


def max_pool(x, geo):
    n, h, w, c = x.shape
    y = np.full((n, *geo.out_hw, c), -np.inf, x.dtype)
    arg = np.full(y.shape, -1, np.int32)
    for oh in range(geo.out_hw[0]):
        for ow in range(geo.out_hw[1]):
            for ih, iw in cells(geo, oh, ow):
                if 0 <= ih < h and 0 <= iw < w:
                    better = (x[:, ih, iw] > y[:, oh, ow]) | (arg[:, oh, ow] < 0)
                    y[:, oh, ow] = np.where(better, x[:, ih, iw], y[:, oh, ow])
                    arg[:, oh, ow] = np.where(better, ih * w + iw, arg[:, oh, ow])
    return y, arg


def max_pool_backward(dy, arg, x_shape):
    dx = np.zeros(x_shape, dy.dtype)
    n, h, w, c = x_shape
    for b in range(n):
        for oh in range(dy.shape[1]):
            for ow in range(dy.shape[2]):
                for ch in range(c):
                    a = arg[b, oh, ow, ch]
                    if a >= 0:
                        dx[b, a // w, a % w, ch] += dy[b, oh, ow, ch]
    return dx


def avg_divisor(geo, oh, ow, include_pad):
    (top, bottom), (left, right) = geo.pads
    h, w = geo.in_hw
    lo_h, hi_h, lo_w, hi_w = (-top, h + bottom, -left, w + right) if include_pad else (0, h, 0, w)
    count = sum(lo_h <= ih < hi_h and lo_w <= iw < hi_w for ih, iw in cells(geo, oh, ow))
    return max(count, 1)


def avg_pool(x, geo, include_pad):
    n, h, w, c = x.shape
    y = np.zeros((n, *geo.out_hw, c), x.dtype)
    for oh in range(geo.out_hw[0]):
        for ow in range(geo.out_hw[1]):
            for ih, iw in cells(geo, oh, ow):
                if 0 <= ih < h and 0 <= iw < w:
                    y[:, oh, ow] += x[:, ih, iw]
            y[:, oh, ow] /= avg_divisor(geo, oh, ow, include_pad)
    return y


def avg_pool_backward(dy, geo, x_shape, include_pad):
    dx = np.zeros(x_shape, dy.dtype)
    h, w = x_shape[1:3]
    for oh in range(geo.out_hw[0]):
        for ow in range(geo.out_hw[1]):
            share = dy[:, oh, ow] / avg_divisor(geo, oh, ow, include_pad)
            for ih, iw in cells(geo, oh, ow):
                if 0 <= ih < h and 0 <= iw < w:
                    dx[:, ih, iw] += share
    return dx


def windows(x, geo):
    """``(N, Ho, Wo, kh, kw, C)`` copy of every window, zero padding."""
    n, h, w, c = x.shape
    kh, kw = geo.kernel
    out = np.zeros((n, *geo.out_hw, kh, kw, c), x.dtype)
    for oh in range(geo.out_hw[0]):
        for ow in range(geo.out_hw[1]):
            for index, (ih, iw) in enumerate(cells(geo, oh, ow)):
                if 0 <= ih < h and 0 <= iw < w:
                    out[:, oh, ow, index // kw, index % kw] = x[:, ih, iw]
    return out


def conv(x, kernel, bias, geo, groups=1):
    """Grouped cross-correlation, HWIO kernel ``(kh, kw, C // groups, F)``."""
    win = windows(x, geo)
    c_g, filters = kernel.shape[2], kernel.shape[3]
    f_g = filters // groups
    y = np.zeros((x.shape[0], *geo.out_hw, filters), x.dtype)
    for g in range(groups):
        y[..., g * f_g:(g + 1) * f_g] = np.einsum(
            "nhwabc,abcf->nhwf", win[..., g * c_g:(g + 1) * c_g],
            kernel[..., g * f_g:(g + 1) * f_g])
    if bias is not None:
        y += bias
    return y


def check_central_differences(fn, args, grads, dy, rng, eps=1e-6, rtol=1e-4):
    """For each ``name: grad`` of ``grads``: the float64 central difference of
    ``sum(fn(**args) * dy)`` along a random direction of ``args[name]`` against
    ``<grad, direction>`` (``args`` are taken in float64)."""
    for name, grad in grads.items():
        direction = rng.standard_normal(np.shape(args[name]))

        def loss(sign):
            shifted = {key: np.asarray(value, np.float64) for key, value in args.items()}
            shifted[name] = shifted[name] + sign * eps * direction
            return np.sum(fn(**shifted) * dy)
        slope = (loss(1) - loss(-1)) / (2 * eps)
        np.testing.assert_allclose(slope, np.sum(grad * direction), rtol=rtol)
