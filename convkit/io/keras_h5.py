"""Opening HDF5 files from outside safely: the reader behind every Keras file convkit loads.

An HDF5 file can point outside itself: a dataset may keep its bytes in another file on the
machine (external raw storage) or be stitched from other files (virtual datasets); a link
may name an object in another file (external link) or a path resolved later (soft link). A
dataset may also declare a shape far larger than the file (unallocated storage is read as
its fill value, compressed storage inflates), and a damaged heap of text can send the HDF5
library into a walk that never ends (:func:`refuse_looping_heaps`). :func:`open_hdf5`
checks the heaps on the raw bytes, then walks the whole file once, without following any
link, and refuses all of these before a single array is read::

    h5 = open_hdf5(path_or_bytes, file_size, fail)     # fail(reason) raises
    kernel = read_array(h5["layers/conv2d/vars/0"], "layers/conv2d/vars/0", fail)

After the walk every dataset is a plain numeric array stored inside the file, uncompressed,
whose ``prod(shape) * itemsize`` is at most the file's size, so reading all of them costs at
most the file's size in memory. Keras writes nothing else. Strings are read from attributes
only (``model_config``, ``layer_names``, ``weight_names``), each capped in size.
"""
from __future__ import annotations

import contextlib
import io
import math

import numpy as np

from ..errors import ConvkitError

__all__ = ["HDF5_MAGIC", "import_h5py", "open_hdf5", "hdf5_errors", "read_array",
           "has_attr", "attr_text", "attr_text_list", "refuse_looping_heaps"]

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_MAX_DEPTH = 64
_MAX_ATTR_BYTES = 64 * 1024 * 1024


# What h5py (and the HDF5 library under it) raises on a damaged file: broken headers and
# addresses (OSError, RuntimeError), missing objects (KeyError), names that are not UTF-8
# (UnicodeDecodeError, a ValueError), sizes beyond C integers (OverflowError), and
# TypeError/IndexError from datatypes and dataspaces it cannot describe.
_HDF5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, OverflowError,
                IndexError)


@contextlib.contextmanager
def hdf5_errors(fail, what: str = "the HDF5 file"):
    """Turn every exception h5py raises inside the ``with`` block into ``fail(reason)``
    (which raises :class:`~convkit.errors.FileFormatError`); convkit's own errors pass
    through unchanged::

        with hdf5_errors(fail, "layers/conv2d/vars"):
            names = list(h5["layers/conv2d/vars"].keys())
    """
    try:
        yield
    except ConvkitError:
        raise
    except _HDF5_ERRORS as exc:
        fail(f"{what} is damaged ({type(exc).__name__}: {exc})")


def import_h5py(where: str):
    try:
        import h5py
    except ImportError:
        raise ConvkitError(f"{where}: reading Keras files needs the 'h5py' package "
                           f"(pip install h5py)") from None
    return h5py


