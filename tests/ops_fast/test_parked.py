"""The parked helper (``convkit.fast.runtime.parked``): a thread waiting inside compiled code
takes half of a chain's fused convolution + pool stages with no GIL in the hand-off."""
import gc
import inspect
import os
import time

import numpy as np
import pytest

import convkit as ck
from convkit.fast import chain
from convkit.fast.kernels import fused
from convkit.fast.runtime import parked, spin

L = ck.layers


@pytest.fixture
def kernels():
    if not spin.usable():
        pytest.skip("requires the compiled spin-waits")
    return fused.park_kernels()


def _stage_arrays(rng, n=3, size=13, channels=32, filters=64):
    x = rng.standard_normal((n, size, size, channels)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, channels, filters)).astype(np.float32)
    bias = rng.standard_normal(filters).astype(np.float32)
    hp = (size - 2) // 2
    y = np.zeros((n, hp, hp, filters), np.float32)
    scratch = np.zeros((n, size - 2, size - 2, filters), np.float32)
    expected = ck.ops.max_pool2d(np.maximum(ck.ops.conv2d(x, kernel, bias), 0), 2)
    return x, kernel.reshape(-1, filters), bias, scratch, y, expected


def _tasks(block):
    """One stage's task row (stage 0, ReLU, 3x3, ``block`` images of scratch, images mode;
    one image per chunk; the split and the wait are the caller's)."""
    return fused.task_row(0, True, False, 3, 3, block, False, 1, 0, 0)[None]


def _parked_helper(kernels, arrays, wait=spin.wait_flag):
    """A helper over one stage's arrays (images mode, ReLU), parked."""
    park, post, _ = kernels
    helper = parked.ParkedHelper(park, post, wait,
                                 tuple((a,) for a in arrays[:5]) + (_tasks(arrays[3].shape[0]),),
                                 spin.rounds_for(1e6))
    helper.wake()
    assert _wait_state(helper, parked.PARKED)
    return helper


def _wait_state(helper, state, seconds=5.0):
    deadline = time.monotonic() + seconds
    while helper.flags[parked.STATE] != state and time.monotonic() < deadline:
        time.sleep(1e-4)
    return helper.flags[parked.STATE] == state


def test_a_posted_task_runs_on_the_helper_and_it_leaves_when_idle(kernels):
    park, post, _ = kernels
    x, w2, bias, scratch, y, expected = _stage_arrays(np.random.default_rng(0))
    tasks = _tasks(scratch.shape[0])
    helper = parked.ParkedHelper(park, post, spin.wait_flag,
                                 ((x,), (w2,), (bias,), (scratch,), (y,), tasks),
                                 spin.rounds_for(300000))  # parked long enough to be seen
    assert not helper.post(0, 0, 3)                 # not parked yet: nothing handed over
    helper.wake()
    assert _wait_state(helper, parked.PARKED)
    assert helper.post(0, 0, 3)                     # the whole task on the helper
    helper.wait()
    assert helper.flags[parked.DONE] == 1
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    assert _wait_state(helper, parked.AWAY, 10.0)   # idle for its rounds: gone to sleep
    assert not helper.post(0, 0, 3)
    helper.close()


def test_replacing_the_arrays_and_closing(kernels):
    rng = np.random.default_rng(1)
    first = _stage_arrays(rng)
    second = _stage_arrays(rng)
    tasks = _tasks(3)
    helper = _parked_helper(kernels, first)
    helper.replace_args(tuple((a,) for a in second[:5]) + (tasks,))
    assert helper.flags[parked.STATE] == parked.AWAY
    helper.wake()
    assert _wait_state(helper, parked.PARKED)
    assert helper.post(0, 1, 3)                     # images 1:3 of the new arrays
    helper.wait()
    np.testing.assert_allclose(second[4][1:], second[5][1:], rtol=1e-5, atol=1e-5)
    assert not second[4][0].any() and not first[4].any()
    thread = helper._thread
    helper.close()
    thread.join(5)
    assert not thread.is_alive()


def test_a_helper_that_is_dropped_ends_its_thread(kernels):
    helper = _parked_helper(kernels, _stage_arrays(np.random.default_rng(2)))
    thread = helper._thread
    del helper
    gc.collect()
    thread.join(5)
    assert not thread.is_alive()


def _mnist():
    ck.set_seed(0)
    return ck.Sequential([L.Input((28, 28, 1)), L.Conv2D(32, 3, activation="relu"),
                          L.MaxPooling2D(2), L.Conv2D(64, 3, activation="relu"),
                          L.MaxPooling2D(2), L.Flatten(), L.Dense(10, activation="softmax")])


def _chain_parked(model, x):
    """The model's chain's shared stages (``chain._Parked``) for inputs like ``x``."""
    chains = model.__dict__.get("_chains")
    run = None if chains is None else chains.runs.get((x.shape, x.dtype))
    if not run:
        return None
    compute = inspect.getclosurevars(run).nonlocals["compute"]
    stage = inspect.getclosurevars(compute).nonlocals["stages"][0][0]
    return inspect.getclosurevars(stage).nonlocals["parked"]


