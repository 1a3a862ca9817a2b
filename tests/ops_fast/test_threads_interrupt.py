"""Ctrl-C while the thread pool works: every chunk has ended before run_chunks raises, and
the next call is correct (no early return on a stale wake-up, no "release unlocked lock")."""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from convkit.fast.runtime import threads as _threads


def _work(out, worker_sleep):
    def work(start, stop):
        if start > 0:                      # a pool thread's chunk: still running when the
            time.sleep(worker_sleep)       # caller reaches its wait
        out[start:stop] += 1.0
    return work


def _interrupt_at(point):
    def hook(where):
        if where == point:
            raise KeyboardInterrupt
    return hook


@pytest.mark.parametrize("point", ["start", "wait"])
@pytest.mark.parametrize("worker_sleep", [0.0, 0.003])
def test_interrupt_at_a_hand_off_ends_every_chunk_first(monkeypatch, point, worker_sleep):
    monkeypatch.setenv("CONVKIT_NUM_THREADS", "2")
    for _ in range(30):
        out = np.zeros(2)
        monkeypatch.setattr(_threads, "_interrupt_hook", _interrupt_at(point))
        with pytest.raises(KeyboardInterrupt):
            _threads.run_chunks(_work(out, worker_sleep), 2)
        # the pool thread's chunk ran, once, and had ended when the interrupt arrived; the
        # caller's own chunk runs after the posts, so not when interrupted at "start"
        assert out.tolist() == ([0.0, 1.0] if point == "start" else [1.0, 1.0])
        assert all(worker.idle() for worker in _threads._workers)
        monkeypatch.setattr(_threads, "_interrupt_hook", None)
        out = np.zeros(2)
        _threads.run_chunks(_work(out, 0.003), 2)           # the next call waits for it
        assert out.tolist() == [1.0, 1.0]


def test_repeated_interrupts_while_waiting_still_wait(monkeypatch):
    """More interrupts while the caller settles: it still waits for the chunk's end."""
    monkeypatch.setenv("CONVKIT_NUM_THREADS", "2")
    landed = []

    def hook(where):
        if where in ("wait", "settle") and len(landed) < 4:
            landed.append(where)
            raise KeyboardInterrupt
    monkeypatch.setattr(_threads, "_interrupt_hook", hook)
    out = np.zeros(2)
    with pytest.raises(KeyboardInterrupt):
        _threads.run_chunks(_work(out, 0.02), 2)
    assert out.tolist() == [1.0, 1.0]
    assert landed == ["wait", "settle", "settle", "settle"]


_SIGINT_LOOP = r"""
import json, os, random, signal, threading, time
import numpy as np
from convkit.fast.runtime import threads as _threads

rng = random.Random(int(os.environ["SEED"]))
done = threading.Event()

def killer():
    while not done.is_set():
        time.sleep(rng.uniform(0.0, 0.006))
        os.kill(os.getpid(), signal.SIGINT)

def work(out):
    def chunk(start, stop):
        if start > 0:
            time.sleep(0.001)
        out[start:stop] += 1.0
    return chunk

armed = [0]             # interrupts still allowed in this call; the handler disarms itself

def handler(signum, frame):
    if armed[0] > 0:
        armed[0] -= 1
        raise KeyboardInterrupt

signal.signal(signal.SIGINT, handler)
_threads.run_chunks(work(np.zeros(2)), 2)      # start the pool (and compile the spin waits)
counts = {"calls": 0, "returned": 0, "interrupted": 0, "wrong": 0, "busy_after": 0}
threading.Thread(target=killer, daemon=True).start()
deadline = time.monotonic() + float(os.environ["SECONDS"])
while time.monotonic() < deadline and min(counts["returned"], counts["interrupted"]) < 300:
    out = np.zeros(2)
    status = "interrupted"
    try:                           # at most two interrupts per call: two levels catch them
        try:
            armed[0] = rng.choice((1, 2))
            _threads.run_chunks(work(out), 2)
            armed[0] = 0
            status = "returned"
        except KeyboardInterrupt:
            armed[0] = 0
    except KeyboardInterrupt:
        armed[0] = 0
    counts["calls"] += 1
    counts[status] += 1
    if status == "returned" and out.tolist() != [1.0, 1.0]:
        counts["wrong"] += 1
    if not all(w.idle() for w in _threads._workers):
        counts["busy_after"] += 1
done.set()
time.sleep(0.05)
for _ in range(50):                # quiet again: every call must be right
    out = np.zeros(2)
    _threads.run_chunks(work(out), 2)
    counts["wrong"] += out.tolist() != [1.0, 1.0]
print(json.dumps(counts))
"""


@pytest.mark.parametrize("spin_us", ["0", "100"])
def test_random_sigint_loop_in_a_subprocess(spin_us):
    env = dict(os.environ, CONVKIT_NUM_THREADS="2", SEED="7", SECONDS="4.0",
               CONVKIT_SPIN_US=spin_us,
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", _SIGINT_LOOP], capture_output=True,
                            text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    counts = json.loads(result.stdout.strip().splitlines()[-1])
    assert counts["interrupted"] >= 10 and counts["returned"] >= 10, counts
    assert counts["wrong"] == 0 and counts["busy_after"] == 0, counts
    assert time.monotonic() - started < 60
