"""The fast paths of :mod:`convkit.ops`, behind one door.

:mod:`convkit.ops` is the readable NumPy reference; each of its ops that has a faster path
first asks :func:`convkit.fast.dispatch.lookup` and runs its own code when the answer is
``None``. Everything that makes the ops fast lives here::

    dispatch.py     THE table: (op, shapes, dtype, direction) -> fast function or None,
                    and the one switch it checks first (:func:`allowed`)
    conv.py         the convolution's plans (which path applies) and their passes
    kernels/        the compiled kernels, one module per idea (pooling, depthwise,
                    direct, im2col, implicit products, Winograd, tap-major columns, ...)
    runtime/        what the kernels run on: the switch and numba's lazy import
                    (backend.py), the thread pool (threads.py), freed-memory reuse
                    (memory.py), spin-waits (spin.py), the prefetch hint (prefetch.py)
    _generated/     kernels written by ``tools/gen_*.py`` (``make generate``); do not edit

The switch: ``CONVKIT_ACCEL=0`` (or, at run time, ``set_backend("numpy")`` /
``with use_backend("numpy"):``) turns every fast path off; without numba they are off too.
``CONVKIT_BACKEND=numpy`` is the older spelling of ``CONVKIT_ACCEL=0``.

>>> from convkit import fast
>>> with fast.use_backend("numpy"):
...     print(fast.enabled())
False
"""
from .. import ops  # noqa: F401  (first: the fast paths use its padding helpers)
from .runtime.backend import (available, enabled, get_backend, num_threads, set_backend,
                              use_backend)
from . import dispatch

__all__ = ["available", "enabled", "set_backend", "get_backend", "use_backend", "num_threads",
           "dispatch"]
