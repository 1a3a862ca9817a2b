"""Saving and loading without pickle: the checksummed convkit archive and atomic file writes.

``write_archive`` / ``read_archive`` store a JSON metadata dict plus named NumPy arrays in a zip
of ``.npy`` files; ``atomic_writer``, ``atomic_write_bytes`` and ``write_json_atomic`` write any
file so that a crash never leaves a half-written file where a good one was.
"""
from .archive import (FORMAT_NAME, FORMAT_VERSION, atomic_write_bytes, atomic_writer,
                      read_archive, write_archive, write_json_atomic)

__all__ = ["write_archive", "read_archive", "atomic_writer", "atomic_write_bytes",
           "write_json_atomic", "FORMAT_VERSION", "FORMAT_NAME"]