def _helper_tasks(model, x) -> int:
    shared = _chain_parked(model, x)
    if shared is None or shared.helper is None:
        return 0
    return int(shared.helper.flags[parked.DONE])


@pytest.mark.parametrize("batch", [1, 6])
def test_predict_shares_the_fused_stages_with_the_helper(kernels, batch, monkeypatch):
    monkeypatch.setattr(chain, "PARKED_MIN_BYTES", 0)
    model = _mnist()
    x = np.random.default_rng(batch).random((batch, 28, 28, 1), dtype=np.float32)
    expected = model._forward([x], training=False)[0]
    outs = []
    deadline = time.monotonic() + 60               # the park loop may compile first
    while not _helper_tasks(model, x) and time.monotonic() < deadline:
        outs.append(model.predict(x, verbose=0))
    assert _helper_tasks(model, x)                  # the helper took tasks
    shared = _chain_parked(model, x)
    assert shared.inputs[1] is shared.outputs[0]    # the second pair reads the first's output
    for out in outs:
        np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-7)
        assert not any(out is held for held in _chain_parked(model, x).outputs)  # its own
    kernel, bias = model.layers[2].get_weights()
    model.layers[2]._weights[0].value = kernel * 0.5   # a new array: the helper re-points
    new = [model.predict(x, verbose=0) for _ in range(5)]
    np.testing.assert_allclose(new[-1], model._forward([x], training=False)[0], rtol=1e-6,
                               atol=1e-7)
    assert not np.allclose(new[-1], expected)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_predicts_without_the_parents_helper(kernels):
    model = _mnist()
    x = np.random.default_rng(3).random((2, 28, 28, 1), dtype=np.float32)
    for _ in range(10):
        expected = model.predict(x, verbose=0)          # the helper parked in the parent
    pid = os.fork()
    if pid == 0:                                        # the child: exit 0 when right
        try:
            ok = all(np.allclose(model.predict(x, verbose=0), expected, atol=1e-6)
                     for _ in range(5))
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_an_interrupt_while_waiting_is_raised_after_the_task(kernels):
    """Ctrl-C during the wait: the helper's half still ends before the caller moves on."""
    arrays = _stage_arrays(np.random.default_rng(5))
    y, expected = arrays[4], arrays[5]
    calls = []

    def interrupted_wait(flags, index, value, rounds):
        calls.append(value)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return spin.wait_flag(flags, index, value, rounds)
    helper = _parked_helper(kernels, arrays, interrupted_wait)
    assert helper.post(0, 0, 3)
    with pytest.raises(KeyboardInterrupt):
        helper.wait()
    assert len(calls) >= 2 and helper.flags[parked.DONE] == 1
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    helper.close()


def test_taking_a_turn_sends_the_other_helper_to_sleep(kernels):
    """Two parked helpers never spin at once: the one a caller used last leaves its loop
    when another takes its turn, and parks again when woken."""
    first = _parked_helper(kernels, _stage_arrays(np.random.default_rng(6)))
    second = _parked_helper(kernels, _stage_arrays(np.random.default_rng(7)))
    first.take_turn()
    second.take_turn()
    assert _wait_state(first, parked.AWAY)
    assert second.flags[parked.STATE] == parked.PARKED
    first.take_turn()
    first.wake()
    assert _wait_state(first, parked.PARKED) and _wait_state(second, parked.AWAY)
    first.close()
    second.close()


def test_a_chain_ending_in_a_shared_stage_hands_out_copies(kernels, monkeypatch):
    """The last stage's output buffer is the chain's own: each predict returns a copy, so
    an earlier result is not overwritten by the next call."""
    monkeypatch.setattr(chain, "PARKED_MIN_BYTES", 0)
    ck.set_seed(4)
    model = ck.Sequential([L.Input((12, 12, 16)), L.Conv2D(32, 3, activation="relu"),
                           L.MaxPooling2D(2)])
    rng = np.random.default_rng(8)
    first, second = (rng.random((3, 12, 12, 16), dtype=np.float32) for _ in range(2))
    out_first = model.predict(first, verbose=0)
    kept = out_first.copy()
    out_second = model.predict(second, verbose=0)
    shared = _chain_parked(model, first)
    assert shared is not None and shared.outputs
    assert not any(np.shares_memory(out, buffer) for out in (out_first, out_second)
                   for buffer in shared.outputs)
    np.testing.assert_array_equal(out_first, kept)
    np.testing.assert_allclose(out_second, model._forward([second], training=False)[0],
                               rtol=1e-6, atol=1e-6)


def _shared_task(block, one_image, chunk, total):
    return fused.task_row(0, True, False, 3, 3, block, one_image, chunk, total,
                          spin.rounds_for(1e6))


def _one_image_expected(x, w2, bias):
    kernel = w2.reshape(3, 3, x.shape[3], -1)
    return ck.ops.max_pool2d(np.maximum(ck.ops.conv2d(x[:1], kernel, bias), 0), 2)


