"""What the compiled kernels run on.

    backend.py    the one switch (``CONVKIT_ACCEL``, :func:`~.backend.set_backend`), numba's
                  lazy import, ``jit`` with numba's cache, the per-thread runners
    threads.py    the thread pool (:func:`~.threads.run_chunks`) and threaded products
    memory.py     keeping freed activations' pages for reuse (glibc ``mallopt``)
    spin.py       bounded spin-waits for the pool's hand-offs (``CONVKIT_SPIN_US``), plugged
                  into the pool through :func:`~.threads.set_spin_source`
    prefetch.py   a software prefetch hint for the kernels
    compiling.py  the first run: the notice while numba compiles, and the NumPy code
                  serving while the kernels compile in the background

Imports run one way: ``memory <- threads <- backend <- spin``, ``compiling <- backend``; ``threads`` never imports
``backend`` or ``spin`` (``spin`` registers itself with the pool when imported, here).
"""
from . import memory, threads, prefetch, compiling, backend, spin  # noqa: F401  (spin plugs into threads)
