"""The IDX format of the MNIST files, and a loader for MNIST-style directories.

An IDX file is::

    bytes 0-1   0x00 0x00
    byte  2     dtype code: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
                0x0E float64
    byte  3     number of dimensions d
    4 * d       the sizes, each a big-endian uint32
    the rest    the values in C order, big-endian, exactly prod(sizes) * itemsize bytes

``train-images-idx3-ubyte`` is uint8 ``(60000, 28, 28)``; ``train-labels-idx1-ubyte`` is uint8
``(60000,)``. Files may be gzip-compressed (detected from their first bytes, not the name).
Fashion-MNIST and KMNIST use the same names and format, so ``load_mnist_idx`` reads them too.
"""
from __future__ import annotations

import gzip
import io
import os
import struct
import zlib

import numpy as np

from ..errors import ConvkitError, FileFormatError, ShapeError
from ..io.archive import atomic_write_bytes

# IDX dtype code -> big-endian NumPy dtype
IDX_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_CODES = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as handle:  # missing file: FileNotFoundError as usual
        data = handle.read()
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise FileFormatError(f"read_idx: {path!r} is a damaged or truncated gzip file "
                                  f"({exc})") from None
    return data


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes (see the module docstring) into a native-endian array.

    The header is checked against the length of ``data``; ``FileFormatError`` naming ``name``
    is raised for a foreign magic number, an unknown dtype code, or a data size that does not
    match the dimensions (truncated file or trailing bytes).
    """
    def fail(reason):
        raise FileFormatError(f"read_idx: {name!r} is not a valid IDX file: {reason}")

    if len(data) < 4:
        fail(f"it has {len(data)} bytes, fewer than the 4-byte magic number")
    zero0, zero1, code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0:
        fail(f"the magic number starts with {data[:2].hex()} instead of 0000")
    if code not in IDX_DTYPES:
        fail(f"unknown dtype code 0x{code:02X} (known: "
             f"{', '.join(f'0x{c:02X}' for c in IDX_DTYPES)})")
    if ndim == 0:
        fail("the header declares 0 dimensions")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        fail(f"the header declares {ndim} dimensions but the file ends after {len(data)} "
             "bytes")
    dims = struct.unpack(f">{ndim}I", data[4:header_size])
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=object)) * dtype.itemsize
    actual = len(data) - header_size
    if actual != expected:
        kind = "truncated" if actual < expected else "has trailing bytes"
        fail(f"{kind}: dimensions {dims} need {expected} bytes of {dtype.newbyteorder('=')} "
             f"data, found {actual}")
    array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(dims)
    return array.astype(dtype.newbyteorder("="))  # native byte order, writable copy


def read_idx(path) -> np.ndarray:
    """Read an IDX file (plain or gzip-compressed) into a NumPy array.

    The dtype follows the file (uint8 for MNIST), in native byte order; the shape is the
    header's dimensions. Raises ``FileNotFoundError`` if ``path`` is missing and
    ``FileFormatError`` naming the file if it is truncated, has trailing bytes or is not IDX.

    Example::

        >>> read_idx("train-labels-idx1-ubyte.gz").shape
        (60000,)
    """
    path = os.fspath(path)
    return parse_idx(_read_bytes(path), path)


def write_idx(path, array) -> None:
    """Write ``array`` as an IDX file (atomically); gzip-compressed if ``path`` ends in .gz.

    Supported dtypes: uint8, int8, int16, int32, float32, float64 (IDX has no int64 or bool:
    convert first, e.g. labels with ``.astype(np.uint8)``). At least one dimension; each
    dimension must fit in a uint32.
    """
    path = os.fspath(path)
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=") if array.dtype.byteorder != "|" else array.dtype
    if native not in _CODES:
        names = ", ".join(str(dtype) for dtype in _CODES)
        raise ConvkitError(f"write_idx: IDX cannot store dtype {array.dtype} (supported: "
                           f"{names}); convert with .astype(...) first")
    if array.ndim == 0 or array.ndim > 255:
        raise ShapeError(f"write_idx: IDX needs 1 to 255 dimensions, got shape "
                         f"{array.shape}")
    if any(d > 0xFFFFFFFF for d in array.shape):
        raise ShapeError(f"write_idx: every dimension must fit in a uint32, got shape "
                         f"{array.shape}")
    code = _CODES[native]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    body = np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    data = header + body
    if path.endswith(".gz"):
        buffer = io.BytesIO()
        with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as compressed:
            compressed.write(data)
        data = buffer.getvalue()
    atomic_write_bytes(path, data)


def _candidates(prefix: str, what: str) -> list[str]:
    rank = 3 if what == "images" else 1
    names = [f"{prefix}-{what}-idx{rank}-ubyte", f"{prefix}-{what}.idx{rank}-ubyte"]
    return [variant for name in names for variant in (name, name + ".gz")]


def _find(directory: str, prefix: str, what: str, kind: str) -> str:
    candidates = _candidates(prefix, what)
    for name in candidates:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"load_mnist_idx: no {kind} {what} file in {directory!r}; looked for "
        f"{', '.join(candidates)}. Put the four MNIST IDX files (train-images-idx3-ubyte, "
        "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, plain or "
        ".gz) in that directory.")


def load_mnist_idx(directory, kind: str = "train", normalize: bool = True):
    """Load MNIST (or Fashion-MNIST / KMNIST) from the standard IDX files in ``directory``.

    ``kind`` is ``"train"`` (``train-*``) or ``"test"`` (``t10k-*``, alias ``"t10k"``).
    Accepted names: ``{train,t10k}-images-idx3-ubyte`` and ``-labels-idx1-ubyte``, the dotted
    ``train-images.idx3-ubyte`` variants, each plain or with ``.gz``.

    Returns ``(x, y)``: ``x`` float32 ``(N, 28, 28, 1)`` (NHWC) scaled to [0, 1]
    (``pixel / 255`` for uint8 files; 0..255 with ``normalize=False``), ``y`` int64 ``(N,)``.
    Nothing is downloaded: a missing file raises ``FileNotFoundError`` listing the names
    looked for.

    Example::

        >>> x, y = load_mnist_idx("~/data/mnist", kind="test")
        >>> x.shape, y.shape
        ((10000, 28, 28, 1), (10000,))
    """
    prefixes = {"train": "train", "test": "t10k", "t10k": "t10k"}
    if kind not in prefixes:
        raise ConvkitError(f"load_mnist_idx: kind must be 'train' or 'test', got {kind!r}")
    directory = os.path.expanduser(os.fspath(directory))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"load_mnist_idx: {directory!r} is not a directory; create it "
                                "and put the MNIST IDX files (train-images-idx3-ubyte, ...) in "
                                "it")
    prefix = prefixes[kind]
    images_path = _find(directory, prefix, "images", kind)
    labels_path = _find(directory, prefix, "labels", kind)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise FileFormatError(f"load_mnist_idx: {images_path!r} should hold images "
                              f"(N, height, width), got shape {images.shape}")
    if labels.ndim != 1:
        raise FileFormatError(f"load_mnist_idx: {labels_path!r} should hold labels (N,), got "
                              f"shape {labels.shape}")
    if len(images) != len(labels):
        raise FileFormatError(f"load_mnist_idx: {images_path!r} has {len(images)} images but "
                              f"{labels_path!r} has {len(labels)} labels")
    x = images.astype(np.float32)[..., None]  # (N, H, W) -> (N, H, W, 1)
    if normalize and images.dtype == np.uint8:
        x /= 255.0
    return x, labels.astype(np.int64)
