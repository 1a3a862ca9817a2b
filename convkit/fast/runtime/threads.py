"""Run NumPy / compiled code over chunks of a batch on a few threads.

NumPy's large operations and the ``nogil`` compiled kernels release the GIL, so plain Python
threads run them in parallel. :func:`run_chunks` splits ``range(total)`` into one contiguous
chunk per thread and calls ``fn(start, stop)`` for each, on a small pool that lives as long as
the process. While it runs, the BLAS library is limited to one thread (when ``threadpoolctl``
is installed), so each chunk's matrix products run on their own core without the barrier
that a multithreaded BLAS call needs -- what keeps many small products fast when the cores
are shared with other work.

The thread count is ``CONVKIT_NUM_THREADS`` if set, else the number of CPUs.

>>> out = np.zeros(10)
>>> def fill(start, stop):
...     out[start:stop] = np.arange(start, stop)
>>> run_chunks(fill, 10)
>>> out.tolist()
[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
"""
from __future__ import annotations

import contextlib
import os
import threading

import numpy as np

from . import memory as _memory

__all__ = ["num_threads", "split", "run_chunks", "blas_limit", "can_limit_blas", "matmul",
           "matmul_tn", "column_sums", "pointwise_backward"]

_lock = threading.Lock()
_state = threading.local()  # .busy is True while this thread runs a chunk
_controller = None        # threadpoolctl.ThreadpoolController, once created
_controller_failed = False


_CPUS = max(1, os.cpu_count() or 1)


def num_threads() -> int:
    """Threads to use: ``CONVKIT_NUM_THREADS`` or the CPU count (at least 1)."""
    value = os.environ.get("CONVKIT_NUM_THREADS", "")
    if not value:
        return _CPUS
    try:
        return max(1, int(value))
    except ValueError:
        return _CPUS


