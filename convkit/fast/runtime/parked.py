"""A helper thread that waits for work inside compiled code: hand-offs with no GIL.

Handing a chunk to a pool thread (:func:`convkit.fast.runtime.threads.run_chunks`) costs
15-60 us on a small VM even when the thread is awake: it returns from its compiled wait to
Python, and Python's GIL is the caller's until the caller's own kernel starts, so the thread
goes to sleep on the GIL and is woken again. A batch-1 ``predict`` has ~35 us of work to
split; the hand-off would eat it all.

A :class:`ParkedHelper` thread instead runs a compiled *park* loop (GIL released) that
watches a small ``int64`` array of flags for tasks, runs each task's compiled kernel
itself and signals its end, all without Python; it leaves the loop after ``spin_us``
microseconds without a task (or when asked to) and sleeps until woken. The caller's side:

* :meth:`ParkedHelper.post` (compiled: writes the task, then claims the parked helper with
  one atomic compare-and-swap) returns ``False`` when the helper is not parked; the caller
  then runs the whole task itself and :meth:`~ParkedHelper.wake` s the helper for next time;
* after running its own share, :meth:`ParkedHelper.wait` waits (GIL released) for the end.

Flags (``int64``): ``[state, done, task..., leave, next]`` with state ``AWAY`` (0),
``PARKED`` (1), ``CLAIMED`` (2) or ``STARTED`` (3). Only the caller moves ``PARKED ->
CLAIMED``, and back ``CLAIMED -> PARKED`` to withdraw a claim the helper has not taken yet;
only the helper moves ``CLAIMED -> STARTED`` (taking the claim), ``STARTED -> PARKED``
(after the task) and ``PARKED -> AWAY``; every move that can race is a compare-and-swap, so
exactly one side wins it. ``next`` is the start of the task's next unclaimed chunk: both
sides take chunks from it (by compare-and-swap) until none is left, so the work splits by
how fast each side runs, not in fixed halves. The park loop and its kernels come from the caller
(:func:`convkit.fast.kernels.fused.park_kernels`); this module owns the thread.
"""
from __future__ import annotations

import os
import threading
import time
import weakref

import numpy as np

__all__ = ["ParkedHelper", "AWAY", "PARKED", "CLAIMED", "STARTED", "STATE", "DONE", "TASK",
           "LEAVE", "NEXT", "FLAGS"]

AWAY, PARKED, CLAIMED, STARTED = 0, 1, 2, 3
#: indices into the flags: the state, the count of tasks done, the task's three integers,
#: the request to leave the park loop, the next unclaimed chunk's start
STATE, DONE, TASK, LEAVE, NEXT = 0, 1, 2, 5, 6
FLAGS = 7

_helpers = weakref.WeakSet()
_working = None          # weak reference to the helper that took the last turn


class ParkedHelper:
    """One helper thread for one set of arrays (see the module docstring).

    ``park(flags, *args, rounds)`` is the compiled loop (it returns when idle for ``rounds``
    rounds or asked to leave), ``post(flags, a, b, c) -> bool`` the compiled claim,
    ``wait_done(flags, index, value, rounds) -> bool`` a compiled wait
    (:func:`convkit.fast.runtime.spin.wait_flag`'s kernel)."""

    def __init__(self, park, post, wait_done, args: tuple, rounds: int):
        _load(park, args)
        self.flags = np.zeros(FLAGS, np.int64)
        self._post = post
        self._wait_done = wait_done
        self._posted = 0
        self._box = {"park": park, "args": args, "rounds": int(rounds), "closed": False,
                     "wake": threading.Event()}
        self._thread = None
        weakref.finalize(self, _close, self._box, self.flags)
        _helpers.add(self)

    def post(self, a: int, b: int, c: int) -> bool:
        """Hand the parked helper the task ``(a, b, c)``; ``False`` (nothing handed over)
        when it is not parked."""
        if not self._post(self.flags, a, b, c):
            return False
        self._posted += 1
        return True

    @property
    def posted(self) -> int:
        """Tasks handed over so far (the ``done`` count to wait for after the next)."""
        return self._posted

    def claimed(self) -> None:
        """Count a task that compiled code handed over itself (a ``post`` of its own)."""
        self._posted += 1

    def wait(self) -> None:
        """Wait for the posted task's end (GIL released), also when a ``KeyboardInterrupt``
        arrives meanwhile: it is raised once the helper is done with the caller's arrays."""
        caught = None
        while True:
            try:
                if self._wait_done(self.flags, DONE, self._posted, 1 << 16):
                    break
            except KeyboardInterrupt as exc:
                caught = caught or exc
        if caught is not None:
            raise caught

    def wake(self) -> None:
        """Start the park loop (the thread is started on first use) unless it runs."""
        self.flags[LEAVE] = 0
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=_loop, args=(self._box, self.flags),
                                            name="convkit-parked", daemon=True)
            self._thread.start()
        if not self._box["wake"].is_set():
            self._box["wake"].set()

    def take_turn(self) -> None:
        """Make this the process's working helper: one that another caller used last is
        asked to leave its park loop (after its task, if one is running) and sleep, so
        that two parked helpers never spin on two cores at once (a model predicting
        batches of two sizes alternates between two chains, each with its helper: 46.5
        against 24.2 ms for 1,000 images in batches of 256 before this)."""
        global _working
        other = None if _working is None else _working()
        if other is self:
            return
        if other is not None:
            other.flags[LEAVE] = 1
        _working = weakref.ref(self)

    def replace_args(self, args: tuple) -> None:
        """New arrays for the park loop: the helper leaves its loop first (a task in flight
        ends), and parks on the new ones when woken next."""
        _load(self._box["park"], args)
        self.flags[LEAVE] = 1
        while self.flags[STATE] != AWAY:
            time.sleep(1e-5)
        self._box["args"] = args
        self.flags[LEAVE] = 0

    def close(self) -> None:
        """Leave the park loop and end the thread."""
        _close(self._box, self.flags)


def _load(park, args: tuple) -> None:
    """Compile the park loop for these arrays, or load it from numba's cache, on the calling
    thread, by a call that leaves at once (``leave`` already set). The helper thread then
    never compiles: one still inside numba's compiler when the interpreter exits takes the
    process down with it (a script ending right after its first predictions, measured: 4
    exits in 6 aborted or crashed while the kernel was not in the cache)."""
    flags = np.zeros(FLAGS, np.int64)
    flags[LEAVE] = 1
    park(flags, *args, 0)


def _close(box, flags) -> None:
    box["closed"] = True
    flags[LEAVE] = 1
    box["wake"].set()


def _loop(box, flags) -> None:
    wake = box["wake"]
    while True:
        wake.wait()
        wake.clear()
        if box["closed"]:
            return
        try:
            box["park"](flags, *box["args"], box["rounds"])
        except Exception:           # e.g. arrays the loop cannot take: never parks again,
            box["closed"] = True    # the caller runs every task itself (post -> False)
            return


def _reset_after_fork() -> None:
    """A forked child has none of the parent's threads: every helper is away."""
    for helper in list(_helpers):
        helper.flags[STATE] = AWAY
        helper._thread = None
        helper._box["wake"] = threading.Event()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
