"""The convkit archive: a safe, checksummed on-disk format for models and arrays.

An archive is an ordinary zip file::

    convkit.json          {"format": "convkit", "format_version": 1, "manifest": [...], ...meta}
    arrays/00000.npy      one NumPy .npy file per array, written with allow_pickle=False
    arrays/00001.npy
    ...

``convkit.json`` holds the caller's ``meta`` dict at its top level plus three reserved keys:
``format`` (always ``"convkit"``), ``format_version`` (an int) and ``manifest``, one entry per
array in order::

    {"name": "conv2d/kernel", "file": "arrays/00000.npy", "shape": [3, 3, 1, 32],
     "dtype": "<f4", "sha256": "9f86d0..."}

The checksum is the SHA-256 of the member's ``.npy`` bytes. Reading never unpickles and never
runs code from the file: object arrays are refused when writing and when reading, and every
problem with a file (not a zip, truncated, foreign, newer format, checksum or shape mismatch,
unsafe member names) raises :class:`convkit.errors.FileFormatError` naming the file.

Reading is bounded by the file (the numbers are in :mod:`convkit.io.limits`): before
anything is decompressed, each member's size is checked against what it occupies in the
file (stored members as is, deflated ones at most 50x), ``convkit.json`` is capped at
16 MiB and 64 levels of nesting, and each ``.npy`` header must declare exactly the
manifest's shape and dtype and be followed by exactly that many bytes before an array is
made. FIFOs, devices and directories are refused instead of opened.

Every write is atomic: the bytes go to a temporary file in the target's directory (with the
replaced file's permission bits from the start), which is flushed, ``fsync``-ed and then
moved over the target with ``os.replace``. A crash or an error half-way leaves the old file
(if any) untouched; the temporary file of a killed process is removed by the next save to
the same path. Only regular files are replaced: a symlink, FIFO, device or directory at the
target is refused (a symlink is not followed either; save to its target explicitly).

Example::

    >>> write_archive("weights.ckz", {"name": "tiny"}, {"w": np.ones((2, 3), np.float32)})
    >>> meta, arrays = read_archive("weights.ckz")
    >>> meta["name"], arrays["w"].shape, arrays["w"].dtype
    ('tiny', (2, 3), dtype('float32'))
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import re
import secrets
import stat
import struct
import time
import zipfile
import zlib
from collections.abc import Mapping

import numpy as np

from ..errors import ConvkitError, FileFormatError
from . import limits

FORMAT_NAME = "convkit"
FORMAT_VERSION = 1
META_MEMBER = "convkit.json"
_RESERVED_KEYS = ("format", "format_version", "manifest")
# Fixed zip timestamps: the same content always gives byte-identical archives.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
# Room for a .npy header on top of the array's own bytes (NumPy caps headers at 10,000).
_NPY_HEADER_SLACK = 1 << 16
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Temporary files of a save: ".<name>.<pid>.<random>.tmp"; older versions wrote
# ".<name>.<random>.tmp" (no pid), which counts as stale after _LEGACY_TEMP_AGE seconds.
_TEMP_SUFFIX = r"\.(?:(?P<pid>[0-9]+)\.)?[0-9a-f]{12}\.tmp$"
_LEGACY_TEMP_AGE = 600.0


# --------------------------------------------------------------------------- atomic writes

def _fsync_directory(directory: str) -> None:
    """Make a rename durable on POSIX by syncing its directory (no-op where unsupported)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _link_exclusive(tmp_path: str, path: str) -> None:
    """Move ``tmp_path`` to ``path`` only if ``path`` does not exist, atomically where the
    file system supports hard links."""
    try:
        os.link(tmp_path, path)  # fails with FileExistsError if path exists
    except FileExistsError:
        raise FileExistsError(f"atomic_writer: {path!r} already exists") from None
    except (OSError, NotImplementedError):
        if os.path.lexists(path):
            raise FileExistsError(f"atomic_writer: {path!r} already exists") from None
        os.replace(tmp_path, path)
        return
    os.unlink(tmp_path)


def _process_alive(pid: int) -> bool:
    """True if a process with this id exists on this machine (or we cannot tell)."""
    if pid == os.getpid() or os.name != "posix":   # on Windows, os.kill(pid, 0) is Ctrl-C
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, OverflowError, ValueError):
        return True
    return True


