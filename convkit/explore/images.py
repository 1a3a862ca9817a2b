"""Images for the explorer: uploads decoded safely, built-in samples, and what the model sees.

Every image ends as a float32 ``(height, width, channels)`` array in [0, 1] sized and
coloured for the model's input, with a note saying what was done to it (decoded size,
colour conversion, resize, inversion) and warnings (an image that looks inverted against
the light-on-dark digits MNIST models are trained on).

An upload is checked before it is decoded: at most :data:`MAX_UPLOAD_BYTES` bytes, and the
header's width x height at most :data:`MAX_PIXELS` (a 20000x20000 PNG of a few hundred KB
would need 400 MB once decoded). Anything Pillow cannot read is a :class:`UploadError`.
"""
from __future__ import annotations

import io
import warnings

import numpy as np

from ..errors import ConvkitError

__all__ = ["UploadError", "ModelImage", "decode_upload", "sample_names", "sample_image",
           "prepare", "inverted", "upload_image", "file_image", "looks_inverted", "MAX_UPLOAD_BYTES", "MAX_PIXELS"]

#: Largest upload accepted, in bytes.
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
#: Largest decoded image accepted, width * height (about 5000 x 5000).
MAX_PIXELS = 25_000_000


class UploadError(ConvkitError):
    """An uploaded file that is not an image the model can read; the message is for the user."""


class ModelImage:
    """An image as the model sees it: ``pixels`` float32 ``(H, W, C)`` in [0, 1], the
    ``name`` shown on the page, a ``note`` on what was done to it and ``warnings``."""

    def __init__(self, pixels: np.ndarray, name: str, note: str, warnings_=()):
        self.pixels = pixels
        self.name = name
        self.note = note
        self.warnings = list(warnings_)

    def __repr__(self) -> str:
        return f"ModelImage({self.name!r}, shape={self.pixels.shape})"


def decode_upload(data: bytes, name: str = "upload"):
    """Decode uploaded bytes into a Pillow image, refusing what is too big or not an image.

    >>> decode_upload(b"not an image")
    Traceback (most recent call last):
    ...
    convkit.explore.images.UploadError: upload: not an image (Pillow reads PNG, JPEG, ...)
    """
    from PIL import Image
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadError(f"{name}: the file is {len(data) / 2**20:.1f} MB; the explorer "
                          f"takes images up to {MAX_UPLOAD_BYTES // 2**20} MB")
    if not data:
        raise UploadError(f"{name}: the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))          # reads the header only
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise UploadError(f"{name}: the image is {width}x{height} pixels, too large: "
                                  f"the explorer decodes images up to {MAX_PIXELS:,} pixels "
                                  f"(e.g. 5000x5000); shrink it first")
            image.seek(0)                                 # the first frame of an animation
            image.load()
    except UploadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UploadError(f"{name}: the image is too large to decode safely ({exc})") from None
    except Image.UnidentifiedImageError:
        raise UploadError(f"{name}: not an image (Pillow reads PNG, JPEG, GIF, BMP, TIFF, "
                          f"WebP, ...)") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for a bad file
        detail = str(exc).splitlines()[0] if str(exc) else "no detail"
        raise UploadError(f"{name}: a damaged or unsupported image ({type(exc).__name__}: "
                          f"{detail})") from None
    return image


def _image_to_array(image, channels: int, input_hw, where: str) -> tuple[np.ndarray, str]:
    """A Pillow image as float32 ``(H, W, channels)`` in [0, 1] and a note on the colour
    conversion (Pillow's ITU-R 601 luma for grey; alpha dropped). A picture far larger than
    the model's input ``(h, w)`` is first shrunk (box filter, aspect kept) to about four
    times that size, so a large photograph never becomes a large float array."""
    from ..data.images import _to_mode
    from PIL import Image
    target = {1: "grayscale", 3: "rgb"}[channels]
    mode = image.mode
    try:
        converted = _to_mode(Image, image, target)
    except (ValueError, OSError) as exc:
        raise UploadError(f"{where}: cannot convert a {mode} image to {target} "
                          f"({exc})") from None
    h, w = input_hw
    notes = [] if mode == {1: "L", 3: "RGB"}[channels] else [f"converted from {mode} to {target}"]
    if converted.width > 8 * w or converted.height > 8 * h:
        converted = converted.copy()
        converted.thumbnail((4 * w, 4 * h), Image.Resampling.BOX)
        notes.append(f"shrunk to {converted.height}x{converted.width} (box filter)")
    pixels = np.asarray(converted, dtype=np.float32) / 255.0
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]                       # (H, W) -> (H, W, 1)
    return pixels, ", ".join(notes)


def _fit(pixels: np.ndarray, channels: int, input_hw, where: str) -> tuple[np.ndarray, list]:
    """Resize ``(H, W, C)`` to the model's input and match its channel count."""
    from ..viz._images import resize, to_gray
    notes = []
    if pixels.shape[2] != channels:
        if channels == 1:
            pixels = to_gray(pixels)[:, :, None]
            notes.append("converted to grey")
        elif channels == 3 and pixels.shape[2] == 1:
            pixels = np.repeat(pixels, 3, axis=2)
            notes.append("grey repeated into R, G, B")
        else:
            raise UploadError(f"{where}: the model takes {channels}-channel images, the image "
                              f"has {pixels.shape[2]}")
    h, w = input_hw
    if (h is not None and w is not None) and pixels.shape[:2] != (h, w):
        notes.append(f"resized from {pixels.shape[0]}x{pixels.shape[1]} to {h}x{w}")
        pixels = np.clip(resize(pixels, (h, w)), 0.0, 1.0)
    return np.ascontiguousarray(pixels, dtype=np.float32), notes


