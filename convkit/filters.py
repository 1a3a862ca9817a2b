"""The classic bank of hand-made convolution kernels.

Each function returns a float32 2-D array; convolution in convkit is cross-correlation
(the kernel is not flipped), so the kernels below are applied exactly as printed.
:func:`stack` turns a list of them into a ``(k, k, in_channels, n)`` HWIO kernel for
:class:`convkit.layers.Conv2D`::

    import convkit as ck
    conv = ck.layers.Conv2D(filters=2, kernel_size=7, padding="same", activation="relu")
    conv.build((None, 427, 640, 3))
    conv.set_weights([ck.filters.stack([ck.filters.vertical_line(7),
                                        ck.filters.horizontal_line(7)], in_channels=3),
                      np.zeros(2)])
    maps = conv(images)          # (batch, 427, 640, 2)

:func:`names` lists the bank and :func:`get` fetches a kernel by name.
"""
from __future__ import annotations

from numbers import Integral

import numpy as np

from .errors import ConvkitError, ShapeError

__all__ = [
    "vertical_line", "horizontal_line", "box_blur", "gaussian_blur", "sharpen", "sobel_x",
    "sobel_y", "prewitt_x", "prewitt_y", "laplacian", "emboss", "identity", "get", "names",
    "stack",
]


def _odd_size(size, where: str) -> int:
    if not isinstance(size, Integral) or isinstance(size, bool) or size < 1 or size % 2 == 0:
        raise ConvkitError(f"{where}: size must be an odd int >= 1, got {size!r}")
    return int(size)


def _kernel(rows) -> np.ndarray:
    return np.array(rows, dtype=np.float32)