def _remove_stale_temps(directory: str, base: str) -> None:
    """Delete temporary files that an interrupted save to ``base`` left in ``directory``
    (its process is gone; for old-style names, older than ten minutes). A save still running
    in another process keeps its file."""
    try:
        entries = os.scandir(directory)
    except OSError:
        return
    now = time.time()
    pattern = re.compile(r"^\." + re.escape(base) + _TEMP_SUFFIX)
    with entries:
        for entry in entries:
            match = pattern.match(entry.name)
            if match is None:
                continue
            try:
                info = entry.stat(follow_symlinks=False)
                if not stat.S_ISREG(info.st_mode):
                    continue
                pid = match.group("pid")
                stale = (not _process_alive(int(pid)) if pid is not None
                         else now - info.st_mtime > _LEGACY_TEMP_AGE)
                if stale:
                    os.unlink(entry.path)
            except (OSError, ValueError):
                continue


def _check_target(path: str) -> os.stat_result | None:
    """The target's ``lstat``, or None if it does not exist. Only a regular file may be
    replaced: a symlink, directory, FIFO, socket or device is refused, so that saving never
    destroys something that is not a file (``model.save("/dev/null")`` as root used to
    replace the device). A symlink is refused rather than followed: write to the file it
    points to, ``os.path.realpath(path)``, if that is what you mean."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError:
        return None                      # e.g. a permission problem: the open will report it
    if stat.S_ISREG(info.st_mode):
        return info
    if stat.S_ISLNK(info.st_mode):
        kind = f"a symbolic link to {os.readlink(path)!r}; write to the file it points to"
    elif stat.S_ISDIR(info.st_mode):
        kind = "a directory"
    elif stat.S_ISFIFO(info.st_mode):
        kind = "a FIFO (named pipe)"
    elif stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode):
        kind = "a device"
    elif stat.S_ISSOCK(info.st_mode):
        kind = "a socket"
    else:
        kind = "not a regular file"
    raise ConvkitError(f"atomic_writer: will not replace {path!r}: it is {kind}")


@contextlib.contextmanager
def atomic_writer(path, mode: str = "wb", encoding: str | None = None,
                  newline: str | None = None):
    """Open a temporary file next to ``path`` for writing; on a clean exit it replaces ``path``.

    ``mode`` is ``"wb"`` (default), ``"w"``/``"wt"`` (text; ``encoding`` defaults to UTF-8)
    or ``"xb"``/``"x"``/``"xt"`` (fail with ``FileExistsError`` if ``path`` already exists).
    The temporary file lives in the same directory (so the final ``os.replace`` is atomic), is
    flushed and ``fsync``-ed before the replace, and is deleted if the block raises: readers
    see either the old file or the complete new one, never a partial write. An existing
    target's permission bits are kept, and the temporary file has them from its creation.

    Only a regular file is ever replaced: a target that is a symlink, directory, FIFO, socket
    or device raises ``ConvkitError`` (a symlink is refused, not followed). Temporary files
    that a killed save left for the same target (their process is gone) are deleted first.

    Example::

        with atomic_writer("log.csv", "w", newline="") as f:
            f.write("epoch,loss\\n0,0.5\\n")
    """
    if mode not in ("wb", "w", "wt", "xb", "x", "xt"):
        raise ConvkitError(f"atomic_writer: mode must be 'wb', 'w', 'wt', 'xb', 'x' or 'xt', "
                           f"got {mode!r}")
    path = os.fspath(path)
    exclusive = mode.startswith("x")
    if exclusive and os.path.lexists(path):
        raise FileExistsError(f"atomic_writer: {path!r} already exists")
    binary = "b" in mode
    if binary and (encoding is not None or newline is not None):
        raise ConvkitError("atomic_writer: encoding and newline apply to text modes only")
    directory = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"atomic_writer: cannot write {path!r}: the directory "
                                f"{directory!r} does not exist")
    existing = _check_target(path)
    _remove_stale_temps(directory, base)
    # The permission bits of the file being replaced (or the usual 0o666 less the umask).
    permissions = stat.S_IMODE(existing.st_mode) if existing is not None else 0o666
    tmp_path = os.path.join(directory, f".{base}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
                 | getattr(os, "O_NOFOLLOW", 0), permissions)
    try:
        if existing is not None and hasattr(os, "fchmod"):
            with contextlib.suppress(OSError):
                os.fchmod(fd, permissions)          # exactly, whatever the umask
        if binary:
            handle = os.fdopen(fd, "wb")
        else:
            handle = os.fdopen(fd, "w", encoding=encoding or "utf-8", newline=newline)
        fd = -1  # owned by the handle from now on
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            _link_exclusive(tmp_path, path)
        else:
            _check_target(path)                     # nothing was swapped in meanwhile
            os.replace(tmp_path, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp_path)
        raise
    _fsync_directory(directory)


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path, "wb") as f:
        f.write(data)


def _json_default(obj):
    """Let NumPy scalars and small arrays appear in JSON metadata."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray) and obj.dtype != object:
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serializable")


