"""The first training step of a fresh install: a fresh process whose numba cache is empty
(``NUMBA_CACHE_DIR`` set to a new, empty directory), importing convkit and taking one
training step of the ``make run`` job's model. Prints one JSON line: ``import_s``,
``first_step_s`` (the step, with every kernel it needs compiled), ``second_step_s``.

    python -m benchmarks.first_run              # runs the child in a fresh process
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child(threads: int = 2) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    import numpy as np  # noqa: F401  (NumPy's import is not convkit's)
    t = time.perf_counter()
    import convkit as ck
    import_s = time.perf_counter() - t
    from benchmarks import epoch, models as bm
    job = epoch._job_settings()
    (x_train, y_train), _ = ck.datasets.load_mnist()
    batch = job["batch_size"]
    model = bm.convkit_model(job["arch"], optimizer=ck.optimizers.get(job["optimizer"]))
    t = time.perf_counter()
    model.train_on_batch(x_train[:batch], y_train[:batch])
    first = time.perf_counter() - t
    t = time.perf_counter()
    model.train_on_batch(x_train[batch:2 * batch], y_train[batch:2 * batch])
    second = time.perf_counter() - t
    print(json.dumps({"import_s": import_s, "first_step_s": first, "second_step_s": second}))


def run(threads: int = 2, timeout: float = 900) -> dict:
    """One fresh process on an empty numba cache; its JSON result."""
    with tempfile.TemporaryDirectory(prefix="convkit-numba-cache-") as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache,
                   PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        code = f"from benchmarks import first_run; first_run.child({threads})"
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env=env, cwd=ROOT, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"first-run child failed:\n{proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["notice"] = proc.stderr.strip().splitlines()[-1:] if proc.stderr.strip() else []
    return result


if __name__ == "__main__":
    print(json.dumps(run()))