def split(total: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous ``(start, stop)`` ranges covering ``range(total)`` as evenly as
    possible (empty ones dropped): ``split(10, 3) == [(0, 4), (4, 7), (7, 10)]``."""
    parts = max(1, min(parts, total))
    sizes = [total // parts + (1 if i < total % parts else 0) for i in range(parts)]
    bounds = [0]
    for size in sizes:
        bounds.append(bounds[-1] + size)
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def _get_controller():
    global _controller, _controller_failed
    if _controller is None and not _controller_failed:
        try:
            from threadpoolctl import ThreadpoolController
            _controller = ThreadpoolController()
        except Exception:   # not installed, or no BLAS it recognises
            _controller_failed = True
    return _controller


_blas_libs = None         # threadpoolctl's controllers of the loaded BLAS libraries, once found


def _blas_controllers() -> list:
    global _blas_libs
    if _blas_libs is None:
        controller = _get_controller()
        _blas_libs = [] if controller is None else [
            lib for lib in controller.lib_controllers if lib.user_api == "blas"]
    return _blas_libs


#: OpenBLAS's kernel families (threadpoolctl's ``architecture``) that use 512-bit registers
WIDE_OPENBLAS_KERNELS = frozenset({"skylakex", "cooperlake", "sapphirerapids"})


def blas_wide_kernels() -> bool:
    """Does NumPy's BLAS multiply with 512-bit registers? OpenBLAS picks its kernels for the
    CPU when it loads, and ``OPENBLAS_CORETYPE`` may force an older family (``Haswell``:
    AVX2, half the float32 peak of an AVX-512 CPU); it says which it runs. Another BLAS, or
    none found, counts as yes (its products are left to it)."""
    for lib in _blas_controllers():
        if lib.internal_api == "openblas":
            return (getattr(lib, "architecture", None) or "").lower() in WIDE_OPENBLAS_KERNELS
    return True


def can_limit_blas() -> bool:
    """True when the BLAS thread count can be changed at run time (threadpoolctl found the
    BLAS library NumPy uses)."""
    return bool(_blas_controllers())


_limited_depth = 0        # how many blas_limit(1) blocks are open (the limit is global)
_saved_counts = None      # the BLAS thread counts before the first of them opened


@contextlib.contextmanager
def blas_limit(limit: int = 1):
    """Limit the BLAS library to ``limit`` threads inside the block, then restore its count
    (no-op without threadpoolctl). The library's own get/set calls are used directly (~1 us
    each; threadpoolctl's ``limit`` context costs ~13 us).

    ``blas_limit(1)`` blocks share one limit across the process, nested or open in several
    threads at once (two threads each running a ``predict``): the first block to open sets
    it, the last to close restores the count seen before the first, so a caller running
    many small ops (a training step) can open one block around all of them. Another
    ``limit`` sets and restores its own."""
    global _limited_depth, _saved_counts
    libs = _blas_controllers()
    if not libs:
        yield
        return
    if limit != 1:
        previous = [lib.get_num_threads() for lib in libs]
        for lib in libs:
            lib.set_num_threads(limit)
        try:
            yield
        finally:
            for lib, count in zip(libs, previous):
                if count is not None:
                    lib.set_num_threads(count)
        return
    with _lock:
        if _limited_depth == 0:
            _saved_counts = [lib.get_num_threads() for lib in libs]
            for lib, count in zip(libs, _saved_counts):
                if count != 1:
                    lib.set_num_threads(1)
        _limited_depth += 1
    try:
        yield
    finally:
        with _lock:
            _limited_depth -= 1
            if _limited_depth == 0:
                for lib, count in zip(libs, _saved_counts):
                    if count is not None and count != 1:
                        lib.set_num_threads(count)


_spin = None              # the current spin plan, or None: hand-offs through the locks only
_spin_source = None       # returns the plan for the current settings (set_spin_source)


def set_spin_source(source) -> None:
    """Where the pool's hand-offs get their spin-wait plan: ``source()`` returns ``None``
    (hand-offs through the locks only) or an object with ``wait_flag(flags, index, value,
    rounds)``, ``signal_then_wait(flags, done, go, rounds)``, ``caller_rounds`` and
    ``worker_rounds``. :mod:`convkit.fast.runtime.spin` installs its own when imported, so
    this module imports neither it nor the compiled kernels."""
    global _spin_source
    _spin_source = source


def _spin_plan():
    """The spin plan for the current settings (``None`` without a source), also kept where
    the pool threads read it."""
    global _spin
    _spin = None if _spin_source is None else _spin_source()
    return _spin


#: test hook: ``_interrupt_hook(where)`` is called at the points where a ``KeyboardInterrupt``
#: can land inside :func:`run_chunks` (``"start"``: a task posted but its worker not yet woken;
#: ``"wait"``: the caller about to wait for a worker; ``"settle"``: the caller waiting for a
#: worker after an interrupt); ``None`` in normal use
_interrupt_hook = None


class _Worker:
    """One pool thread, woken through a pair of plain locks (``go`` / ``done``): less
    overhead than ``concurrent.futures``' queue and futures (a two-thread call that does
    nothing: ~50 us against ~80-100 us on a 2-core VM), and safe after ``fork``.

    Who owns a task is told by two counters, not by the locks: ``posted`` (tasks the caller
    handed over) and ``finished`` (tasks the thread ended). The locks only wake the other
    side, and each is released only by one side and only when it is held, so a wake-up that
    is lost or doubled (a ``KeyboardInterrupt`` between two statements of the caller) can
    neither skip a task's end nor release an unlocked lock: :meth:`settle` wakes the thread
    again if needed and waits until ``finished == posted``.

    With a spin plan (``CONVKIT_SPIN_US`` > 0, :mod:`convkit.fast.runtime.spin`) the two sides also watch a pair of
    sequence numbers, ``flags = [go, done]``, so that neither has to be woken from sleep:
    the thread sets ``done`` with the GIL released and watches ``go`` for a while before
    blocking on ``go`` again, and the caller watches ``done`` before taking the ``done``
    lock (a call that does nothing: ~12-25 us)."""

    def __init__(self, index: int):
        self._go = threading.Lock()
        self._go.acquire()
        self._done = threading.Lock()
        self._done.acquire()
        self._task = None
        self._error = None
        self._flags = np.zeros(2, np.int64)     # [go, done]: the last task started / ended
        self._posted = 0                        # written by the caller only
        self._finished = 0                      # written by the thread only
        self._thread = threading.Thread(target=self._loop, name=f"convkit-{index}",
                                        daemon=True)
        self._thread.start()

    def start(self, fn, start: int, stop: int) -> None:
        self._task = (fn, start, stop)
        self._error = None
        self._posted += 1
        self._flags[0] = self._posted
        if _interrupt_hook is not None:
            _interrupt_hook("start")
        self._wake()

    def _wake(self) -> None:
        if self._go.locked():     # only the caller releases go: no race between the two
            self._go.release()

    def idle(self) -> bool:
        return self._finished == self._posted

    def wait(self, plan=None):
        """Block until the posted task ends; return the exception it raised, or None."""
        if plan is not None and not self.idle():
            plan.wait_flag(self._flags, 1, self._posted, plan.caller_rounds)
        if _interrupt_hook is not None:
            _interrupt_hook("wait")
        while not self.idle():
            self._done.acquire()
        error, self._error = self._error, None
        return error

    def settle(self):
        """After an interrupt: wake the thread if its task was posted but it was not woken,
        and wait for the task's end whatever further interrupts arrive meanwhile. Returns
        ``(error of the task or None, the first KeyboardInterrupt caught or None)``."""
        caught = None
        while True:
            try:
                if not self.idle():
                    self._wake()
                    while not self.idle():
                        if _interrupt_hook is not None:
                            _interrupt_hook("settle")
                        self._done.acquire(timeout=0.05)
                error, self._error = self._error, None
                return error, caught
            except BaseException as exc:          # KeyboardInterrupt: finish first
                caught = caught or exc

    def _loop(self) -> None:
        while True:
            self._go.acquire()
            if self._finished == self._posted:   # a repeated wake-up: nothing posted
                continue
            seq = self._finished + 1
            fn, start, stop = self._task
            self._task = None
            try:
                _run_marked(fn, start, stop)
            except BaseException as exc:     # handed to the caller by wait()
                self._error = exc
            self._finished = seq
            if self._done.locked():          # only this thread releases done
                self._done.release()
            plan = _spin
            if plan is not None:
                plan.signal_then_wait(self._flags, seq, seq + 1, plan.worker_rounds)
            else:
                self._flags[1] = seq


_workers: list = []
_dispatch = threading.Lock()   # held while one run_chunks call owns the workers


def _reset_after_fork() -> None:
    """A forked child has none of the parent's threads: start afresh."""
    global _workers, _dispatch, _lock
    _workers = []
    _dispatch = threading.Lock()
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _claim_workers(count: int):
    """``count`` idle workers (started on first use), or None when another thread's
    :func:`run_chunks` is using them (the caller then runs its chunks itself)."""
    if not _dispatch.acquire(blocking=False):
        return None
    try:
        with _lock:
            while len(_workers) < count:
                _workers.append(_Worker(len(_workers) + 1))
        return _workers[:count]
    except BaseException:
        _dispatch.release()
        raise