def _dumps(obj, where: str, indent: int | None) -> str:
    try:
        return json.dumps(obj, indent=indent, default=_json_default, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ConvkitError(f"{where}: the data cannot be stored as JSON ({exc})") from None


def write_json_atomic(path, obj, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON (UTF-8) to ``path`` atomically. NumPy scalars and arrays are
    converted to Python numbers and lists."""
    text = _dumps(obj, "write_json_atomic", indent)
    with atomic_writer(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.write("\n")


# --------------------------------------------------------------------------- writing

def _normalise_arrays(arrays) -> list[tuple[str, np.ndarray]]:
    if isinstance(arrays, Mapping):
        items = list(arrays.items())
    else:
        try:
            items = [tuple(item) for item in arrays]
        except TypeError:
            raise ConvkitError("write_archive: arrays must be a dict name -> array or a list of "
                               f"(name, array) pairs, got {type(arrays).__name__}") from None
    result, seen = [], set()
    for position, item in enumerate(items):
        if len(item) != 2:
            raise ConvkitError(f"write_archive: arrays item {position} is not a (name, array) "
                               f"pair")
        name, value = item
        if not isinstance(name, str) or not name:
            raise ConvkitError(f"write_archive: array names must be non-empty strings, got "
                               f"{name!r} at position {position}")
        if name in seen:
            raise ConvkitError(f"write_archive: duplicate array name {name!r}")
        seen.add(name)
        array = np.asarray(value)
        if array.dtype.hasobject:
            raise ConvkitError(f"write_archive: array {name!r} has dtype {array.dtype}; object "
                               "arrays cannot be stored (they would need pickle)")
        result.append((name, array))
    return result


def write_archive(path, meta: dict, arrays) -> None:
    """Save ``meta`` (a JSON-serialisable dict) and named arrays to a convkit archive at
    ``path``, atomically.

    ``arrays`` is a dict ``name -> array`` or a list of ``(name, array)`` pairs; the order is
    kept and :func:`read_archive` gives the arrays back in it. Any shape (including 0-d and
    empty) and any non-object dtype is stored exactly. ``meta`` must not use the reserved keys
    ``format``, ``format_version`` and ``manifest``. Raises ``ConvkitError`` for object arrays,
    duplicate names or metadata that is not JSON; the target is left untouched on any error.
    """
    path = os.fspath(path)
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise ConvkitError(f"write_archive: meta must be a dict, got {type(meta).__name__}")
    clash = [key for key in _RESERVED_KEYS if key in meta]
    if clash:
        raise ConvkitError(f"write_archive: meta uses reserved key(s) {clash}; "
                           f"{list(_RESERVED_KEYS)} are set by the archive itself")
    items = _normalise_arrays(arrays)

    with atomic_writer(path, "wb") as handle:
        with zipfile.ZipFile(handle, "w", allowZip64=True) as archive:
            manifest = []
            width = max(5, len(str(len(items))))
            for index, (name, array) in enumerate(items):
                member = f"arrays/{index:0{width}d}.npy"
                buffer = io.BytesIO()
                np.save(buffer, array, allow_pickle=False)
                data = buffer.getvalue()
                info = zipfile.ZipInfo(member, date_time=_ZIP_DATE)
                info.compress_type = zipfile.ZIP_STORED
                archive.writestr(info, data)
                manifest.append({"name": name, "file": member,
                                 "shape": [int(d) for d in array.shape],
                                 "dtype": array.dtype.str,
                                 "sha256": hashlib.sha256(data).hexdigest()})
            document = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **meta,
                        "manifest": manifest}
            text = _dumps(document, "write_archive", 1)
            info = zipfile.ZipInfo(META_MEMBER, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, text.encode("utf-8"))


# --------------------------------------------------------------------------- reading

def _unsafe_member_name(name: str) -> bool:
    """True for names that could escape an extraction directory: absolute paths, drive
    letters, backslashes and any '..' component."""
    if not name or name.startswith(("/", "\\")) or "\\" in name or "\x00" in name:
        return True
    if re.match(r"^[A-Za-z]:", name):
        return True
    return ".." in name.split("/")


def _looks_like_keras(names: set[str]) -> bool:
    return "config.json" in names and ("model.weights.h5" in names or "metadata.json" in names)


def _check_member_size(info: zipfile.ZipInfo, needed: int, file_size: int, fail) -> None:
    """Refuse, before decompressing, a member that cannot honestly hold ``needed`` bytes:
    stored members hold what they occupy, deflated ones at most ``MAX_DEFLATE_RATIO`` times
    it, and nothing may extend past the end of the file."""
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        fail(f"member {info.filename!r} uses compression method {info.compress_type}; "
             f"convkit files use only stored or deflated members")
    if info.header_offset + info.compress_size > file_size:
        fail(f"member {info.filename!r} claims {info.compress_size} bytes beyond the end of "
             f"the file")
    ratio = 1 if info.compress_type == zipfile.ZIP_STORED else limits.MAX_DEFLATE_RATIO
    if needed > max(info.compress_size, 1) * ratio:
        fail(f"member {info.filename!r} would have to expand from {info.compress_size} to "
             f"{needed} bytes (more than {ratio}x); the file is damaged or a zip bomb")


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, fail) -> bytes:
    """Read one member, refusing (before decompressing) one that claims to be too large,
    and reading at most ``limit + 1`` bytes whatever its header says."""
    if info.file_size > limit:
        fail(f"member {info.filename!r} is {info.file_size} bytes, more than the "
             f"{limit} expected")
    with archive.open(info) as member:
        data = member.read(limit + 1)
    if len(data) > limit:
        fail(f"member {info.filename!r} is larger than the {limit} bytes expected")
    return data


def read_zip_member(archive: zipfile.ZipFile, name: str, file_size: int, limit: int,
                    fail) -> bytes:
    """The bytes of member ``name`` of an open zip of ``file_size`` bytes, read only if
    its declared size is at most ``limit``, its compression is stored or deflated, it lies
    inside the file and it does not expand more than ``limits.MAX_DEFLATE_RATIO`` times;
    at most ``limit`` bytes are ever decompressed. ``fail(reason)`` is called (and must
    raise) otherwise. For any zip-based format, e.g. the ``model.weights.h5`` member of a
    ``.keras`` file with ``limit=limits.MAX_KERAS_MEMBER_BYTES``."""
    info = archive.getinfo(name)
    _check_member_size(info, min(info.file_size, limit), file_size, fail)
    return _read_member(archive, info, limit, fail)


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_manifest(manifest, fail) -> list[dict]:
    if not isinstance(manifest, list):
        fail("the manifest is missing or is not a list")
    if len(manifest) > limits.MAX_MEMBERS:
        fail(f"the manifest lists {len(manifest)} arrays, more than {limits.MAX_MEMBERS}")
    names, files = set(), set()
    for position, entry in enumerate(manifest):
        if not isinstance(entry, dict):
            fail(f"manifest entry {position} is not an object")
        name, member = entry.get("name"), entry.get("file")
        shape, dtype, digest = entry.get("shape"), entry.get("dtype"), entry.get("sha256")
        if not isinstance(name, str) or not name:
            fail(f"manifest entry {position} has no valid name")
        if not isinstance(member, str) or _unsafe_member_name(member):
            fail(f"manifest entry {name!r} has an invalid file name {member!r}")
        if name in names or member in files:
            fail(f"manifest lists {name!r} / {member!r} twice")
        names.add(name)
        files.add(member)
        if (not isinstance(shape, list) or len(shape) > limits.MAX_ARRAY_RANK
                or not all(_is_count(d) for d in shape)):
            fail(f"manifest entry {name!r} has an invalid shape {shape!r:.200}")
        if not isinstance(dtype, str) or len(dtype) > 64:
            fail(f"manifest entry {name!r} has an invalid dtype {dtype!r:.80}")
        try:
            parsed = np.dtype(dtype)
        except (TypeError, ValueError, SyntaxError, RecursionError):
            fail(f"manifest entry {name!r} has an unknown dtype {dtype!r}")
        if parsed.hasobject:
            fail(f"manifest entry {name!r} declares an object dtype")
        if parsed.itemsize == 0:
            fail(f"manifest entry {name!r} declares the empty dtype {dtype!r}")
        if not isinstance(digest, str) or not _SHA256.match(digest):
            fail(f"manifest entry {name!r} has an invalid sha256 {digest!r:.80}")
    return manifest


def _parse_meta_document(raw: bytes, fail) -> dict:
    """``convkit.json`` parsed, with its depth, ``format`` and ``format_version`` checked."""
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and integers too long to convert
        fail(f"{META_MEMBER} is not valid JSON ({str(exc)[:200]})")
    if limits.json_depth(document) > limits.MAX_JSON_DEPTH:
        fail(f"{META_MEMBER} nests lists or objects more than {limits.MAX_JSON_DEPTH} deep")
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        fail(f"not a convkit file: {META_MEMBER} does not say format 'convkit'")
    version = document.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        fail(f"invalid format_version {version!r:.80}")
    if version > FORMAT_VERSION:
        fail(f"format_version {version} is newer than this convkit reads (up to "
             f"{FORMAT_VERSION}); upgrade convkit to load it")
    return document


def _parse_npy(data: bytes, name: str, member: str, shape: tuple, dtype: np.dtype,
               fail) -> np.ndarray:
    """The array in ``.npy`` bytes, after checking that its header declares exactly the
    manifest's shape and dtype and that the data that follows has exactly that many bytes.
    Nothing is allocated from the header's word alone, and nothing is unpickled."""
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            header = np.lib.format.read_array_header_1_0(stream)
        elif version in ((2, 0), (3, 0)):
            header = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"unsupported .npy version {version}")
        header_shape, fortran_order, header_dtype = header
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError, EOFError,
            OverflowError) as exc:
        fail(f"array {name!r} ({member}) is not a valid .npy file ({str(exc)[:200]})")
    if header_dtype.hasobject:
        fail(f"array {name!r} ({member}) holds pickled or object data; refusing to unpickle it")
    if tuple(header_shape) != shape or header_dtype != dtype:
        fail(f"array {name!r} ({member}) has shape {tuple(header_shape)!r:.200} and dtype "
             f"{header_dtype}, but the manifest says {shape} and {dtype}")
    offset = stream.tell()
    expected = math.prod(shape) * dtype.itemsize
    if len(data) - offset != expected:
        fail(f"array {name!r} ({member}) has {len(data) - offset} data bytes, but shape "
             f"{shape} of {dtype} needs {expected}")
    flat = np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=offset)
    return flat.reshape(shape, order="F" if fortran_order else "C").copy(
        order="F" if fortran_order else "C")