def test_a_claim_the_helper_never_takes_is_withdrawn(kernels):
    """A helper marked parked that never picks the task up (descheduled, say): the caller
    takes every chunk itself, withdraws its claim and does not wait (status 2)."""
    _, _, shared_stage = kernels
    x, w2, bias, scratch, y, expected = _stage_arrays(np.random.default_rng(9))
    flags = np.zeros(parked.FLAGS, np.int64)
    flags[parked.STATE] = parked.PARKED              # no thread behind it
    status = shared_stage(flags, _shared_task(1, False, 1, 3), 0, x, w2, bias, scratch,
                          scratch.copy(), y)
    assert status == 2 and flags[parked.STATE] == parked.PARKED and flags[parked.DONE] == 0
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    y1 = np.zeros((1, *y.shape[1:]), np.float32)       # one image, by pixel chunks
    status = shared_stage(flags, _shared_task(1, True, 8, 100), 0, x[:1], w2, bias,
                          scratch[:1], scratch[:1].copy(), y1)
    assert status == 2 and flags[parked.STATE] == parked.PARKED
    np.testing.assert_allclose(y1, _one_image_expected(x, w2, bias), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("one_image,chunk", [(False, 1), (False, 2), (True, 1), (True, 7),
                                             (True, 16), (True, 200)])
def test_both_sides_take_chunks_until_none_is_left(kernels, one_image, chunk):
    """With a parked helper, any chunk size gives the whole stage exactly once (a chunk of
    7 pixels ends between register tiles; 200 is more than the image has)."""
    _, _, shared_stage = kernels
    arrays = _stage_arrays(np.random.default_rng(10))
    x, w2, bias, scratch, y, expected = arrays
    helper = _parked_helper(kernels, arrays)
    shared = scratch.copy()
    if one_image:
        x, y, expected = x[:1], y[:1], _one_image_expected(x, w2, bias)
        total = 4 * y.shape[1] * y.shape[2]
    else:
        total = x.shape[0]
    helper.replace_args(tuple((a,) for a in (x, w2, bias, shared, y))
                        + (_shared_task(1, one_image, chunk, total)[None],))
    helper.wake()
    assert _wait_state(helper, parked.PARKED)
    statuses = []
    deadline = time.monotonic() + 5      # the helper may first have to get a core
    while len(statuses) < 20 or (1 not in statuses and chunk < total
                                 and time.monotonic() < deadline):
        y[...] = 0
        status = shared_stage(helper.flags, _shared_task(1, one_image, chunk, total),
                              helper.posted, x, w2, bias, scratch[:1], shared, y)
        statuses.append(status)
        if status == 1:
            helper.claimed()
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    helper.close()
    if chunk >= total:                   # one chunk: nothing to share, the helper stays out
        assert set(statuses) == {0}
    else:                                # the helper took part at least once
        assert set(statuses) <= {1, 2} and 1 in statuses


def test_the_park_loop_is_loaded_on_the_calling_thread(kernels):
    """The helper thread never compiles: a thread inside numba's compiler when the
    interpreter exits aborts the process. The loop is called once on the caller's thread,
    with ``leave`` set so that it returns at once, for the first arrays and for new ones."""
    import threading
    park, post, _ = kernels
    calls = []

    def recorded(flags, *rest):
        calls.append((threading.current_thread(), int(flags[parked.LEAVE])))
        return park(flags, *rest)
    arrays = _stage_arrays(np.random.default_rng(11))
    args = tuple((a,) for a in arrays[:5]) + (_tasks(3),)
    helper = parked.ParkedHelper(recorded, post, spin.wait_flag, args, spin.rounds_for(1e6))
    assert calls == [(threading.current_thread(), 1)]      # before any thread exists
    assert helper._thread is None and helper.flags[parked.STATE] == parked.AWAY
    helper.wake()
    assert _wait_state(helper, parked.PARKED)
    assert calls[1][0] is helper._thread and calls[1][1] == 0
    second = _stage_arrays(np.random.default_rng(12))
    helper.replace_args(tuple((a,) for a in second[:5]) + (_tasks(3),))
    assert calls[2] == (threading.current_thread(), 1)
    helper.close()


def test_task_row_fields_by_name():
    row = fused.task_row(4, True, True, 3, 5, 7, True, 16, 100, 9)
    assert row.dtype == np.int64 and row.shape == (fused.TASK_FIELDS,)
    assert row[fused.T_STAGE] == 4 and row[fused.T_KH] == 3 and row[fused.T_KW] == 5
    assert row[fused.T_KIND] == fused.RELU + fused.WINOGRAD
    assert (row[fused.T_BLOCK], row[fused.T_ONE_IMAGE], row[fused.T_CHUNK]) == (7, 1, 16)
    assert (row[fused.T_TOTAL], row[fused.T_ROUNDS]) == (100, 9)
    # the flags' task integers follow the state and the done count, as parked lays them out
    assert (fused.STAGE, fused.LO, fused.HI) == (parked.TASK, parked.TASK + 1, parked.TASK + 2)
    assert fused.HI < parked.LEAVE < parked.FLAGS and parked.NEXT < parked.FLAGS