def open_hdf5(source, file_size: int, fail, where: str = "load_model"):
    """Open ``source`` (a path or the bytes of an HDF5 file) read-only, after checking every
    object in it (see the module docstring). ``fail(reason)`` must raise."""
    h5py = import_h5py(where)
    if isinstance(source, (bytes, bytearray)):
        refuse_looping_heaps(source, fail)
        source = io.BytesIO(source)
    else:
        with open(source, "rb") as handle:
            view = _map(handle)
            try:
                refuse_looping_heaps(view, fail)
            finally:
                if hasattr(view, "close"):
                    view.close()
    h5 = None
    with hdf5_errors(fail, "the HDF5 file (corrupt or truncated)"):
        h5 = h5py.File(source, "r")
    try:
        with hdf5_errors(fail, "the HDF5 file"):
            _check_group(h5py, h5, file_size, fail, depth=0,
                         budget=[max(1000, file_size // 8)])
    except BaseException:
        h5.close()
        raise
    return h5


def _map(handle):
    """The file's bytes, mapped read-only (an empty file: no bytes)."""
    import mmap
    try:
        return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except ValueError:                         # an empty file cannot be mapped
        return b""


_GLOBAL_HEAP = b"GCOL"


def refuse_looping_heaps(data, fail) -> None:
    """Refuse a file whose global heap collections the HDF5 library would parse forever.

    Variable-length strings (the text attributes Keras writes) live in global heap
    collections: ``"GCOL"``, version 1, three reserved bytes, the collection's size, then
    objects of a 16-byte header (index, references, reserved, size) and their data padded
    to 8 bytes; index 0 is the free space, whose size is the rest. The library walks the
    objects by their sizes and does not check that the walk advances: a free-space object
    of size 0 (or a size that wraps the address) makes it loop forever inside one C call,
    where no timeout can reach it. This walk does the same on the raw bytes first, for
    every collection in the file, and calls ``fail`` on such an object (each step advances
    by at least 8 bytes, so it ends)."""
    lengths = _size_of_lengths(data)
    header, object_header = 8 + lengths, 8 + lengths
    start = data.find(_GLOBAL_HEAP)
    while start >= 0:
        if data[start + 4:start + 5] == b"\x01":
            size = int.from_bytes(data[start + 8:start + 8 + lengths], "little")
            end = start + size
            if header < size and end <= len(data):
                _walk_heap(data, start + header, end, lengths, object_header, start, fail)
        start = data.find(_GLOBAL_HEAP, start + 4)


def _walk_heap(data, p: int, end: int, lengths: int, object_header: int, start: int,
               fail) -> None:
    while p < end:
        if p + object_header > end:           # too small for an object: free space
            return
        index = int.from_bytes(data[p:p + 2], "little")
        size = int.from_bytes(data[p + 8:p + 8 + lengths], "little")
        need = object_header + -(-size // 8) * 8 if index else size
        if need <= 0 or need >= 1 << 62:
            fail(f"its global heap at byte {start} has an object of size {size} at byte "
                 f"{p}, which the HDF5 library would read forever")
        p += need


def _size_of_lengths(data) -> int:
    """The superblock's "size of lengths" (8 in every file h5py writes; 8 when unknown)."""
    if data[:8] != HDF5_MAGIC:
        return 8
    version = data[8] if len(data) > 8 else 0
    at = 14 if version in (0, 1) else 10
    value = data[at] if len(data) > at else 8
    return value if value in (2, 4, 8) else 8


def _check_group(h5py, group, file_size: int, fail, depth: int, budget: list) -> None:
    if depth > _MAX_DEPTH:
        fail(f"groups nest deeper than {_MAX_DEPTH} levels at {group.name!r}")
    try:
        names = list(group.keys())
    except (OSError, RuntimeError, KeyError) as exc:
        fail(f"cannot list group {group.name!r} ({exc})")
    for name in names:
        budget[0] -= 1
        if budget[0] < 0:
            fail("it holds more objects than its size allows (a link cycle?)")
        path = f"{group.name.rstrip('/')}/{name}"
        try:
            link = group.get(name, getlink=True)
        except (OSError, RuntimeError, KeyError) as exc:
            fail(f"cannot read the link {path!r} ({exc})")
        if isinstance(link, h5py.ExternalLink):
            fail(f"{path!r} is an external link to {link.filename!r}; links to other files "
                 f"are refused")
        if isinstance(link, h5py.SoftLink):
            fail(f"{path!r} is a soft link to {link.path!r}; links are refused")
        if not isinstance(link, h5py.HardLink):
            fail(f"{path!r} is a link of an unknown kind")
        try:
            obj = group[name]
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            fail(f"cannot open {path!r} ({exc})")
        if isinstance(obj, h5py.Group):
            _check_group(h5py, obj, file_size, fail, depth + 1, budget)
        elif isinstance(obj, h5py.Dataset):
            _check_dataset(obj, path, file_size, fail)
        else:
            fail(f"{path!r} is a {type(obj).__name__}, not a group or a dataset")


def _check_dataset(dataset, path: str, file_size: int, fail) -> None:
    try:
        external = dataset.external
        virtual = dataset.is_virtual
        filters = dict(dataset._filters)
        dtype = dataset.dtype
        shape = dataset.shape
    except (OSError, RuntimeError, ValueError, TypeError) as exc:
        fail(f"cannot inspect dataset {path!r} ({exc})")
    if external:
        files = sorted({str(entry[0]) for entry in external})
        fail(f"dataset {path!r} keeps its data in other files {files}; external storage is "
             f"refused")
    if virtual:
        fail(f"dataset {path!r} is a virtual dataset made of other files; refused")
    if filters:
        fail(f"dataset {path!r} is stored with filters {sorted(filters)} (compression); "
             f"Keras writes plain datasets, and compressed ones are refused")
    if dtype.kind not in "biuf" or dtype.hasobject:
        fail(f"dataset {path!r} has dtype {dtype}, not numbers")
    if shape is None:
        fail(f"dataset {path!r} has no shape")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > file_size:
        fail(f"dataset {path!r} declares shape {tuple(shape)} of {dtype} ({nbytes:,} bytes), "
             f"more than the whole file ({file_size:,} bytes)")


def read_array(dataset, path: str, fail) -> np.ndarray:
    """The dataset as a NumPy array (checked by :func:`open_hdf5` already)."""
    with hdf5_errors(fail, f"dataset {path!r}"):
        return np.asarray(dataset[()])


def _decode(value, name: str, fail) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            fail(f"attribute {name!r} is not UTF-8 text")
    if isinstance(value, str):
        return value
    fail(f"attribute {name!r} holds {type(value).__name__}, not text")


def _raw_attr(obj, name: str, fail):
    with hdf5_errors(fail, f"attribute {name!r}"):
        attribute = obj.attrs.get_id(name)
        space = attribute.shape
        size = math.prod(space) if space else 1
        if size * max(attribute.dtype.itemsize, 1) > _MAX_ATTR_BYTES:
            fail(f"attribute {name!r} is too large")
        return obj.attrs[name]


def has_attr(obj, name: str, fail) -> bool:
    """Whether ``obj`` has attribute ``name`` (a damaged attribute table is ``fail``)."""
    with hdf5_errors(fail, f"the attribute table holding {name!r}"):
        return name in obj.attrs


def attr_text(obj, name: str, fail) -> str | None:
    """A text attribute (``model_config``, ``training_config``), or None when absent."""
    if not has_attr(obj, name, fail):
        return None
    value = _raw_attr(obj, name, fail)
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    text = _decode(value, name, fail)
    if len(text) > _MAX_ATTR_BYTES:
        fail(f"attribute {name!r} is too large")
    return text


def attr_text_list(obj, name: str, fail) -> list[str] | None:
    """A list-of-text attribute (``layer_names``, ``weight_names``), possibly split by Keras
    into chunks ``name0``, ``name1``, ...; None when absent."""
    if has_attr(obj, name, fail):
        chunks = [_raw_attr(obj, name, fail)]
    elif has_attr(obj, f"{name}0", fail):
        chunks, index = [], 0
        while has_attr(obj, f"{name}{index}", fail):
            chunks.append(_raw_attr(obj, f"{name}{index}", fail))
            index += 1
    else:
        return None
    values = []
    for chunk in chunks:
        array = np.asarray(chunk)
        if array.size == 0:
            continue
        if array.ndim != 1:
            fail(f"attribute {name!r} of {obj.name!r} is not a list of names")
        values.extend(_decode(v, name, fail) for v in array.tolist())
    return values
