"""convkit.distributed.fit survives a worker process killed mid-epoch (kept in its own module
so that it runs after the others on the shared cluster)."""
import os
import signal

import pytest

import convkit as ck

from .conftest import small_convnet, toy_data
from .test_fit import _Counter, _max_relative

da = pytest.importorskip("dask.array")
ckd = pytest.importorskip("convkit.distributed")


def test_worker_killed_mid_epoch(two_workers):
    """A worker process is killed (SIGKILL) after step 4 of 10 in the first epoch; Dask
    recomputes its chunks and reschedules its share, and the run finishes every step with
    the same weights as single-process fit."""
    x, y = toy_data(160, dtype="float64")
    local, remote = small_convnet("float64"), small_convnet("float64")
    local.fit(x, y, batch_size=16, epochs=2, verbose=0)
    pids = two_workers.run(os.getpid)
    victim = sorted(pids.values())[0]
    counter = _Counter()

    def kill(batch, logs):
        if counter.batches == 4:
            os.kill(victim, signal.SIGKILL)

    history = ckd.fit(remote, da.from_array(x, chunks=40), y, batch_size=16, epochs=2,
                      verbose=0, client=two_workers,
                      callbacks=[counter, ck.callbacks.LambdaCallback(on_train_batch_end=kill)])
    assert counter.batches == 20 and len(history.history["loss"]) == 2
    assert victim not in two_workers.run(os.getpid).values()
    assert _max_relative(local.get_weights(), remote.get_weights()) < 1e-10