def _read_from_zip(archive: zipfile.ZipFile, fail, file_size: int):
    infos = archive.infolist()
    if len(infos) > limits.MAX_MEMBERS + 1:
        fail(f"it has {len(infos)} members, more than {limits.MAX_MEMBERS}")
    names = [info.filename for info in infos]
    for name in names:
        if _unsafe_member_name(name):
            fail(f"it contains an unsafe member name {name!r:.200} (absolute path or '..')")
    if len(set(names)) != len(names):
        fail("it contains duplicate member names")
    by_name = {info.filename: info for info in infos}

    if META_MEMBER not in by_name:
        if _looks_like_keras(set(names)):
            fail(f"it looks like a Keras .keras file, not a convkit file (no {META_MEMBER})")
        fail(f"not a convkit file: the zip has no {META_MEMBER}")
    document = _read_meta_document(archive, by_name[META_MEMBER], file_size, fail)
    manifest = _check_manifest(document.get("manifest"), fail)

    arrays = {}
    for entry in manifest:
        name, member = entry["name"], entry["file"]
        if member not in by_name:
            fail(f"array {name!r} is listed in the manifest but {member!r} is missing")
        dtype = np.dtype(entry["dtype"])
        shape = tuple(entry["shape"])
        expected_bytes = math.prod(shape) * dtype.itemsize
        info = by_name[member]
        _check_member_size(info, expected_bytes, file_size, fail)
        data = _read_member(archive, info, expected_bytes + _NPY_HEADER_SLACK, fail)
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            fail(f"checksum mismatch for array {name!r} ({member}): the file is corrupt")
        arrays[name] = _parse_npy(data, name, member, shape, dtype, fail)
    meta = {key: value for key, value in document.items() if key not in _RESERVED_KEYS}
    return meta, arrays


