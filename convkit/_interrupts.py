"""Ctrl-C between steps, not inside one: :func:`interrupts_deferred`.

A ``KeyboardInterrupt`` can land on any bytecode. Inside a training step that would leave
the model half-updated: some weights (or optimizer slots, or batch-norm statistics)
changed and others not. ``fit`` runs each step inside :func:`interrupts_deferred`: a first
Ctrl-C during the step is held until the step has finished, then raised, so an interrupted
``fit`` leaves the model at the last completed step, the way Keras does (an interrupt
reaches Python only between its compiled steps). A second Ctrl-C during the same step is
raised at once, for a step that takes too long (the model may then be mid-step).

Only the main thread receives signals, and only Python's default SIGINT handler is
replaced: elsewhere, or under another handler, the block runs unchanged.

>>> with interrupts_deferred():
...     update_every_weight()         # Ctrl-C here is raised after the block
"""
from __future__ import annotations

import contextlib
import signal
import threading

__all__ = ["interrupts_deferred"]


@contextlib.contextmanager
def interrupts_deferred():
    """Hold a first SIGINT until the block ends, then raise ``KeyboardInterrupt``."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    pending = []

    def hold(signum, frame):
        if pending:                      # the second one: the user means it
            raise KeyboardInterrupt
        pending.append(signum)

    signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if pending:
        raise KeyboardInterrupt
