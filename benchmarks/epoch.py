"""Workloads 8 and 9 in a fresh process each: one epoch of the ``make run`` training job and
inference with the trained model, in convkit or in PyTorch, printing one JSON line with the
times, images/s and the process's peak RSS.

Before the timed epoch each library takes one training step on a throwaway copy of the
model, timed on its own (``first_step_s``): it carries the one-time costs (convkit loads its
compiled kernels from numba's cache, ~0.3 s; PyTorch sets up its autograd and oneDNN
state), so the epoch row measures training throughput and the cold start is reported
separately, also with the library's ``import`` before it (``import_s``, timed in the same
process; NumPy is loaded first in both): the time a fresh process takes to its first
finished step, where each library pays its start-up costs at a different moment (PyTorch
loads its libraries at import, convkit its compiled kernels at the first step). Inference
follows the epoch: one cold pass over the test images, then the median of five more."""
from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time


def main(which: str, threads: int = 2) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    import numpy as np
    t = time.perf_counter()
    import convkit as ck
    convkit_import_s = time.perf_counter() - t
    from benchmarks import models as bm

    job = _job_settings()
    (x_train, y_train), (x_test, y_test) = ck.datasets.load_mnist()
    batch = job["batch_size"]
    result = {"which": which}
    if which == "convkit":
        result["import_s"] = convkit_import_s
        # one-time costs first, on a throwaway model: the first step loads the compiled
        # kernels (numba) -- reported on its own; the epoch below is then a warm one
        warm = bm.convkit_model(job["arch"], optimizer=ck.optimizers.get(job["optimizer"]))
        t = time.perf_counter()
        warm.train_on_batch(x_train[:batch], y_train[:batch])
        result["first_step_s"] = time.perf_counter() - t
    ck_model = bm.convkit_model(job["arch"], optimizer=ck.optimizers.get(
        {"adam": "adam"}.get(job["optimizer"], job["optimizer"])))
    if hasattr(ck_model.optimizer, "learning_rate"):
        ck_model.optimizer.learning_rate = job["learning_rate"]
    if which == "convkit":
        t = time.perf_counter()
        ck_model.fit(x_train, y_train, batch_size=batch, epochs=1, verbose=0, shuffle=True)
        result["epoch_s"] = time.perf_counter() - t
        probs = _inference(result, len(x_test),
                           lambda: ck_model.predict(x_test, batch_size=256, verbose=0))
    else:
        t = time.perf_counter()
        import torch
        result["import_s"] = time.perf_counter() - t
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        F = torch.nn.functional
        ck_model.build((None, 28, 28, 1))
        model, opt = bm.torch_mirror(torch, ck_model, lr=job["learning_rate"],
                                     optimizer=job["optimizer"])
        xt = torch.from_numpy(np.ascontiguousarray(x_train.transpose(0, 3, 1, 2)))
        yt = torch.from_numpy(y_train.astype(np.int64))
        perm = torch.from_numpy(np.random.default_rng(0).permutation(len(xt)))
        # the same throwaway first step as convkit's (PyTorch's one-time costs)
        warm, warm_opt = bm.torch_mirror(torch, ck_model, lr=job["learning_rate"],
                                         optimizer=job["optimizer"])
        warm.train()
        t = time.perf_counter()
        warm_opt.zero_grad(set_to_none=True)
        F.cross_entropy(warm(xt[:batch]), yt[:batch]).backward()
        warm_opt.step()
        result["first_step_s"] = time.perf_counter() - t
        t = time.perf_counter()
        model.train()
        for start in range(0, len(xt), batch):
            idx = perm[start:start + batch]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
        result["epoch_s"] = time.perf_counter() - t
        model.eval()
        xv = torch.from_numpy(np.ascontiguousarray(x_test.transpose(0, 3, 1, 2)))

        def predict():
            with torch.no_grad():
                return torch.cat([torch.softmax(model(xv[i:i + 256]), -1)
                                  for i in range(0, len(xv), 256)]).numpy()
        probs = _inference(result, len(xv), predict)
    result["test_accuracy"] = float(np.mean(np.argmax(probs, -1) == y_test))
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


#: inference passes timed after the first (cold) one; the row reports their median
INFERENCE_REPEATS = 5


def _inference(result: dict, images: int, predict):
    """Time ``predict()`` over the test images once cold (``infer_first_images_per_s``)
    and ``INFERENCE_REPEATS`` more times (their median: ``infer_images_per_s``); return the
    first pass's probabilities. One pass takes ~0.1 s, so a single one moved by a factor of
    two between runs on a shared machine."""
    t = time.perf_counter()
    probs = predict()
    result["infer_first_images_per_s"] = images / (time.perf_counter() - t)
    rates = []
    for _ in range(INFERENCE_REPEATS):
        t = time.perf_counter()
        predict()
        rates.append(images / (time.perf_counter() - t))
    result["infer_images_per_s"] = statistics.median(rates)
    return probs


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB: ``VmHWM`` of its own address space.
    (``ru_maxrss`` would not do: Linux carries the parent's high-water mark over ``fork`` and
    ``exec``, so every child of the benchmark would report the parent's size.)"""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _job_settings() -> dict:
    """The architecture, optimizer and batch size of the ``make run`` job."""
    settings = {"arch": "mnist_convnet", "optimizer": "adam", "learning_rate": 1e-3,
                "batch_size": 128}
    try:
        from convkit import jobs
        settings.update(getattr(jobs, "BENCHMARK_SETTINGS", {}))
    except ImportError:
        pass
    return settings


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "convkit")