def _read_meta_document(archive: zipfile.ZipFile, info: zipfile.ZipInfo, file_size: int,
                        fail) -> dict:
    raw = read_zip_member(archive, info.filename, file_size, limits.MAX_META_BYTES, fail)
    return _parse_meta_document(raw, fail)


def _open_checked(path, reader):
    """Open ``path`` as a zip and run ``reader(archive, fail, file_size)``, turning every
    kind of damage into a :class:`FileFormatError` naming the file."""
    path = os.fspath(path)

    def fail(reason):
        raise FileFormatError(f"read_archive: cannot load {path!r}: {reason}")

    limits.refuse_special_file(path, fail)
    with open(path, "rb") as handle:  # a missing file is a FileNotFoundError, as usual
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            fail("it is not a regular file")
        size = info.st_size
        if size == 0:
            fail("the file is empty")
        starts_like_zip = handle.read(4) == b"PK\x03\x04"
        handle.seek(0)
        try:
            with zipfile.ZipFile(handle) as archive:
                return reader(archive, fail, size)
        except FileFormatError:
            raise
        except (zipfile.BadZipFile, zlib.error, struct.error, EOFError, OSError, ValueError,
                LookupError, OverflowError, RuntimeError, NotImplementedError,
                MemoryError) as exc:
            # zipfile reports truncation, bad CRCs, encryption and unknown compression with a
            # zoo of exception types; all of them mean the same thing here.
            reason = str(exc) or type(exc).__name__
            if isinstance(exc, zipfile.BadZipFile) and "File is not a zip file" in reason:
                if starts_like_zip:
                    fail("it is a truncated or damaged zip archive (its end is missing)")
                fail("it is not a zip archive, so not a convkit file")
            fail(f"the file is corrupt or truncated ({type(exc).__name__}: {reason})")


