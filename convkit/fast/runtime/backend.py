"""Backend choice and the numba machinery every compiled kernel goes through.

* :func:`set_backend` / :func:`get_backend` / :func:`use_backend`: ``"auto"`` (the compiled
  kernels and threaded products where they apply) or ``"numpy"`` (the plain NumPy ops);
  :func:`enabled` and :func:`threaded` are what the public ops ask.
* :func:`available`: numba is imported lazily, on the first question, and ``CONVKIT_ACCEL=0``
  turns the kernels off.
* :func:`jit`: ``numba.njit(cache=True, nogil=True)`` of a plain module-level kernel, compiled
  once per machine and loaded from numba's cache afterwards.
* ``_run`` / ``_run_partial``: call a kernel on one contiguous range of rows per thread
  (:func:`convkit.fast.runtime.threads.run_chunks`), the second for reductions with one zeroed
  partial sum per thread.

>>> with use_backend("numpy"):
...     print(get_backend(), enabled())
numpy False
"""
from __future__ import annotations

import contextlib
import os

import numpy as np

from ...errors import ConvkitError
from . import threads as _threads
from . import compiling, prefetch

# Reassociation and fused multiply-add only change results by float32 rounding; NaN and
# infinity handling stays exact (no "nnan"/"ninf"), and pooling kernels use no fastmath.
FASTMATH = frozenset({"reassoc", "contract", "nsz"})

_numba = None          # the numba module once imported
_import_failed = False
_compiled: dict = {}   # python kernel function -> numba dispatcher


def _disabled_by_env() -> bool:
    """``CONVKIT_ACCEL=0`` (or ``false``/``no``/``off``); ``CONVKIT_BACKEND=numpy`` is the
    older spelling of the same switch, still honoured (deprecated). Read on every question
    (a test or a user may set it at run time), through :func:`_raw_env`: every op asks, and
    ``os.environ.get`` costs about 1 us."""
    raw = (_raw_env("CONVKIT_ACCEL", b"CONVKIT_ACCEL"),
           _raw_env("CONVKIT_BACKEND", b"CONVKIT_BACKEND"))
    answer = _switch_answers.get(raw)
    if answer is None:
        accel = "1" if raw[0] is None else os.fsdecode(raw[0])
        old = "" if raw[1] is None else os.fsdecode(raw[1])
        answer = (accel.strip().lower() in ("0", "false", "no", "off")
                  or old.strip().lower() == "numpy")
        if len(_switch_answers) < 64:
            _switch_answers[raw] = answer
    return answer


_switch_answers: dict = {}    # (raw CONVKIT_ACCEL, raw CONVKIT_BACKEND) -> disabled?
# the environment's own mapping: bytes to bytes on POSIX, kept in step with os.environ
_ENVIRON_BYTES = getattr(os.environ, "_data", None) if os.name == "posix" else None


def _raw_env(name: str, key: bytes):
    """The environment variable ``name`` (``key``, its bytes) as stored: bytes on POSIX,
    else a string; None when unset."""
    if isinstance(_ENVIRON_BYTES, dict):
        return _ENVIRON_BYTES.get(key)
    return os.environ.get(name)


# ============================================================================ backend choice
#: ``"auto"``: the public ops use these kernels (and the threaded products of
#: :mod:`convkit.fast.runtime.threads`) where they apply; ``"numpy"``: the plain NumPy ops only.
BACKENDS = ("auto", "numpy")
_backend = "auto"


def set_backend(name: str) -> None:
    """Choose how the public ops in :mod:`convkit.ops` compute: ``"auto"`` (default: the
    compiled kernels and the threaded products where they apply, when :func:`available`)
    or ``"numpy"`` (the plain NumPy code, the reference the fast paths are tested against).
    This is the run-time form of the one switch ``CONVKIT_ACCEL``: ``CONVKIT_ACCEL=0``
    (or the older ``CONVKIT_BACKEND=numpy``) makes ``"auto"`` run the NumPy code too.

    >>> set_backend("numpy"); get_backend()
    'numpy'
    >>> set_backend("auto")
    """
    global _backend
    if not isinstance(name, str) or name.lower() not in BACKENDS:
        raise ConvkitError(f"set_backend: backend must be one of {BACKENDS}, got {name!r}")
    _backend = name.lower()


