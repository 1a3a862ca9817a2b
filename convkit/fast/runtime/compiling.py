"""The first run: numba compiles each kernel once per machine (then loads it from its cache
in 2-4 ms), which takes tens of seconds for a model's kernels. Two things make that
bearable:

* **A visible notice.** A compile that takes longer than :data:`NOTICE_AFTER_S` prints one
  line on stderr, ``convkit: compiling kernels (first run only)...``, followed on a
  terminal by a count of the kernels compiled so far.
* **The NumPy code serves while the kernels compile** (``CONVKIT_COMPILE=background``, or
  ``auto``, the default, on a machine whose numba cache holds no convkit kernels yet): the
  first time a fast path is asked for (a key of op, direction, plan and dtypes), the
  dispatch table answers ``None``, so the op's NumPy code runs, and a background thread
  runs the fast path once on the same arguments, compiling its kernels; from then on the
  fast path serves. Results differ between the two only by float rounding.
  ``CONVKIT_COMPILE=wait`` compiles in the caller's thread instead, as before (a run whose
  results must not depend on timing, e.g. a test suite on a fresh clone, sets it).
* **At exit** the fast paths still queued are dropped and the kernel being compiled is let
  finish (at most :data:`EXIT_WAIT_S`), so its cache file is written and the thread is not
  stopped inside LLVM; the next run compiles the rest.

>>> set_compile_mode("wait"); compile_mode()
'wait'
>>> set_compile_mode("auto")
"""
from __future__ import annotations

import atexit
import os
import queue
import sys
import threading
import time

from ...errors import ConvkitError

__all__ = ["compile_mode", "set_compile_mode", "in_background", "ready", "wait_idle", "notice_on_compile",
           "MODES", "NOTICE_AFTER_S"]

MODES = ("auto", "background", "wait")
#: a compile still running after this many seconds shows the notice (a cache load never)
NOTICE_AFTER_S = 0.5

_mode = os.environ.get("CONVKIT_COMPILE", "auto").strip().lower()
if _mode not in MODES:
    _mode = "auto"
_cold = None             # whether numba's cache held no convkit kernels at the first question
_lock = threading.Lock()
_ready: set = set()      # keys whose fast path has run once (its kernels compiled or loaded)
_pending: set = set()    # keys queued for the background thread
_jobs: queue.Queue = queue.Queue()
_worker = None
#: at interpreter exit, wait at most this many seconds for the kernel being compiled
EXIT_WAIT_S = 60.0


def set_compile_mode(mode: str) -> None:
    """``"auto"`` (background compiles when numba's cache is cold), ``"background"`` or
    ``"wait"``; the environment variable ``CONVKIT_COMPILE`` sets it at import."""
    global _mode
    if not isinstance(mode, str) or mode.lower() not in MODES:
        raise ConvkitError(f"set_compile_mode: mode must be one of {MODES}, got {mode!r}")
    _mode = mode.lower()


def compile_mode() -> str:
    return _mode


def in_background() -> bool:
    """Whether fast paths compile in the background (and the NumPy code serves until then):
    ``CONVKIT_COMPILE=background``, or ``auto`` with numba's cache cold at the first
    question."""
    return _background()


def _background() -> bool:
    global _cold
    if _mode != "auto":
        return _mode == "background"
    if _cold is None:
        _cold = _cache_is_cold()
    return _cold


def _cache_is_cold() -> bool:
    """True when numba's cache has no entry for a sentinel kernel every convolution model
    needs (the register-tile product): a fresh install. Any doubt reads as warm."""
    try:
        from numba.core.caching import FunctionCache
        from .._generated import conv_regs
        index = FunctionCache(conv_regs._k_gemm_regs)._cache_file._index_path
        return not os.path.exists(index)
    except Exception:
        return False


def ready(key, run) -> bool:
    """Whether the fast path named by ``key`` may serve now. In background mode a key seen
    for the first time is not: ``run()`` (the fast path on the caller's arguments, its
    result thrown away) is queued for the background thread, and the key is ready once it
    has run."""
    if key in _ready:
        return True
    if not _background():
        _ready.add(key)
        return True
    global _worker
    first = False
    with _lock:
        if key in _ready:
            return True
        if key not in _pending:
            first = not _pending and not _ready
            _pending.add(key)
            _jobs.put((key, run))
            if _worker is None or not _worker.is_alive():
                if _worker is None:
                    atexit.register(_finish_at_exit)
                _worker = threading.Thread(target=_work, name="convkit-compile", daemon=True)
                _worker.start()
    if first:
        _show("")
    return False


def _work() -> None:
    while True:
        key, run = _jobs.get()
        if run is None:        # _finish_at_exit: nothing more to compile
            _jobs.task_done()
            return
        try:
            run()
        except Exception:      # the caller's thread meets the same error on its next call
            pass
        finally:
            with _lock:
                _ready.add(key)
                _pending.discard(key)
            _jobs.task_done()


def _finish_at_exit(timeout: float | None = None) -> None:
    """At interpreter exit (registered with :mod:`atexit` when the thread first starts):
    drop the fast paths still queued and let the kernel being compiled finish, at most
    :data:`EXIT_WAIT_S` seconds, so that numba writes its cache file and the thread is not
    stopped inside LLVM while the interpreter shuts down."""
    with _lock:
        while True:
            try:
                key, _ = _jobs.get_nowait()
            except queue.Empty:
                break
            _pending.discard(key)
            _jobs.task_done()
        _jobs.put((None, None))
    worker = _worker
    if worker is not None and worker.is_alive():
        worker.join(EXIT_WAIT_S if timeout is None else timeout)


def wait_idle(timeout: float | None = None) -> bool:
    """Block until the background thread has nothing left to compile (or ``timeout``
    seconds); whether it got there."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while _pending:
        if deadline is not None and time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# ------------------------------------------------------------------------------ the notice
_shown = False
_compiled: set = set()   # (kernel, signature) compiled since the notice was shown
_started = None


def _show(name: str) -> None:
    global _shown, _started
    with _lock:
        if _shown:
            return
        _shown, _started = True, time.monotonic()
    where = " in the background; the NumPy code serves meanwhile" if _background() else ""
    sys.stderr.write(f"convkit: compiling kernels (first run only){where}...")
    sys.stderr.write("" if sys.stderr.isatty() else "\n")
    sys.stderr.flush()


def _progress(name, sig) -> None:
    with _lock:
        _compiled.add((name, str(sig)))
        count = len(_compiled)
    if sys.stderr.isatty():
        sys.stderr.write(f"\rconvkit: compiling kernels (first run only)... {count} done, "
                         f"{time.monotonic() - _started:.0f} s ")
        sys.stderr.flush()


def notice_on_compile(dispatcher):
    """Make ``dispatcher`` (a numba dispatcher) show the notice when one of its compiles
    takes longer than :data:`NOTICE_AFTER_S`, and count it on the progress line."""
    plain_compile = dispatcher.compile
    name = getattr(dispatcher, "__name__", "kernel")

    def compile_with_notice(sig):
        timer = threading.Timer(NOTICE_AFTER_S, _show, (name,))
        timer.daemon = True
        timer.start()
        started = time.monotonic()
        try:
            return plain_compile(sig)
        finally:
            timer.cancel()
            if _shown and time.monotonic() - started > NOTICE_AFTER_S / 5:
                _progress(name, sig)
    dispatcher.compile = compile_with_notice
    return dispatcher
