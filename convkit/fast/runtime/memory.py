"""Let the C allocator keep freed activation-sized blocks for reuse.

A training step allocates and frees arrays of the same sizes step after step: outputs,
gradients, pooling indices, a few MB to a few tens of MB each. glibc's ``malloc`` serves a
block above its mmap threshold (128 KiB at first, raised on its own up to 32 MiB) with fresh
pages from the kernel, and gives the top of its heap back to the kernel once more than twice
that threshold lies free there. Either way the next array of that size is fresh memory: the
first write to each 4 KiB page is a page fault in which the kernel zeroes the page. For the
11 MB output gradient of the MNIST convnet's first pooling layer (128x26x26x32 float32) that
is ~2,700 faults, 1-3 ms on this kind of machine -- several times the 0.7 ms the pooling
backward needs when its memory is warm. Measured on the benchmark's MNIST training step
(batch 128): 26.6 ms with glibc's defaults, 19.8 ms with the settings below.

:func:`keep_freed_memory` sets glibc's ``M_MMAP_THRESHOLD`` to 32 MiB (the largest value it
accepts, so blocks up to that size come from the heap and are reused) and
``M_TRIM_THRESHOLD`` to :data:`TRIM_THRESHOLD` (512 MiB: up to that much free memory at the
top of the heap stays mapped instead of being returned after every step). convkit calls it
once per process, the first time its threaded ops run (backend ``"auto"``, from
:func:`convkit.fast.runtime.threads.run_chunks`). The cost: a
process's resident size falls back more slowly after its peak; the peak itself does not
grow. ``CONVKIT_KEEP_FREED_MEMORY=0`` in the environment leaves the allocator as it is; other
C libraries (musl, macOS, Windows) are always left alone.

>>> MMAP_THRESHOLD >> 20, TRIM_THRESHOLD >> 20          # MiB
(32, 512)
"""
from __future__ import annotations

import ctypes
import os
import platform
import threading

__all__ = ["keep_freed_memory", "TRIM_THRESHOLD", "MMAP_THRESHOLD"]

MMAP_THRESHOLD = 32 << 20      # glibc refuses values above HEAP_MAX_SIZE / 2 = 32 MiB
TRIM_THRESHOLD = 512 << 20
_M_TRIM_THRESHOLD = -1         # mallopt parameter numbers from glibc's <malloc.h>
_M_MMAP_THRESHOLD = -3

_lock = threading.Lock()
_result: bool | None = None    # what the first call did


def _disabled_by_env() -> bool:
    value = os.environ.get("CONVKIT_KEEP_FREED_MEMORY", "1").strip().lower()
    return value in ("0", "false", "no", "off")


def keep_freed_memory() -> bool:
    """Apply the allocator settings described in the module docstring, once per process.
    Returns True when glibc accepted them (also on later calls), False when they do not
    apply (another C library, ``CONVKIT_KEEP_FREED_MEMORY=0``, or ``mallopt`` refused)."""
    global _result
    if _result is not None:
        return _result
    with _lock:
        if _result is None:
            _result = _apply()
    return _result


def _apply() -> bool:
    if _disabled_by_env() or platform.system() != "Linux" \
            or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success and 0 on error
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
        bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
