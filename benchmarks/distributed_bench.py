"""convkit.distributed against local predict / fit, in the same run.

    .venv/bin/python -m benchmarks.distributed_bench            # about 2 minutes
    .venv/bin/python -m benchmarks.distributed_bench --quick    # fewer images and steps

Model: Keras's simple MNIST convnet without its Dropout (34,826 weights), on the bundled
MNIST digits. Rows:

* ``predict``: images/s of ``model.predict`` in this process, and of
  ``convkit.distributed.predict`` on a LocalCluster of 1 and 2 worker processes (one thread
  each, ``CONVKIT_NUM_THREADS=1``), the images a dask array of 1,024-image chunks persisted
  on the workers first (the time is the prediction, not the loading).
* ``fit``: samples/s of ``model.fit`` in this process and of ``convkit.distributed.fit``
  with the same global batch on 1 and 2 workers.
* per step of distributed fit: the compute one worker does (timed on a worker,
  ``train_on_batch`` on its share of the batch), the rest of the step (scheduling,
  transfers, the optimizer step on the client), and the bytes of weights and gradients per
  worker (:func:`convkit.distributed.step_bytes`).

Scaling efficiency of k workers = throughput(k) / (k * throughput(1)). Every figure is the
median of the timed repeats after one warm-up (which compiles or loads the numba kernels in
every process). ``docs/SCALING.md`` uses the per-step figures for its projection to 64
workers. Results go to ``benchmarks/distributed_results.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

BATCH = 128


def _model():
    import convkit as ck
    L = ck.layers
    ck.set_seed(0)
    model = ck.Sequential([L.Input((28, 28, 1)),
                           L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(2),
                           L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(2),
                           L.Flatten(), L.Dense(10, activation="softmax")])
    model.compile(optimizer=ck.optimizers.SGD(learning_rate=0.01),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _median_time(fn, repeats):
    fn()                                                    # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _worker_compute(batches, repeats):
    """On a worker: median seconds of one ``train_on_batch`` per share size."""
    import numpy as np
    model = _model()
    rng = np.random.default_rng(0)
    out = {}
    for b in batches:
        x = rng.random((b, 28, 28, 1), dtype=np.float32)
        y = rng.integers(0, 10, b)
        out[b] = _median_time(lambda: model.train_on_batch(x, y), repeats)
    return out


def _noop(*args):
    return None


def _cluster_costs(client, repeats) -> dict:
    """Latency and throughput of this cluster, for the projection: ``round_trip_s`` (submit
    one empty task and wait for it), ``task_s`` (each of 200 empty tasks submitted at once,
    per task), ``bandwidth_bytes_s`` (scatter 8 MB to a worker and fetch it back on the
    other, per byte)."""
    import numpy as np
    round_trip = _median_time(lambda: client.submit(_noop, pure=False).result(), 4 * repeats)

    def many():
        client.gather(client.map(_noop, range(200), pure=False))
    per_task = _median_time(many, repeats) / 200
    payload = np.ones(1 << 20)                                   # 8 MB
    workers = sorted(client.scheduler_info()["workers"])

    def move():
        future = client.scatter(payload, workers=workers[:1], hash=False)
        client.submit(np.sum, future, workers=workers[-1:], pure=False).result()
    bandwidth = 2 * payload.nbytes / _median_time(move, repeats)   # there and across
    return {"round_trip_s": round_trip, "task_s": per_task, "bandwidth_bytes_s": bandwidth}


def _client_work(repeats) -> float:
    """Seconds of the client's own share of a step: the batch's loss and metrics, the
    optimizer step from a summed gradient, and copying the weights out for the next one."""
    import numpy as np

    import convkit.distributed as ckd
    model = _model()
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, BATCH)
    y_pred = rng.random((BATCH, 10)).astype(np.float32)
    result = {"grads": [[np.full_like(w, 1e-3) for w in layer.get_weights()]
                        for layer in model.layers],
              "state": [None] * len(model.weights)}

    def work():
        penalty, reg_grads = model._regularization(with_grads=True)
        float(model.loss(y, y_pred))
        ckd._apply(model, result, reg_grads)
        for m in model.compiled_metrics:
            m.update_state(y, y_pred)
        model.get_weights()
    return _median_time(work, 5 * repeats)


def project(results: dict, batch: int, bandwidth: float, workers=(1, 2, 4, 8, 16, 32, 64)):
    """Step time and efficiency of distributed fit for ``workers`` (see docs/SCALING.md)::

        step(W)  = compute(batch / W) + fixed + (2W - 1) * task
                   + weights * (W - 1) / bandwidth                 # one holder serves the rest
                   + gradients * (ceil(log2 W) + 1) / bandwidth    # tree rounds, then the client
        compute(b) = a + c * b     (least squares over the worker's measured curve)
        fixed      = the rest of a 1-worker step minus one task (client-side work, the
                     round trips, which Dask's message batching keeps near 10 ms)
        task       = the measured cost per task of this scheduler

    efficiency(W) = (batch / step(W)) / (W * batch / step(1)) = step(1) / (W * step(W)),
    at the same global batch."""
    import math

    import numpy as np
    curve = results["worker_compute_curve_s"]
    b = np.array([int(k) for k in curve], dtype=float)
    t = np.array(list(curve.values()))
    c, a = np.polyfit(b, t, 1)
    task = results["cluster"]["task_s"]
    fixed = max(0.0, results["workers_1"]["step_rest_s"] - task)
    sizes = results["step_bytes"]

    def step(w):
        comm = (sizes["weights"] * (w - 1)
                + sizes["gradients"] * (math.ceil(math.log2(w)) + 1)) / bandwidth
        return a + c * batch / w + fixed + (2 * w - 1) * task + comm

    one = step(1)
    return [{"workers": w, "step_s": step(w), "samples_s": batch / step(w),
             "efficiency": one / (w * step(w))} for w in workers]


def run(quick: bool) -> dict:
    import dask.array as da
    import numpy as np
    from distributed import Client, LocalCluster

    import convkit as ck
    import convkit.distributed as ckd

    (x_train, y_train), _ = ck.datasets.load_mnist()
    n_predict = 4000 if quick else 12000
    x_pred = np.concatenate([x_train] * (n_predict // len(x_train)))[:n_predict]
    steps = 8 if quick else 20
    repeats = 3 if quick else 5
    n_fit = steps * BATCH
    x_fit, y_fit = x_train[:n_fit], y_train[:n_fit]

    results = {"batch": BATCH, "predict_images": n_predict, "fit_steps": steps}
    model = _model()
    results["step_bytes"] = ckd.step_bytes(model)
    results["client_work_s"] = _client_work(repeats)
    t = _median_time(lambda: model.predict(x_pred, batch_size=256), repeats)
    results["local_predict_images_s"] = n_predict / t
    t = _median_time(lambda: _model().fit(x_fit, y_fit, batch_size=BATCH, epochs=1,
                                          verbose=0, shuffle=True), repeats)
    results["local_fit_samples_s"] = n_fit / t

    for workers in (1, 2):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address="127.0.0.1:0", silence_logs=40,
                               env={"CONVKIT_NUM_THREADS": "1"})
        client = Client(cluster)
        try:
            row = {}
            x_dask = client.persist(da.from_array(x_pred, chunks=(1024, 28, 28, 1)))
            t = _median_time(lambda: ckd.predict(model, x_dask, batch_size=256,
                                                 client=client).compute(), repeats)
            row["predict_images_s"] = n_predict / t
            x_fit_dask = client.persist(da.from_array(x_fit, chunks=(n_fit // 4, 28, 28, 1)))

            def fit():
                ckd.fit(_model(), x_fit_dask, y_fit, batch_size=BATCH, epochs=1, verbose=0,
                        client=client)
            t = _median_time(fit, repeats)
            row["fit_samples_s"] = n_fit / t
            row["step_s"] = t / steps
            share = BATCH // workers
            compute = client.run(_worker_compute, [share], repeats)
            row["worker_compute_s"] = statistics.median(v[share] for v in compute.values())
            row["step_rest_s"] = row["step_s"] - row["worker_compute_s"]
            if workers == 1:
                curve = client.run(_worker_compute, [8, 16, 32, 64, 128], repeats)
                results["worker_compute_curve_s"] = {
                    str(b): statistics.median(v[b] for v in curve.values())
                    for b in (8, 16, 32, 64, 128)}
            if workers == 2:
                results["cluster"] = _cluster_costs(client, repeats)
            results[f"workers_{workers}"] = row
        finally:
            client.close()
            cluster.close()
    one, two = results["workers_1"], results["workers_2"]
    results["predict_efficiency_2"] = two["predict_images_s"] / (2 * one["predict_images_s"])
    results["fit_efficiency_2"] = two["fit_samples_s"] / (2 * one["fit_samples_s"])
    return results


def report(results: dict) -> str:
    one, two = results["workers_1"], results["workers_2"]
    local_p, local_f = results["local_predict_images_s"], results["local_fit_samples_s"]
    sizes = results["step_bytes"]
    lines = [
        f"| | local (this process) | 1 worker | 2 workers | 2 workers / local | "
        f"efficiency (2 vs 1) |",
        "|---|---:|---:|---:|---:|---:|",
        f"| predict, images/s ({results['predict_images']:,} images) | {local_p:,.0f} | "
        f"{one['predict_images_s']:,.0f} | {two['predict_images_s']:,.0f} | "
        f"{two['predict_images_s'] / local_p:.2f} | {results['predict_efficiency_2']:.2f} |",
        f"| fit, samples/s (batch {results['batch']}, {results['fit_steps']} steps) | "
        f"{local_f:,.0f} | {one['fit_samples_s']:,.0f} | {two['fit_samples_s']:,.0f} | "
        f"{two['fit_samples_s'] / local_f:.2f} | {results['fit_efficiency_2']:.2f} |",
        "",
        "| per step of distributed fit | 1 worker | 2 workers |",
        "|---|---:|---:|",
        f"| step, ms | {one['step_s'] * 1e3:.1f} | {two['step_s'] * 1e3:.1f} |",
        f"| compute on one worker (its share), ms | {one['worker_compute_s'] * 1e3:.1f} | "
        f"{two['worker_compute_s'] * 1e3:.1f} |",
        f"| rest (scheduling, transfers, optimizer), ms | {one['step_rest_s'] * 1e3:.1f} | "
        f"{two['step_rest_s'] * 1e3:.1f} |",
        f"| weights to each worker, bytes | {sizes['weights']:,} | {sizes['weights']:,} |",
        f"| gradients from each worker, bytes | {sizes['gradients']:,} | "
        f"{sizes['gradients']:,} |",
    ]
    costs = results["cluster"]
    lines += ["", f"cluster here: round trip {costs['round_trip_s'] * 1e3:.2f} ms, "
                  f"{costs['task_s'] * 1e3:.2f} ms per task, "
                  f"{costs['bandwidth_bytes_s'] / 1e6:,.0f} MB/s between processes"]
    lines += [f"client's own work per step (loss, metrics, optimizer, weights out): "
              f"{results['client_work_s'] * 1e3:.2f} ms"]
    variants = [(128, "10 Gbit/s", 1.25e9), (1024, "10 Gbit/s", 1.25e9),
                (1024, "1 Gbit/s", 1.25e8), (4096, "10 Gbit/s", 1.25e9)]
    for batch, name, bandwidth in variants:
        rows = project(results, batch, bandwidth)
        lines += ["", f"projection, global batch {batch}, {name}:",
                  "| workers | " + " | ".join(str(r["workers"]) for r in rows) + " |",
                  "|---|" + "---:|" * len(rows),
                  "| step, ms | " + " | ".join(f"{r['step_s'] * 1e3:.0f}" for r in rows)
                  + " |",
                  "| samples/s | " + " | ".join(f"{r['samples_s']:,.0f}" for r in rows)
                  + " |",
                  "| efficiency | " + " | ".join(f"{r['efficiency']:.2f}" for r in rows)
                  + " |"]
    return "\n".join(lines)


def main(argv=None):
    import warnings
    # the benchmark puts its images into the graph on purpose (da.from_array, then persist)
    warnings.filterwarnings("ignore", message="Sending large graph")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer images, steps, repeats")
    parser.add_argument("--report", metavar="JSON", help="print the tables of an earlier run")
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__),
                                                         "distributed_results.json"))
    args = parser.parse_args(argv)
    if args.report:
        with open(args.report) as f:
            print(report(json.load(f)))
        return
    results = run(args.quick)
    print(report(results))
    with open(args.output, "w") as f:
        json.dump(results, f, indent=1)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
