"""Inference against onnxruntime on the same model, in the same process: the ``make run``
job's MNIST convnet (random weights, built as the job builds it) exported with
:func:`convkit.io.onnx_export.export_onnx`, then ``model.predict`` (and ``model(x)``) and an
onnxruntime session on the same images at batch 1, 32 and 1000, alternated, the median of
the repeats. Each group of repeats starts after :data:`IDLE_S` of sleep: both libraries
keep threads spinning for a while after a call (onnxruntime's pool by default, convkit's
inference helper for 300 us), and a group that starts while the other library's threads
still spin shares the two cores with them (convkit's batch-32 ``predict`` right after
onnxruntime's group: 1.43 against 0.74-0.77 ms). Prints one JSON line per batch size
(milliseconds per call, the ratio convkit / onnxruntime, the largest difference between the
two results).

    python -m benchmarks.inference
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

BATCHES = (1, 32, 1000)
#: seconds of sleep before each group of timed calls
IDLE_S = 0.05


def _median_ms(fn, repeats: int) -> float:
    time.sleep(IDLE_S)               # the other library's spinning threads go to sleep
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def run(threads: int = 2, repeats: int = 50) -> list[dict]:
    import onnxruntime as ort

    import convkit as ck
    from benchmarks import epoch, models as bm
    job = epoch._job_settings()
    model = bm.convkit_model(job["arch"], optimizer=ck.optimizers.get(job["optimizer"]))
    model.build((None, 28, 28, 1))
    rng = np.random.default_rng(0)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        ck.io.onnx_export.export_onnx(model, path)
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    rows = []
    for batch in BATCHES:
        x = rng.random((batch, 28, 28, 1), dtype=np.float32)
        ck_predict = lambda: model.predict(x, batch_size=batch, verbose=0)  # noqa: E731
        ck_call = lambda: model(x)                                          # noqa: E731
        ort_run = lambda: session.run(None, {name: x})[0]                   # noqa: E731
        for fn in (ck_predict, ck_call, ort_run):                           # warm-up
            fn(), fn()
        # batch 1: more calls, so that the first few after the idle gap do not set the median
        reps = max(5, repeats * 4 if batch == 1 else repeats if batch < 1000 else repeats // 10)
        t_predict, t_call, t_ort = [], [], []
        for _ in range(3):                                                  # alternated
            t_predict.append(_median_ms(ck_predict, reps))
            t_call.append(_median_ms(ck_call, reps))
            t_ort.append(_median_ms(ort_run, reps))
        ref = ort_run()
        err = float(np.max(np.abs(ck_predict() - ref)) / max(np.max(np.abs(ref)), 1e-30))
        predict_ms, call_ms, ort_ms = (min(t) for t in (t_predict, t_call, t_ort))
        rows.append({"batch": batch, "predict_ms": predict_ms, "call_ms": call_ms,
                     "onnxruntime_ms": ort_ms, "ratio_predict": predict_ms / ort_ms,
                     "ratio_call": call_ms / ort_ms, "rel_err": err})
    return rows


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for row in run():
        print(json.dumps(row))
