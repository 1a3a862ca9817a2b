"""Out of core on one machine: convkit.distributed.predict over a 100,000-image uint8 file
(78 MB on disk, 314 MB as float32), as a dask array (from_memmap) and as a NumPy memmap,
reads and converts one chunk at a time; peak memory is measured in a fresh subprocess."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("dask.array")

N_IMAGES = 100_000
IMAGE_SHAPE = (28, 28, 1)
#: bound on the growth of anonymous memory (the process's own arrays) during the prediction
ANON_BOUND_MB = 64

_SCRIPT = textwrap.dedent("""
    import json, resource, sys, threading, time
    import numpy as np
    import dask, dask.array as da
    import convkit as ck
    import convkit.distributed as ckd

    def rss_kb(field):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    path, n = sys.argv[1], int(sys.argv[2])
    L = ck.layers
    ck.set_seed(0)
    model = ck.Sequential([L.Input((28, 28, 1)), L.MaxPooling2D(4), L.Flatten(),
                           L.Dense(10, activation="softmax")])
    images = np.memmap(path, dtype=np.uint8, mode="r", shape=(n, 28, 28, 1))
    model.predict(np.asarray(images[:256]), batch_size=256)          # warm up the kernels

    def predict_measured(x):
        # predictions for x, and the growth of anonymous memory (MiB) at its peak
        base = rss_kb("RssAnon")
        peak = [base]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], rss_kb("RssAnon"))
                time.sleep(0.005)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        with dask.config.set(scheduler="synchronous"):
            probs = ckd.predict(model, x, batch_size=256).compute()
        done.set()
        sampler.join()
        return probs, (max(peak[0], rss_kb("RssAnon")) - base) / 1024

    base_max = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    probs, from_dask = predict_measured(ckd.from_memmap(path, shape=(n, 28, 28, 1),
                                                        dtype=np.uint8, chunk_rows=4096))
    again, from_memmap = predict_measured(images)
    check = model.predict(np.asarray(images[-3000:]).astype(np.float32), batch_size=256)
    print(json.dumps({
        "shape": list(probs.shape),
        "tail_equal": bool(np.array_equal(probs[-3000:], check)),
        "same_both_ways": bool(np.array_equal(probs, again)),
        "anon_growth_mb": max(from_dask, from_memmap),
        "maxrss_growth_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_max)
                            / 1024}))
""")


def test_predict_on_a_100k_uint8_memmap_in_bounded_memory(tmp_path):
    path = tmp_path / "images.u8"
    rng = np.random.default_rng(0)
    with open(path, "wb") as f:                   # written in pieces, never whole in memory
        for start in range(0, N_IMAGES, 10_000):
            f.write(rng.integers(0, 256, (10_000,) + IMAGE_SHAPE, dtype=np.uint8).tobytes())
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    done = subprocess.run([sys.executable, "-c", _SCRIPT, str(path), str(N_IMAGES)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["shape"] == [N_IMAGES, 10] and report["tail_equal"]
    assert report["same_both_ways"]
    float32_copy_mb = N_IMAGES * np.prod(IMAGE_SHAPE) * 4 / 2**20      # 299 MiB
    file_mb = N_IMAGES * np.prod(IMAGE_SHAPE) / 2**20                  # 75 MiB
    assert report["anon_growth_mb"] < ANON_BOUND_MB < float32_copy_mb, report
    # the file's pages count in RSS while mapped; still far below a float32 copy
    assert report["maxrss_growth_mb"] < file_mb + ANON_BOUND_MB, report
