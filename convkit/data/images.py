"""Reading one image file into a float32 ``(height, width, channels)`` array with Pillow.

Pillow is optional (``pip install convkit[images]``) and imported only when an image is read.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import ConvkitError, FileFormatError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
COLOR_MODES = {"rgb": 3, "grayscale": 1, "rgba": 4}
_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")


def require_pillow(where: str):
    """Import and return ``PIL.Image``, or raise an ImportError saying what to install."""
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(f"{where} needs Pillow to read images: pip install convkit[images] "
                          "(or pip install pillow)") from None
    return Image


def check_size(size, where: str, name: str = "size") -> tuple[int, int] | None:
    """``None``, an int ``n`` (meaning ``(n, n)``) or ``(height, width)`` -> tuple or None."""
    if size is None:
        return None
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size), int(size))
    try:
        height, width = (int(v) for v in size)
        ok = all(float(v) == int(v) for v in size)
    except (TypeError, ValueError):
        ok = False
    if not ok or height < 1 or width < 1:
        raise ConvkitError(f"{where}: {name} must be (height, width) with positive ints, "
                           f"got {size!r}")
    return height, width


def check_color_mode(color_mode: str, where: str) -> int:
    """Number of channels of ``color_mode`` ('rgb' 3, 'grayscale' 1, 'rgba' 4)."""
    if color_mode not in COLOR_MODES:
        raise ConvkitError(f"{where}: color_mode must be one of {sorted(COLOR_MODES)}, "
                           f"got {color_mode!r}")
    return COLOR_MODES[color_mode]


def _to_mode(Image, image, color_mode: str):
    """Convert a loaded Pillow image to 'RGB', 'L' or 'RGBA'. Alpha is dropped for 'rgb' and
    'grayscale' (as Keras does); palette images with transparency go through RGBA first."""
    target = {"rgb": "RGB", "grayscale": "L", "rgba": "RGBA"}[color_mode]
    if image.mode == target:
        return image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    elif image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16/32-bit grey: scale to 8 bits instead of clipping everything above 255 to white.
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if values.max(initial=0) <= 65535 else float(values.max())
        values = np.clip(np.rint(values * (255.0 / peak)), 0, 255).astype(np.uint8)
        image = Image.fromarray(values)
    elif image.mode == "F":
        values = np.clip(np.rint(np.asarray(image, dtype=np.float64)), 0, 255).astype(np.uint8)
        image = Image.fromarray(values)
    return image.convert(target)


def read_image(path, size=None, color_mode: str = "rgb", interpolation: str = "bilinear",
               normalize: bool = True) -> np.ndarray:
    """Read one image file (any format Pillow reads: PNG, JPEG, BMP, GIF, TIFF, WebP, ...).

    Returns a float32 array of shape ``(height, width, channels)``: channels is 3 for
    ``color_mode="rgb"``, 1 for ``"grayscale"`` and 4 for ``"rgba"``. Values are in [0, 1]
    (``pixel / 255``), or 0..255 with ``normalize=False``. ``size=(height, width)`` resizes
    with Pillow's ``interpolation`` ("bilinear" by default, also "nearest", "bicubic",
    "lanczos", "box", "hamming"). Alpha is dropped for rgb/grayscale; grayscale uses Pillow's
    ITU-R 601-2 luma ``L = 0.299 R + 0.587 G + 0.114 B``; for an animated GIF the first frame
    is read.

    Raises ``FileNotFoundError`` for a missing file and ``FileFormatError`` naming the file
    when Pillow cannot decode it.

    Example::

        >>> read_image("cat.png", size=(64, 64)).shape
        (64, 64, 3)
    """
    Image = require_pillow("read_image")
    size = check_size(size, "read_image")
    check_color_mode(color_mode, "read_image")
    if interpolation not in _INTERPOLATIONS:
        raise ConvkitError(f"read_image: interpolation must be one of {list(_INTERPOLATIONS)}, "
                           f"got {interpolation!r}")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"read_image: no such file {path!r}")
    try:
        with Image.open(path) as image:
            image.load()
            image = _to_mode(Image, image, color_mode)
            if size is not None and image.size != (size[1], size[0]):
                resample = getattr(Image.Resampling, interpolation.upper())
                image = image.resize((size[1], size[0]), resample=resample)  # Pillow: (w, h)
            pixels = np.asarray(image, dtype=np.float32)
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError,
            Image.DecompressionBombError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise FileFormatError(f"read_image: cannot read {path!r} as an image "
                              f"({type(exc).__name__}: {exc})") from None
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]  # (H, W) -> (H, W, 1)
    if normalize:
        pixels /= 255.0
    return pixels