def read_meta(path) -> dict:
    """The ``meta`` dict of a convkit archive (what :func:`write_archive` was given), without
    reading its arrays. The zip structure, ``format`` and ``format_version`` are checked as by
    :func:`read_archive`; the arrays' checksums are not (use :func:`read_archive` for that).

    >>> read_meta("model.convkit")["kind"]
    'model'
    """
    def reader(archive, fail, file_size):
        by_name = {info.filename: info for info in archive.infolist()}
        if META_MEMBER not in by_name:
            fail(f"not a convkit file: the zip has no {META_MEMBER}")
        document = _read_meta_document(archive, by_name[META_MEMBER], file_size, fail)
        return {key: value for key, value in document.items() if key not in _RESERVED_KEYS}

    return _open_checked(path, reader)


def update_meta(path, entries: dict) -> None:
    """Add or replace top-level ``meta`` entries of an existing archive, atomically (the
    arrays are read, checked and written back unchanged). Used, for instance, to store the
    class names of a trained classifier next to its weights::

        update_meta("out/folder_convnet.convkit", {"class_names": ["cat", "dog"]})
    """
    if not isinstance(entries, dict):
        raise ConvkitError(f"update_meta: entries must be a dict, got {type(entries).__name__}")
    meta, arrays = read_archive(path)
    meta.update(entries)
    write_archive(path, meta, arrays)


def read_archive(path):
    """Load a convkit archive written by :func:`write_archive`.

    Returns ``(meta, arrays)``: ``meta`` is the dict that was written (without the reserved
    keys) and ``arrays`` a dict ``name -> ndarray`` in the order they were written, with the
    exact shapes and dtypes.

    Raises ``FileNotFoundError`` if ``path`` does not exist and
    :class:`~convkit.errors.FileFormatError` (naming the file) for anything wrong with its
    content: not a zip (text, empty, truncated), no ``convkit.json`` (a foreign zip such as a
    Keras ``.keras`` file), a newer ``format_version``, a checksum, shape or dtype mismatch, an
    array missing from the zip, an object (pickle-bearing) ``.npy``, or unsafe member names
    (absolute or containing ``..``). Nothing from the file is ever executed or unpickled.
    """
    return _open_checked(path, _read_from_zip)


__all__ = ["write_archive", "read_archive", "read_meta", "update_meta", "atomic_writer",
           "atomic_write_bytes", "write_json_atomic", "read_zip_member", "FORMAT_VERSION",
           "FORMAT_NAME"]