def get_backend() -> str:
    """The backend :func:`set_backend` chose: ``"auto"`` or ``"numpy"``."""
    return _backend


@contextlib.contextmanager
def use_backend(name: str):
    """``with use_backend("numpy"): ...`` -- :func:`set_backend` inside the block only."""
    previous = _backend
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)


def enabled() -> bool:
    """True when the ops should call the compiled kernels: backend ``"auto"`` and
    :func:`available`."""
    return _backend == "auto" and available()


def threaded() -> bool:
    """The same switch as :func:`enabled` (kept for older callers): the threaded products
    run exactly when the compiled kernels do, so no path can reach a compiled kernel
    without them."""
    return enabled()


def available() -> bool:
    """True when numba is importable and ``CONVKIT_ACCEL`` is not ``0``."""
    global _numba, _import_failed
    if _disabled_by_env():
        return False
    if _numba is None and not _import_failed:
        try:
            import numba
        except ImportError:
            _import_failed = True
        else:
            _prefer_wide_vectors()
            _numba = numba
    return _numba is not None


#: the LLVM feature that keeps vectors to 256 bits on CPUs that have 512-bit ones
_NARROW = "prefer-256-bit"


def _prefer_wide_vectors() -> None:
    """On a CPU with AVX-512, let numba's LLVM vectorise with 512-bit registers.

    LLVM's tuning for Intel's AVX-512 server and desktop cores prefers 256-bit vectors (an
    older core slowed its clock for wide ones), so an ``njit`` kernel gets half-width code
    there. The register-tile kernels hold 16 float32 per pixel, one 512-bit register:
    measured on such a CPU with both widths, the MNIST convnet's inference 0.69 -> 0.60 ms
    at batch 32 and 18.8 -> 15.4 ms at batch 1000, a 1x1 convolution's forward 1.96 ->
    1.69 ms. This turns the preference off through numba's own setting for the CPU's
    features (``NUMBA_CPU_FEATURES``), the host's features plus ``-prefer-256-bit``,
    before numba builds its code generator; it also applies to any other ``njit`` code of
    the process that numba compiles after it (the same instructions, wider). A feature
    string or CPU name the user set (``NUMBA_CPU_FEATURES``, ``NUMBA_CPU_NAME``) is left
    alone, and numba's cache keeps code for each feature string apart."""
    global _wide
    from numba.core import codegen, config
    if config.CPU_FEATURES is None and config.CPU_NAME is None:
        features = codegen.get_host_cpu_features()
        if "+avx512f" in features.split(","):
            config.CPU_FEATURES = f"{features},-{_NARROW}"
    chosen = (config.CPU_FEATURES or "").split(",")
    _wide = "+avx512f" in chosen and f"-{_NARROW}" in chosen


_wide = False       # numba compiles with 512-bit vectors (_prefer_wide_vectors)


def wide_registers() -> bool:
    """True when numba compiles with 512-bit vectors (:func:`_prefer_wide_vectors`): the
    generated kernels' ``_wide`` twins, tiles 32 filters wide, then pay (two registers per
    pixel; with 256-bit vectors their sums would not fit in the registers)."""
    return available() and _wide


def _require(where: str):
    if not available():
        reason = ("CONVKIT_ACCEL=0 is set" if _disabled_by_env()
                  else "numba is not installed (pip install convkit[fast])")
        raise ConvkitError(f"{where}: the compiled kernels are unavailable: {reason}; "
                           f"use the NumPy ops in convkit.ops instead")
    return _numba


def num_threads() -> int:
    """Threads the kernels split their rows over (``CONVKIT_NUM_THREADS`` or the CPUs)."""
    return _threads.num_threads()


def _compile_with_slp(dispatcher):
    """Make ``dispatcher`` compile its signatures with LLVM's SLP vectorizer on.

    numba switches that pass off for everything it compiles (``NUMBA_SLP_VECTORIZE``,
    default 0); a kernel that keeps its sums in per-channel local variables needs it to pack
    them into vector registers. The switch is numba's own setting, turned on only while
    this dispatcher compiles, under numba's compiler lock, and restored after. Should numba
    lose the setting, the kernel compiles as usual: the same results, slower."""
    from numba.core import config
    from numba.core.compiler_lock import global_compiler_lock
    if not hasattr(config, "SLP_VECTORIZE"):
        return dispatcher
    plain_compile = dispatcher.compile

    def compile_with_slp(sig):
        with global_compiler_lock:
            previous = config.SLP_VECTORIZE
            config.SLP_VECTORIZE = 1
            try:
                return plain_compile(sig)
            finally:
                config.SLP_VECTORIZE = previous
    dispatcher.compile = compile_with_slp
    return dispatcher