def vertical_line(size: int = 3) -> np.ndarray:
    """Ones in the middle column: responds to vertical lines. ``size`` odd.

    >>> vertical_line()
    array([[0., 1., 0.],
           [0., 1., 0.],
           [0., 1., 0.]], dtype=float32)
    """
    size = _odd_size(size, "vertical_line")
    kernel = np.zeros((size, size), dtype=np.float32)
    kernel[:, size // 2] = 1.0
    return kernel


def horizontal_line(size: int = 3) -> np.ndarray:
    """Ones in the middle row: responds to horizontal lines. ``size`` odd.

    >>> horizontal_line()
    array([[0., 0., 0.],
           [1., 1., 1.],
           [0., 0., 0.]], dtype=float32)
    """
    size = _odd_size(size, "horizontal_line")
    kernel = np.zeros((size, size), dtype=np.float32)
    kernel[size // 2, :] = 1.0
    return kernel


def box_blur(size: int = 3) -> np.ndarray:
    """Every weight ``1 / size**2``: the mean of the window. ``size`` odd.

    >>> box_blur() * 9
    array([[1., 1., 1.],
           [1., 1., 1.],
           [1., 1., 1.]], dtype=float32)
    """
    size = _odd_size(size, "box_blur")
    return np.full((size, size), 1.0 / size ** 2, dtype=np.float32)


def gaussian_blur(size: int = 5, sigma: float | None = None) -> np.ndarray:
    """``exp(-(i**2 + j**2) / (2 sigma**2))`` for offsets ``i, j`` from the centre,
    normalised to sum 1. ``sigma=None`` uses ``0.3 * ((size - 1) / 2 - 1) + 0.8``
    (OpenCV's rule: about 1.1 for size 5).

    >>> np.round(gaussian_blur(3, sigma=1.0), 3)
    array([[0.075, 0.124, 0.075],
           [0.124, 0.204, 0.124],
           [0.075, 0.124, 0.075]], dtype=float32)
    """
    size = _odd_size(size, "gaussian_blur")
    if sigma is None:
        sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    if not np.isfinite(sigma) or sigma <= 0:
        raise ConvkitError(f"gaussian_blur: sigma must be positive, got {sigma!r}")
    offsets = np.arange(size, dtype=np.float64) - size // 2
    profile = np.exp(-offsets ** 2 / (2.0 * sigma ** 2))
    kernel = np.outer(profile, profile)              # (size, size), separable
    return (kernel / kernel.sum()).astype(np.float32)


def sharpen() -> np.ndarray:
    """The centre weighted 5, its four neighbours -1 (sums to 1).

    >>> sharpen()
    array([[ 0., -1.,  0.],
           [-1.,  5., -1.],
           [ 0., -1.,  0.]], dtype=float32)
    """
    return _kernel([[0, -1, 0], [-1, 5, -1], [0, -1, 0]])


def sobel_x() -> np.ndarray:
    """Horizontal derivative, smoothed vertically: positive where brightness increases to
    the right, so it finds vertical edges.

    >>> sobel_x()
    array([[-1.,  0.,  1.],
           [-2.,  0.,  2.],
           [-1.,  0.,  1.]], dtype=float32)
    """
    return _kernel([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])


def sobel_y() -> np.ndarray:
    """Vertical derivative: positive where brightness increases downwards (horizontal edges).

    >>> sobel_y()
    array([[-1., -2., -1.],
           [ 0.,  0.,  0.],
           [ 1.,  2.,  1.]], dtype=float32)
    """
    return _kernel([[-1, -2, -1], [0, 0, 0], [1, 2, 1]])


def prewitt_x() -> np.ndarray:
    """Horizontal derivative without Sobel's centre weighting.

    >>> prewitt_x()
    array([[-1.,  0.,  1.],
           [-1.,  0.,  1.],
           [-1.,  0.,  1.]], dtype=float32)
    """
    return _kernel([[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]])


def prewitt_y() -> np.ndarray:
    """Vertical derivative without Sobel's centre weighting.

    >>> prewitt_y()
    array([[-1., -1., -1.],
           [ 0.,  0.,  0.],
           [ 1.,  1.,  1.]], dtype=float32)
    """
    return _kernel([[-1, -1, -1], [0, 0, 0], [1, 1, 1]])


def laplacian() -> np.ndarray:
    """The 4-neighbour Laplacian (sums to 0): responds to edges in every direction.

    >>> laplacian()
    array([[ 0.,  1.,  0.],
           [ 1., -4.,  1.],
           [ 0.,  1.,  0.]], dtype=float32)
    """
    return _kernel([[0, 1, 0], [1, -4, 1], [0, 1, 0]])


def emboss() -> np.ndarray:
    """A diagonal derivative plus the image (sums to 1): a relief look.

    >>> emboss()
    array([[-2., -1.,  0.],
           [-1.,  1.,  1.],
           [ 0.,  1.,  2.]], dtype=float32)
    """
    return _kernel([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])


def identity(size: int = 3) -> np.ndarray:
    """A single 1 at the centre: the output equals the input. ``size`` odd.

    >>> identity()
    array([[0., 0., 0.],
           [0., 1., 0.],
           [0., 0., 0.]], dtype=float32)
    """
    size = _odd_size(size, "identity")
    kernel = np.zeros((size, size), dtype=np.float32)
    kernel[size // 2, size // 2] = 1.0
    return kernel


# name -> (function, takes a size)
_BANK = {
    "vertical_line": (vertical_line, True),
    "horizontal_line": (horizontal_line, True),
    "box_blur": (box_blur, True),
    "gaussian_blur": (gaussian_blur, True),
    "sharpen": (sharpen, False),
    "sobel_x": (sobel_x, False),
    "sobel_y": (sobel_y, False),
    "prewitt_x": (prewitt_x, False),
    "prewitt_y": (prewitt_y, False),
    "laplacian": (laplacian, False),
    "emboss": (emboss, False),
    "identity": (identity, True),
}


def names() -> list[str]:
    """Every kernel name :func:`get` accepts, sorted."""
    return sorted(_BANK)


def get(name: str, size: int | None = None) -> np.ndarray:
    """The kernel called ``name`` (case-insensitive, ``-`` or ``_``), at ``size`` if given.

    Fixed 3x3 kernels (Sobel, Prewitt, sharpen, Laplacian, emboss) accept only ``size=3``.

    >>> get("vertical_line", 5).shape
    (5, 5)
    """
    key = str(name).lower().replace("-", "_")
    if key not in _BANK:
        raise ConvkitError(f"filters.get: unknown filter {name!r}; known: {', '.join(names())}")
    function, sizeable = _BANK[key]
    if size is None:
        return function()
    if sizeable:
        return function(size)
    if size != 3:
        raise ConvkitError(f"filters.get: {key} is a fixed 3x3 kernel, got size={size!r}")
    return function()


def stack(kernels, in_channels: int = 1) -> np.ndarray:
    """Stack 2-D kernels into an HWIO conv kernel ``(kh, kw, in_channels, len(kernels))``.

    Each kernel is copied to every input channel, so filter ``j`` sums
    ``kernels[j]`` applied to each channel.

    >>> stack([vertical_line(), horizontal_line()], in_channels=3).shape
    (3, 3, 3, 2)
    """
    if not isinstance(in_channels, Integral) or isinstance(in_channels, bool) or in_channels < 1:
        raise ConvkitError(f"filters.stack: in_channels must be an int >= 1, "
                           f"got {in_channels!r}")
    if isinstance(kernels, np.ndarray) and kernels.ndim == 2:
        kernels = [kernels]
    arrays = [np.asarray(k) for k in kernels]
    if not arrays:
        raise ShapeError("filters.stack: needs at least one kernel, got an empty list")
    for index, kernel in enumerate(arrays):
        if kernel.ndim != 2:
            raise ShapeError(f"filters.stack: kernel {index} must be 2-D, got shape "
                             f"{kernel.shape}")
        if kernel.shape != arrays[0].shape:
            raise ShapeError(f"filters.stack: all kernels must have the same shape; kernel 0 "
                             f"is {arrays[0].shape}, kernel {index} is {kernel.shape}")
        if not np.issubdtype(kernel.dtype, np.number):
            raise ShapeError(f"filters.stack: kernel {index} must be numeric, got dtype "
                             f"{kernel.dtype}")
    out_dtype = np.float64 if any(k.dtype == np.float64 for k in arrays) else np.float32
    filters = np.stack(arrays, axis=-1).astype(out_dtype)       # (kh, kw, n)
    hwio = np.repeat(filters[:, :, None, :], in_channels, axis=2)  # (kh, kw, in, n)
    return np.ascontiguousarray(hwio)
