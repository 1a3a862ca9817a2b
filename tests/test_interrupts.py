"""interrupts_deferred: a first Ctrl-C waits for the end of the block, a second is at once.
(The signals are raised in this process, inside the block, where the block's own handler
takes them; tests/chaos sends real ones at random moments of fit.)"""
import signal
import threading

import pytest

from convkit._interrupts import interrupts_deferred

needs_default_handler = pytest.mark.skipif(
    signal.getsignal(signal.SIGINT) is not signal.default_int_handler,
    reason="the test runner replaced the SIGINT handler")


@needs_default_handler
def test_a_first_interrupt_is_raised_after_the_block():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            signal.raise_signal(signal.SIGINT)
            done.append("rest of the step")
    assert done == ["rest of the step"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@needs_default_handler
def test_a_second_interrupt_is_raised_at_once():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
            done.append("never")
    assert done == [] and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_outside_the_main_thread_the_block_runs_unchanged():
    seen = []

    def work():
        with interrupts_deferred():
            seen.append(signal.getsignal(signal.SIGINT))
    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == [signal.getsignal(signal.SIGINT)]


@needs_default_handler
def test_an_error_in_the_block_restores_the_handler():
    with pytest.raises(ZeroDivisionError):
        with interrupts_deferred():
            1 / 0
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
