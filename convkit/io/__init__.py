"""Saving and loading without pickle: the checksummed convkit archive and atomic file writes.

``write_archive`` / ``read_archive`` store a JSON metadata dict plus named NumPy arrays in a zip
of ``.npy`` files (``read_meta`` reads the dict alone, ``update_meta`` adds entries to it); ``atomic_writer``, ``atomic_write_bytes`` and ``write_json_atomic`` write any
file so that a crash never leaves a half-written file where a good one was. Other modules of
this package (importers, exporters) load on first use: ``convkit.io.<module>``.
"""
import importlib
import importlib.util

from .archive import (FORMAT_NAME, FORMAT_VERSION, atomic_write_bytes, atomic_writer,
                      read_archive, read_meta, update_meta, write_archive, write_json_atomic)

__all__ = ["write_archive", "read_archive", "read_meta", "update_meta", "atomic_writer",
           "atomic_write_bytes", "write_json_atomic", "FORMAT_VERSION", "FORMAT_NAME"]


def __getattr__(name):
    # Submodules (e.g. an ONNX exporter) are imported only when first used, so their optional
    # dependencies are not needed to save and load archives.
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