def _run_marked(fn, start, stop):
    _state.busy = True
    try:
        fn(start, stop)
    finally:
        _state.busy = False


def _settle_all(workers):
    """After an exception inside :func:`run_chunks`: wait until every worker's posted task
    has ended (:meth:`_Worker.settle`, deaf to further interrupts meanwhile), then release
    the pool. Returns the first ``KeyboardInterrupt`` that arrived while waiting, or None."""
    caught = None
    try:
        for worker in workers:
            _, interrupt = worker.settle()
            caught = caught or interrupt
    finally:
        _dispatch.release()
    return caught


def run_chunks(fn, total: int, threads: int | None = None, single_blas: bool = True) -> None:
    """Call ``fn(start, stop)`` over :func:`split` ``(total, threads)`` chunks, in parallel.

    The calling thread runs the first chunk itself; exceptions propagate. With
    ``single_blas`` the BLAS library is limited to one thread meanwhile (see the module
    docstring), also when there is a single chunk. Called again from inside a chunk, it
    runs the whole range on the calling thread (no deadlock on the shared pool).

    Every chunk has ended before the call returns or raises, also when a
    ``KeyboardInterrupt`` arrives while the caller runs its chunk or waits for the pool
    threads: the interrupt is raised once they are done, and the next call finds them idle.
    """
    if getattr(_state, "busy", False):     # called from inside a chunk: stay on this thread
        if total > 0:
            fn(0, total)
        return
    _memory.keep_freed_memory()        # once per process: reuse freed activations' pages
    threads = num_threads() if threads is None else max(1, int(threads))
    chunks = split(total, threads)
    with (blas_limit(1) if single_blas else contextlib.nullcontext()):
        if len(chunks) <= 1:
            for start, stop in chunks:
                _run_marked(fn, start, stop)
            return
        workers = _claim_workers(len(chunks) - 1)
        if workers is None:              # the workers are busy with another caller's op
            for start, stop in chunks:
                _run_marked(fn, start, stop)
            return
        errors = []
        try:
            plan = _spin_plan()
            for worker, (start, stop) in zip(workers, chunks[1:]):
                worker.start(fn, start, stop)
            _run_marked(fn, *chunks[0])
            for worker in workers:           # every chunk ends before anything is raised
                error = worker.wait(plan)
                if error is not None:
                    errors.append(error)
        except BaseException as exc:         # the caller's chunk failed, or an interrupt
            interrupt = _settle_all(workers)
            raise (interrupt or exc)
        _dispatch.release()
        if errors:
            raise errors[0]


