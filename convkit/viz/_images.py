"""Turning the many ways of naming an image into a float array for the pictures."""
from __future__ import annotations

import os

import numpy as np

from .._validate import as_float_array
from ..errors import ConvkitError, ShapeError

SAMPLE_NAMES = ("china", "flower")


def load_image(image, where: str, size=None, color_mode: str = "rgb") -> np.ndarray:
    """An image as a float ``(H, W, C)`` array.

    ``image`` may be an array ``(H, W)``, ``(H, W, C)`` or ``(1, H, W, C)``, a file path, or
    ``"sample:china"`` / ``"sample:flower"`` for the bundled photographs. ``size`` ``(h, w)``
    and ``color_mode`` (``"rgb"`` or ``"grayscale"``) apply to files and samples.
    """
    if isinstance(image, (str, os.PathLike)):
        text = os.fspath(image)
        if text.startswith("sample:"):
            return _sample(text[len("sample:"):], where, size, color_mode)
        if not os.path.exists(text):
            raise ConvkitError(f"{where}: image file {text!r} does not exist")
        from ..data import read_image
        return np.asarray(read_image(text, size=size, color_mode=color_mode))
    arr = as_float_array(image, where, "image")
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ShapeError(f"{where}: expected an image (H, W), (H, W, C) or (1, H, W, C), "
                         f"got shape {arr.shape}")
    return arr


def _sample(name: str, where: str, size, color_mode: str) -> np.ndarray:
    if name not in SAMPLE_NAMES:
        raise ConvkitError(f"{where}: unknown sample image {name!r}; choose "
                           f"{', '.join('sample:' + n for n in SAMPLE_NAMES)}")
    from ..data import load_sample_images
    image = np.asarray(load_sample_images()[SAMPLE_NAMES.index(name)])
    if size is not None:
        image = resize(image, size)
    if color_mode == "grayscale":
        image = to_gray(image)[:, :, None]
    return image


def to_gray(image: np.ndarray) -> np.ndarray:
    """``(H, W, C)`` -> ``(H, W)``: ITU-R 601 luma for RGB, the channel mean otherwise."""
    if image.ndim == 2:
        return image
    if image.shape[-1] == 3:
        weights = np.asarray([0.299, 0.587, 0.114], dtype=image.dtype)
        return image @ weights
    return image.mean(axis=-1)


def resize(image: np.ndarray, size) -> np.ndarray:
    """Resize a float ``(H, W, C)`` image to ``size = (h, w)`` (bilinear, through Pillow)."""
    from PIL import Image
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    channels = [np.asarray(Image.fromarray(np.ascontiguousarray(image[:, :, c], np.float32))
                           .resize((w, h), Image.BILINEAR)) for c in range(image.shape[2])]
    return np.stack(channels, axis=-1).astype(image.dtype)   # (h, w, C)


def display_image(image: np.ndarray):
    """``(array, cmap)`` ready for ``imshow``: RGB scaled into [0, 1], one channel as grey."""
    if image.ndim == 3 and image.shape[2] == 3:
        lo, hi = float(image.min()), float(image.max())
        if lo < 0 or hi > 1:
            image = (image - lo) / (hi - lo if hi > lo else 1.0)
        return np.clip(image, 0, 1), None
    if image.ndim == 3:
        image = image[:, :, 0] if image.shape[2] == 1 else image.mean(axis=-1)
    return image, "gray"
