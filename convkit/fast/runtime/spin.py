"""Short, bounded spin-waits without the GIL, for the hand-offs of the thread pool.

:func:`convkit.fast.runtime.threads.run_chunks` hands a chunk to a pool thread through a lock, and
waits for it through another. A thread blocked on a lock sleeps; waking it takes the
kernel's futex call and, on a virtual machine whose other core is idle, an interrupt to that
core: 20-40 us each way on a 2-core VM, against ~1 us when the waiting thread is still
running. Every two-thread op pays it twice (the pool thread's start and the caller's wake),
which is 2-15 % of a 0.5-4 ms op.

These kernels let a thread wait by watching a flag instead, for a bounded time, with the
GIL released. They are used when ``CONVKIT_SPIN_US`` is set to a positive number of
microseconds (off by default):

* the caller, after its own chunk, waits for the pool thread's "done" flag (bounded by
  :data:`CALLER_SPIN_US`), then takes the lock as before (free by then);
* the pool thread, after its chunk, sets its "done" flag without the GIL and watches for
  the next task's "go" flag for ``CONVKIT_SPIN_US`` microseconds before it goes back to
  sleeping on its lock.

The waiting loop is ``pause`` instructions (x86) with a ``sched_yield`` every
:data:`PAUSES` of them, so another runnable thread on that core gets it at once. Flags are
``int64`` arrays read and written with acquire/release atomics (LLVM ``load atomic`` /
``store atomic``), so the compiler can neither hoist the load out of the loop nor reorder
the store; :func:`compare_swap` is LLVM's ``cmpxchg`` (for
:mod:`convkit.fast.runtime.parked`). Measured with ``CONVKIT_SPIN_US=100`` on the benchmark's rows run alone (2
threads, interleaved A/B): LeNet-5 training step 6-7 % faster, max pooling forward 11-12 %,
depthwise 3-4 %, stride-2 convolution 1.5-2 %. It is off by default because a spinning
thread makes its core look busy to the scheduler: with PyTorch's calls interleaved (the
benchmark), PyTorch's pool thread was sometimes placed beside its main thread, and some
pooling rows of either library ran 1.5-10x slower for a whole run.

>>> import numpy as np
>>> flags = np.zeros(2, np.int64)
>>> if usable():
...     print(wait_flag(flags, 0, 1, 3), wait_flag(flags, 1, 0, 3))
... else:
...     print(False, True)
False True
"""
from __future__ import annotations

import contextlib
import os
import platform
import sys
import threading
import time

import numpy as np

from . import backend, threads
from .backend import available, jit

__all__ = ["usable", "wait_flag", "signal_then_wait", "rounds_for", "worker_spin_us",
           "current_plan", "spinning", "CALLER_SPIN_US", "PAUSES"]

#: ``pause`` instructions between two ``sched_yield`` calls: one round of the waiting loop
PAUSES = 32
#: the most a caller spins for its pool thread's end before it sleeps on the lock
CALLER_SPIN_US = 2000.0
#: the pool thread's spin after each chunk when ``CONVKIT_SPIN_US`` is unset: none
DEFAULT_WORKER_SPIN_US = 0.0

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")
_kernels = None            # (wait_flag, signal_then_wait) once compiled
_failed = False
_rounds_per_us = None