def jit(func, where: str, fastmath=FASTMATH, helpers=(), slp: bool = False):
    """The compiled version of a kernel written as a plain module-level function:
    ``numba.njit(cache=True, nogil=True)``, serial (the threads come from
    :func:`convkit.fast.runtime.threads.run_chunks`, which calls it on ranges of rows).

    ``helpers`` are module-level functions the kernel calls; they are compiled first (with
    this kernel's ``fastmath``; a helper given already compiled keeps its own options) and
    replaced in the kernel's module by their compiled versions. ``slp=True`` compiles with
    LLVM's SLP vectorizer on (:func:`_compile_with_slp`). Later calls return the same
    dispatcher. Raises :class:`ConvkitError` naming ``where`` when numba is unavailable.
    """
    numba = _require(where)            # also honours CONVKIT_ACCEL=0 set later
    dispatcher = _compiled.get(func)
    if dispatcher is not None:         # the common case, once per op call
        return dispatcher
    if hasattr(func, "py_func"):       # already compiled
        return func
    prefetch.register()                # the kernels' prefetch hint, compiled (once)
    if dispatcher is None:
        for helper in helpers:
            if hasattr(helper, "py_func"):      # compiled already, with its own options
                func.__globals__[helper.py_func.__name__] = helper
            else:
                func.__globals__[helper.__name__] = jit(helper, where, fastmath)
        options = dict(nogil=True, fastmath=set(fastmath) if fastmath else False)
        try:
            dispatcher = numba.njit(cache=True, **options)(func)
        except RuntimeError:   # no writable cache directory: compile in memory each run
            dispatcher = numba.njit(cache=False, **options)(func)
        dispatcher = compiling.notice_on_compile(dispatcher)
        if slp:
            dispatcher = _compile_with_slp(dispatcher)
        _compiled[func] = dispatcher
    return dispatcher


#: a kernel whose array arguments hold fewer bytes than this runs on the calling thread
#: alone: waking a pool thread (30-60 us) costs more than it saves (a batch-1 inference)
SMALL_WORK_BYTES = 1 << 18


def _small(args) -> bool:
    """Whether ``args`` hold arrays, all together smaller than :data:`SMALL_WORK_BYTES`."""
    sizes = [a.nbytes for a in args if isinstance(a, np.ndarray)]
    return bool(sizes) and sum(sizes) < SMALL_WORK_BYTES


def _run(kernel, total: int, *args, small: bool | None = None) -> None:
    """``kernel(*args, lo, hi)`` over contiguous chunks of ``range(total)``, one per thread;
    on the calling thread alone when the work is small (``small``, or by default when the
    array arguments hold fewer than :data:`SMALL_WORK_BYTES`)."""
    if small if small is not None else _small(args):
        if total > 0:
            kernel(*args, 0, total)
        return
    _threads.run_chunks(lambda lo, hi: kernel(*args, lo, hi), total, single_blas=False)


def _chunk_slots(total: int):
    """The per-thread chunks of ``range(total)`` and a map from a chunk's start to its index
    (for kernels that write into one scratch buffer per thread)."""
    chunks = _threads.split(total, _threads.num_threads())
    return chunks, {start: q for q, (start, _) in enumerate(chunks)}


def _run_partial(kernel, total: int, shapes, dtype, *args):
    """Like :func:`_run` for reductions: each chunk adds into its own zeroed partial arrays
    (``kernel(*args, *partials, lo, hi)``); returns the partials summed over the chunks."""
    chunks = _threads.split(total, _threads.num_threads())
    partials = [np.zeros((len(chunks), *shape), dtype) for shape in shapes]
    slot = {start: q for q, (start, _) in enumerate(chunks)}

    def work(lo, hi):
        q = slot[lo]
        kernel(*args, *(p[q] for p in partials), lo, hi)
    _threads.run_chunks(work, total, single_blas=False)
    return [p.sum(axis=0) for p in partials]