#: products of fewer multiply-adds than this run on one thread (the threads' hand-offs cost
#: more than they save)
THREADED_PRODUCT = 1 << 22


def _gemm_threads(rows: int, work: int) -> int:
    """Threads for a product: one unless BLAS can be limited and there is enough work."""
    if not can_limit_blas() or work < THREADED_PRODUCT:
        return 1
    return min(num_threads(), rows)


#: products of fewer multiply-adds than this run as a plain ``np.matmul``: the BLAS library
#: keeps them on one thread by itself, and setting its thread count costs more (a batch-1
#: dense layer, 1600 x 10: ~20 us)
TINY_PRODUCT = 1 << 16

#: :func:`matmul` hands its ``epilogue`` blocks of about this many bytes of output rows, each
#: right after its product, while it is still in the core's cache
EPILOGUE_BLOCK_BYTES = 1 << 20


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None,
           epilogue=None) -> np.ndarray:
    """``a @ b`` for 2-D ``a (M, K)``, ``b (K, N)``, the rows of ``a`` split over the threads,
    each product on a one-thread BLAS (the same numbers as ``a @ b`` up to rounding).

    ``epilogue(rows)``, when given, is called in place on consecutive blocks of output rows
    (``(M_block, N)`` views of ``out``), each right after its own product -- a bias and
    activation added while the block is in cache instead of in a second pass over ``out``
    (a 1x1 convolution, 25088 x 64 @ 64 x 128 with a bias: about 8 % faster)."""
    m, k = a.shape
    n = b.shape[1]
    if out is None:
        out = np.empty((m, n), dtype=np.result_type(a, b))
    if m * k * n < TINY_PRODUCT:  # one BLAS thread anyway: no limit to set and restore
        np.matmul(a, b, out=out)
        if epilogue is not None:
            epilogue(out)
        return out
    threads = _gemm_threads(m, m * k * n)
    if threads == 1:
        with blas_limit(1):      # a small product: no multithreaded-BLAS barrier
            np.matmul(a, b, out=out)
        if epilogue is not None:
            epilogue(out)
        return out
    step = m if epilogue is None else max(1, EPILOGUE_BLOCK_BYTES // max(1, n * out.itemsize))

    def work(start, stop):
        for r0 in range(start, stop, step):
            r1 = min(r0 + step, stop)
            np.matmul(a[r0:r1], b, out=out[r0:r1])
            if epilogue is not None:
                epilogue(out[r0:r1])
    run_chunks(work, m, threads)
    return out


def matmul_tn(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a.T @ b`` for 2-D ``a (L, M)``, ``b (L, N)`` with a long shared axis ``L`` (a kernel
    gradient ``columns^T @ dy``): each thread multiplies its own rows of ``a`` and ``b`` and
    the partial ``(M, N)`` products are added."""
    length, m = a.shape
    n = b.shape[1]
    threads = _gemm_threads(length, length * m * n)
    if threads == 1:
        with blas_limit(1):
            return a.T @ b
    chunks = split(length, threads)
    partials = np.empty((len(chunks), m, n), dtype=np.result_type(a, b))
    slot = {start: q for q, (start, _) in enumerate(chunks)}

    def work(start, stop):
        np.matmul(a[start:stop].T, b[start:stop], out=partials[slot[start]])
    run_chunks(work, length, threads)
    return partials.sum(axis=0)


def column_sums(a: np.ndarray) -> np.ndarray:
    """``a.sum(axis=0)`` of a C-contiguous 2-D ``a (M, N)`` as a BLAS product ``ones(M) @ a``
    (a bias gradient). Like NumPy's ``axis=0`` reduction it accumulates rows in the array's
    dtype without pairwise summation, but at memory speed instead of one vector add per row
    (25088 x 128 float32: 0.14 ms instead of 0.55 ms). ``(N,)`` in ``a``'s dtype.

    >>> column_sums(np.arange(6.0).reshape(3, 2)).tolist()
    [6.0, 9.0]
    """
    if a.ndim != 2 or not a.flags.c_contiguous or a.shape[0] == 0 \
            or a.dtype not in (np.float32, np.float64):
        return a.sum(axis=0)
    with blas_limit(1):
        return np.ones(a.shape[0], dtype=a.dtype) @ a


def _blas_matmul_into(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    np.matmul(a, b, out=out)


def _blas_matmul_tn_add(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    out += a.T @ b


#: ``(matmul_into, matmul_tn_add)`` on the calling thread's BLAS: ``out = a @ b`` and
#: ``out += a^T @ b``; the per-thread products of the backward passes unless the compiled
#: register-tile kernels (:mod:`convkit.fast.kernels.implicit`) are passed instead
BLAS_PRODUCTS = (_blas_matmul_into, _blas_matmul_tn_add)


def pointwise_backward(x2d: np.ndarray, dy2d: np.ndarray, kernel2d: np.ndarray,
                       input_grad: bool = True, products=None):
    """``(dx (M, C) or None, dkernel (C, F), dbias (F,))`` of ``y = x2d @ kernel2d + bias``
    (a 1x1 convolution or a dense layer), ``x2d (M, C)``, ``dy2d (M, F)``: each thread takes
    a range of rows and computes its partial ``x^T dy``, its ``dy kernel^T`` rows and its
    partial column sums while its rows of ``dy`` are in cache (one pass over ``dy`` per core
    instead of three threaded products)::

        dkernel = x2d^T @ dy2d,   dx = dy2d @ kernel2d^T,   dbias = sum over rows of dy2d

    ``products = (matmul_into, matmul_tn_add)`` are the threads' two products
    (:data:`BLAS_PRODUCTS` when ``None``).
    """
    m, c = x2d.shape
    f = dy2d.shape[1]
    dtype = np.result_type(x2d, dy2d)
    threads = _gemm_threads(m, m * c * f)
    kernel_t = np.ascontiguousarray(kernel2d.T)                      # (F, C)
    if threads == 1:
        with blas_limit(1):
            dx = dy2d @ kernel_t if input_grad else None
            return dx, x2d.T @ dy2d, column_sums(dy2d)
    chunks = split(m, threads)
    slot = {start: q for q, (start, _) in enumerate(chunks)}
    matmul_into, matmul_tn_add = products or BLAS_PRODUCTS
    dk_parts = np.zeros((len(chunks), c, f), dtype=dtype)
    db_parts = np.empty((len(chunks), f), dtype=dtype)
    dx = np.empty((m, c), dtype=dtype) if input_grad else None

    def work(start, stop):
        q = slot[start]
        rows = dy2d[start:stop]                                      # (rows, F)
        matmul_tn_add(x2d[start:stop], rows, dk_parts[q])
        if input_grad:
            matmul_into(rows, kernel_t, dx[start:stop])
        db_parts[q] = np.ones(stop - start, dtype=dtype) @ rows
    run_chunks(work, m, threads)
    return dx, dk_parts.sum(axis=0), db_parts.sum(axis=0)