def _intrinsics():
    """The three numba intrinsics the kernels use (defined on first use: numba is optional)."""
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    def _pointer(context, builder, signature, args):
        array_type = signature.args[0]
        array = context.make_array(array_type)(context, builder, args[0])
        return cgutils.get_item_pointer(context, builder, array_type, array, [args[1]],
                                        wraparound=False)

    @intrinsic
    def load_acquire(typingctx, flags, index):
        def codegen(context, builder, signature, args):
            return builder.load_atomic(_pointer(context, builder, signature, args),
                                       ordering="acquire", align=8)
        return types.int64(flags, index), codegen

    @intrinsic
    def store_release(typingctx, flags, index, value):
        def codegen(context, builder, signature, args):
            builder.store_atomic(args[2], _pointer(context, builder, signature, args),
                                 ordering="release", align=8)
            return context.get_dummy_value()
        return types.void(flags, index, types.int64), codegen

    @intrinsic
    def compare_swap(typingctx, flags, index, expected, value):
        """``flags[index] = value`` if it holds ``expected`` (one atomic step, acquire and
        release); whether it did."""
        def codegen(context, builder, signature, args):
            pointer = _pointer(context, builder, signature, args)
            pair = builder.cmpxchg(pointer, args[2], args[3], "acq_rel", "acquire")
            return builder.extract_value(pair, 1)
        return types.boolean(flags, index, types.int64, types.int64), codegen

    @intrinsic
    def relax(typingctx, pauses):
        """``pauses`` x86 ``pause`` instructions (nothing elsewhere), then ``sched_yield``."""
        def codegen(context, builder, signature, args):
            void = ir.FunctionType(ir.VoidType(), [])
            if _X86:
                pause = cgutils.get_or_insert_function(builder.module, void,
                                                       "llvm.x86.sse2.pause")
                with cgutils.for_range(builder, args[0]):
                    builder.call(pause, [])
            yield_fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.IntType(32), []), "sched_yield")
            builder.call(yield_fn, [])
            return context.get_dummy_value()
        return types.void(pauses), codegen

    return load_acquire, store_release, compare_swap, relax


# the intrinsics, set by _compile() (numba is imported only then)
load_acquire = store_release = compare_swap = relax = None


def _k_wait_flag(flags, index, value, rounds):
    # True as soon as flags[index] >= value; False after `rounds` rounds without
    for _ in range(rounds):
        if load_acquire(flags, index) >= value:
            return True
        relax(PAUSES)
    return load_acquire(flags, index) >= value


def _k_signal_then_wait(flags, done, go, rounds):
    # flags[1] = done (release), then wait for flags[0] >= go
    store_release(flags, 1, done)
    return _k_wait_flag(flags, 0, go, rounds)


def usable() -> bool:
    """True when the spin kernels can run: numba available (:func:`convkit.fast.available`),
    a C library with ``sched_yield`` (not Windows), and they compiled."""
    return _compile() is not None


def _compile():
    global _kernels, _failed, load_acquire, store_release, compare_swap, relax
    if _kernels is None and not _failed:
        if sys.platform == "win32" or not available():
            return None
        try:
            load_acquire, store_release, compare_swap, relax = _intrinsics()
            signal = jit(_k_signal_then_wait, "spin", fastmath=(), helpers=(_k_wait_flag,))
            kernels = (jit(_k_wait_flag, "spin", fastmath=()), signal)
            flags = np.zeros(2, np.int64)
            kernels[0](flags, 0, 0, 1)                  # compile (or load) both now
            kernels[1](flags, 0, 0, 1)
        except Exception:      # an unusual platform or numba: plain locks still work
            _failed = True
            return None
        _kernels = kernels
    return _kernels


def wait_flag(flags: np.ndarray, index: int, value: int, rounds: int) -> bool:
    """Spin (GIL released) until ``flags[index] >= value`` or ``rounds`` rounds have passed;
    whether the flag got there. ``flags`` is a 1-D ``int64`` array."""
    return bool(_compile()[0](flags, index, value, rounds))


def signal_then_wait(flags: np.ndarray, done: int, go: int, rounds: int) -> bool:
    """Set ``flags[1] = done`` with the GIL released, then :func:`wait_flag` for
    ``flags[0] >= go``."""
    return bool(_compile()[1](flags, done, go, rounds))