def check_channels(channels: int, where: str) -> int:
    """``channels`` if images can be read for it (1 grey, 3 RGB), else an :class:`UploadError`."""
    if channels not in (1, 3):
        raise UploadError(f"{where}: the model takes {channels}-channel images; the explorer "
                          f"reads 1-channel (grey) and 3-channel (RGB) images only")
    return channels


def looks_inverted(pixels: np.ndarray) -> bool:
    """Whether a grey image in [0, 1] looks dark-on-light: its border (the outermost rows and
    columns, where a centred digit's background is) averages above 0.5. Digit models trained
    on MNIST expect a light digit on black and answer confidently wrong otherwise.

    >>> looks_inverted(np.ones((28, 28, 1)) * 0.9)
    True
    """
    gray = pixels.mean(axis=-1) if pixels.ndim == 3 else pixels
    border = np.concatenate([gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]])
    return bool(border.mean() > 0.5)


def inverted_warning(pixels: np.ndarray) -> list[str]:
    """The warning the page and ``convkit predict`` give for a grey model input that looks
    inverted (empty when it does not, or for colour inputs)."""
    if pixels.shape[-1] != 1 or not looks_inverted(pixels):
        return []
    return ["the image looks dark-on-light (bright border), but MNIST-trained models expect "
            "a light digit on black, so the answer is probably wrong: invert it (convkit "
            "predict --invert, or the explorer's Invert box)"]


def prepare(pixels: np.ndarray, input_shape, name: str, notes=(),
            where: str = "explore") -> ModelImage:
    """Fit float ``(H, W, C)`` pixels in [0, 1] to the model input ``(None, h, w, c)``, with
    the note and warnings the page shows."""
    _, h, w, channels = input_shape
    check_channels(channels, where)
    fitted, fit_notes = _fit(pixels, channels, (h, w), where)
    all_notes = [n for n in notes if n] + fit_notes
    note = f"{fitted.shape[0]}x{fitted.shape[1]}x{fitted.shape[2]}, values 0..1" + \
        ("; " + ", ".join(all_notes) if all_notes else "")
    return ModelImage(fitted, name, note, inverted_warning(fitted))


def inverted(image: ModelImage) -> ModelImage:
    """``image`` with every value ``x`` replaced by ``1 - x`` (note and warnings updated)."""
    pixels = 1.0 - image.pixels
    return ModelImage(pixels, image.name, image.note + ("; " if image.note else "") +
                      "inverted (1 - x)", inverted_warning(pixels))


def upload_image(data: bytes, name: str, input_shape) -> ModelImage:
    """Decode an upload and fit it to the model: :func:`decode_upload` then :func:`prepare`."""
    image = decode_upload(data, name)
    size = f"decoded {image.height}x{image.width} {image.mode}"
    channels = check_channels(input_shape[3], name)
    pixels, colour_note = _image_to_array(image, channels, input_shape[1:3], name)
    return prepare(pixels, input_shape, name, [size, colour_note], where=name)


# ------------------------------------------------------------------ built-in samples
def sample_names(input_shape) -> list[str]:
    """Names of the built-in samples: ``digit:0`` .. ``digit:9`` (held-out MNIST test digits)
    and ``sample:china``, ``sample:flower`` (the two photographs)."""
    return [f"digit:{d}" for d in range(10)] + ["sample:china", "sample:flower"]


def default_sample(input_shape) -> str:
    """The sample shown first: a test digit for grey models, a photograph for colour ones."""
    return "digit:7" if input_shape[3] == 1 else "sample:china"


_DIGIT_CACHE: dict = {}


def _test_digit(digit: int) -> np.ndarray:
    """The first held-out MNIST test digit of class ``digit``, ``(28, 28, 1)`` in [0, 1] (the
    same split ``convkit train`` tests on)."""
    if digit not in _DIGIT_CACHE:
        from ..data import load_mnist
        _, (x_test, y_test) = load_mnist(seed=0)
        for d in range(10):
            _DIGIT_CACHE[d] = x_test[int(np.flatnonzero(y_test == d)[0])]
    return _DIGIT_CACHE[digit]


def sample_image(name: str, input_shape) -> ModelImage:
    """A built-in sample fitted to the model (see :func:`sample_names`)."""
    if name.startswith("digit:") and name[6:].isdigit() and 0 <= int(name[6:]) <= 9:
        pixels = _test_digit(int(name[6:]))
        return prepare(pixels, input_shape, name, ["a held-out MNIST test digit"])
    if name in ("sample:china", "sample:flower"):
        from ..data import load_sample_images
        pixels = load_sample_images()[0 if name == "sample:china" else 1]
        return prepare(pixels, input_shape, name, ["a bundled photograph"])
    raise ConvkitError(f"explore: unknown sample {name!r}; choose one of "
                       f"{', '.join(sample_names(input_shape))}")


def file_image(path: str, input_shape) -> ModelImage:
    """An image file from the command line, fitted to the model (same checks as uploads)."""
    import os
    if path.startswith(("digit:", "sample:")):
        return sample_image(path, input_shape)
    if not os.path.isfile(path):
        raise ConvkitError(f"explore: image file {path!r} does not exist")
    size = os.path.getsize(path)
    if size > MAX_UPLOAD_BYTES:
        raise UploadError(f"{path}: the file is {size / 2**20:.1f} MB; the explorer takes "
                          f"images up to {MAX_UPLOAD_BYTES // 2**20} MB")
    with open(path, "rb") as handle:
        return upload_image(handle.read(), os.path.basename(path), input_shape)