def rounds_for(microseconds: float) -> int:
    """Rounds of the waiting loop that take about ``microseconds`` on this machine (timed
    once, the fastest of three runs of 200 rounds: on a loaded machine a ``sched_yield``
    can give the core away for a while); at least one round for a positive time."""
    global _rounds_per_us
    if _rounds_per_us is None:
        flags = np.zeros(2, np.int64)
        wait_flag(flags, 0, 1, 8)
        elapsed_us = []
        for _ in range(3):
            start = time.perf_counter()
            wait_flag(flags, 0, 1, 200)
            elapsed_us.append(max((time.perf_counter() - start) * 1e6, 1.0))
        _rounds_per_us = 200.0 / min(elapsed_us)
    if microseconds <= 0:
        return 0
    return max(1, int(round(microseconds * _rounds_per_us)))


_scoped = threading.local()   # .us: the spin of this thread's innermost spinning() block


@contextlib.contextmanager
def spinning(microseconds: float):
    """Inside the block, pool threads watch for their next task for ``microseconds`` after
    each chunk (unless ``CONVKIT_SPIN_US`` is set: it wins), then sleep as usual. For a run
    of parallel calls in quick succession whose hand-offs would otherwise each wake a
    sleeping thread: a model's inference, layer after layer (MNIST convnet, batch 32, idle
    machine: 1.26 -> 1.08 ms). Outside such blocks nothing spins, so the pool never holds a
    core that another library's threads are waiting for.

    >>> with spinning(200):
    ...     worker_spin_us() == 200 or "CONVKIT_SPIN_US" in os.environ
    True

    A block is the opening thread's: the hand-offs it makes spin, another thread's do not
    (two threads predicting at once each restore their own setting)."""
    previous = getattr(_scoped, "us", None)
    _scoped.us = float(microseconds)
    try:
        yield
    finally:
        _scoped.us = previous


def worker_spin_us() -> float:
    """How long a pool thread watches for its next task before sleeping:
    ``CONVKIT_SPIN_US`` microseconds if set, else the time of the current :func:`spinning`
    block, else :data:`DEFAULT_WORKER_SPIN_US` (0: no spinning at all, on either side)."""
    value = os.environ.get("CONVKIT_SPIN_US", "").strip()
    if not value:
        scoped = getattr(_scoped, "us", None)
        return DEFAULT_WORKER_SPIN_US if scoped is None else scoped
    try:
        return max(0.0, float(value))
    except ValueError:
        return DEFAULT_WORKER_SPIN_US


class SpinPlan:
    """The compiled waits and their bounds in rounds, as the thread pool uses them."""

    def __init__(self, kernels, caller_rounds: int, worker_rounds: int):
        self.wait_flag, self.signal_then_wait = kernels
        self.caller_rounds = caller_rounds
        self.worker_rounds = worker_rounds


_plan = None              # the current SpinPlan, or None
_plan_key = None          # (CONVKIT_SPIN_US, kernels in use) that _plan was made for
_no_spin_setting = None   # a CONVKIT_SPIN_US value already found to mean "no spinning"


def current_plan():
    """The :class:`SpinPlan` for ``CONVKIT_SPIN_US`` (``None`` when it is unset or ``0``, or
    when the compiled kernels are not in use: ``CONVKIT_ACCEL=0``, backend ``"numpy"``, no
    numba), remade when either changes. With spinning off (the default) this costs one
    environment lookup. The thread pool asks it before each parallel call."""
    global _plan, _plan_key, _no_spin_setting
    setting = (os.environ.get("CONVKIT_SPIN_US", ""), getattr(_scoped, "us", None))
    if setting == _no_spin_setting:
        _plan = _plan_key = None
        return None
    worker_us = worker_spin_us()
    if worker_us <= 0:
        _plan, _plan_key, _no_spin_setting = None, None, setting
        return None
    key = (setting, backend.enabled())
    if key != _plan_key:
        plan = None
        if key[1] and usable():
            plan = SpinPlan(_compile(), rounds_for(CALLER_SPIN_US), rounds_for(worker_us))
        _plan, _plan_key = plan, key
    return _plan


threads.set_spin_source(current_plan)
