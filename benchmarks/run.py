"""Side-by-side timings: convkit against PyTorch on the CPU, in the same run.

    python -m benchmarks.run                 # every workload, 2 threads
    python -m benchmarks.run --only conv3x3  # workloads whose name contains a word
    python -m benchmarks.run --quick         # fewer repeats

For each workload it prints convkit's median time, PyTorch's median time from the same run
(interleaved, after warm-up), the ratio convkit/torch (below 1.0 means convkit is faster),
convkit's GFLOP/s and its share of the float32 GEMM peak measured at start, and the largest
relative difference between the two results. Without torch installed it prints convkit's
figures and the peak only. Results also go to a JSON file (``--json``).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time


def _set_threads(n: int) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "CONVKIT_NUM_THREADS"):
        os.environ[var] = str(n)


if __name__ == "__main__":  # threads must be fixed before NumPy loads its BLAS
    # Idle OpenMP workers sleep instead of spinning: with the two libraries' calls
    # interleaved on few cores, PyTorch's spinning workers would otherwise take the cores
    # from convkit's next call (convkit's own times nearly double; PyTorch's do not change).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    _threads = 2
    for i, arg in enumerate(sys.argv):
        if arg == "--threads" and i + 1 < len(sys.argv):
            _threads = int(sys.argv[i + 1])
    _set_threads(_threads)

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


# --------------------------------------------------------------------------- helpers
def load_torch(threads: int):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch


def gemm_peak(size: int = 2048, repeats: int = 5) -> float:
    """Best float32 matmul GFLOP/s NumPy reaches on this machine (the practical peak)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    out = np.empty_like(a)
    np.matmul(a, b, out=out)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - t)
    return 2 * size ** 3 / best / 1e9


def blas_description() -> str:
    """NumPy's BLAS as threadpoolctl sees it, with the kernels it chose: OpenBLAS picks its
    kernels per CPU at load time, and ``OPENBLAS_CORETYPE`` in the environment overrides
    the choice (set to ``Haswell``, a CPU with AVX-512 runs OpenBLAS's AVX2 kernels, about
    half the float32 peak of its AVX-512 ones), which moves every row of the NumPy path that
    is a matrix product."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl not installed)"
    for lib in threadpool_info():
        if lib.get("user_api") == "blas":
            text = f"{lib.get('internal_api')} {lib.get('version')}"
            if lib.get("architecture"):
                text += f" ({lib['architecture']} kernels"
                forced = os.environ.get("OPENBLAS_CORETYPE")
                text += f", OPENBLAS_CORETYPE={forced})" if forced else ")"
            return text
    return "none found"


def _numba_version():
    try:
        import numba
    except ImportError:
        return None
    return numba.__version__


def rel_err(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


#: seconds of timed calls per library and row, at the least: a short row (a pooling call
#: takes half a millisecond) gets more repeats, so that its median does not rest on a few
#: milliseconds of a shared machine
MIN_TIMED_SECONDS = 0.15
#: the most repeats a short row gets
MAX_REPEATS = 61


def interleaved(fn_a, fn_b, repeats: int, warmup: int = 2, min_seconds: float = 0.0):
    """Median seconds of two callables, run alternately after warm-up (fn_b may be None).

    With ``min_seconds``, the warm-up's slower call sets the repeats: at least ``repeats``,
    enough for ``min_seconds`` of timed calls of each, at most :data:`MAX_REPEATS`."""
    slowest = 0.0
    for _ in range(warmup):
        t = time.perf_counter()
        fn_a()
        slowest = max(slowest, time.perf_counter() - t)
        if fn_b is not None:
            t = time.perf_counter()
            fn_b()
            slowest = max(slowest, time.perf_counter() - t)
    if min_seconds > 0 and slowest > 0:
        repeats = max(repeats, min(MAX_REPEATS, math.ceil(min_seconds / slowest)))
    times_a, times_b = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        fn_a()
        times_a.append(time.perf_counter() - t)
        if fn_b is not None:
            t = time.perf_counter()
            fn_b()
            times_b.append(time.perf_counter() - t)
    return statistics.median(times_a), (statistics.median(times_b) if times_b else None)


def conv_flops(n, ho, wo, kh, kw, cin_per_group, cout) -> float:
    return 2.0 * n * ho * wo * kh * kw * cin_per_group * cout


# --------------------------------------------------------------------------- workloads
#: largest relative difference from PyTorch's result (max |a - b| / max |b|) accepted for a
#: float32 row; a row above its bound prints MISMATCH and the run exits with status 1
REL_ERR_BOUND = 1e-4
#: the bound of the rows that take Winograd F(4x4, 3x3) (tested in tests/ops)
WINOGRAD_REL_ERR_BOUND = 2e-5


class Workload:
    """One row of the table: a convkit callable, an optional torch callable, the FLOPs of one
    call, the two results to compare and the largest relative difference accepted."""

    def __init__(self, name, ck_fn, torch_fn=None, flops=None, results=None, repeats=7,
                 bound=REL_ERR_BOUND):
        self.name, self.ck_fn, self.torch_fn = name, ck_fn, torch_fn
        self.flops, self.results, self.repeats = flops, results, repeats
        self.bound = bound


def _torch_conv_fns(torch, x, k, b, stride, pad_torch, groups, dilation=1):
    """Forward and backward callables in PyTorch, NCHW and channels_last; keeps the faster.
    ``pad_torch`` is (top, bottom, left, right) applied with F.pad when asymmetric."""
    F = torch.nn.functional
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    wt = torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1)))
    bt = torch.from_numpy(b) if b is not None else None
    top, bottom, left, right = pad_torch
    symmetric = top == bottom and left == right
    variants = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        xv = xt.contiguous(memory_format=fmt)
        wv = wt.contiguous(memory_format=fmt)
        if symmetric:
            def fwd(xv=xv, wv=wv):
                with torch.no_grad():
                    return F.conv2d(xv, wv, bt, stride, (top, left), dilation, groups)
            xpad = xv
            pad_arg = (top, left)
        else:
            def fwd(xv=xv, wv=wv):
                with torch.no_grad():
                    return F.conv2d(F.pad(xv, (left, right, top, bottom)), wv, bt, stride, 0,
                                    dilation, groups)
            xpad = F.pad(xv, (left, right, top, bottom)).contiguous(memory_format=fmt)
            pad_arg = (0, 0)
        y = fwd()
        dy = torch.ones_like(y).contiguous(memory_format=fmt) * 0.01

        def bwd(xpad=xpad, wv=wv, dy=dy, pad_arg=pad_arg):
            return torch.ops.aten.convolution_backward(
                dy, xpad, wv, [wv.shape[0]] if bt is not None else None,
                [stride, stride], list(pad_arg), [dilation, dilation], False, [0, 0], groups,
                [True, True, bt is not None])
        variants.append((fwd, bwd))
    return variants


def conv_workloads(torch, rng, name, n, h, w, cin, cout, ksize, stride, padding, groups=1,
                   activation=None, backward=True, ck_padding_for_torch=None, repeats=7):
    """Forward (and backward) workloads of one convolution shape."""
    import convkit as ck
    from convkit.ops.conv import conv_plan
    from convkit.shapes import window_geometry
    x = rng.standard_normal((n, h, w, cin), dtype=np.float32)
    k = (rng.standard_normal((ksize, ksize, cin // groups, cout), dtype=np.float32)
         / np.sqrt(ksize * ksize * cin / groups)).astype(np.float32)
    b = rng.standard_normal(cout, dtype=np.float32) * 0.1
    geo = window_geometry((h, w), ksize, stride, padding)
    (top, bottom), (left, right) = geo.pads
    ho, wo = geo.out_hw
    flops = conv_flops(n, ho, wo, ksize, ksize, cin // groups, cout)

    def ck_fwd():
        y = ck.ops.conv2d(x, k, b, strides=stride, padding=padding, groups=groups)
        if activation == "relu":
            np.maximum(y, 0, out=y)
        return y

    dy = np.full((n, ho, wo, cout), 0.01, dtype=np.float32)

    def ck_bwd():
        return ck.ops.conv2d_backward(dy, x, k, strides=stride, padding=padding, groups=groups)

    t_fwd = t_bwd = None
    results_fwd = results_bwd = None
    plan = conv_plan(x.shape, k.shape, strides=stride, padding=padding, groups=groups)
    bound = WINOGRAD_REL_ERR_BOUND if plan == "winograd" else REL_ERR_BOUND
    if torch is not None:
        variants = _torch_conv_fns(torch, x, k, b, stride, (top, bottom, left, right), groups)
        # keep the faster memory format for each direction
        best_f, best_b = None, None
        for fwd, bwd in variants:
            tf = min(_time_once(fwd) for _ in range(3))
            tb = min(_time_once(bwd) for _ in range(3))
            if best_f is None or tf < best_f[0]:
                best_f = (tf, fwd)
            if best_b is None or tb < best_b[0]:
                best_b = (tb, bwd)
        if activation == "relu":
            t_fwd = lambda f=best_f[1]: torch.relu_(f())  # noqa: E731
        else:
            t_fwd = best_f[1]
        t_bwd = best_b[1]
        ref_y = t_fwd().permute(0, 2, 3, 1).numpy()
        results_fwd = (ck_fwd(), ref_y)
        dx_t, dw_t, _ = t_bwd()
        dx_ck, dk_ck, _ = ck_bwd()
        if (top, bottom, left, right) != (0, 0, 0, 0) and top == bottom and left == right:
            dx_ref = dx_t.permute(0, 2, 3, 1).numpy()
        elif (top, bottom, left, right) == (0, 0, 0, 0):
            dx_ref = dx_t.permute(0, 2, 3, 1).numpy()
        else:  # torch saw the padded input: crop its gradient
            dx_ref = dx_t.permute(0, 2, 3, 1).numpy()[:, top:top + h, left:left + w]
        results_bwd = (np.concatenate([dx_ck.ravel(), dk_ck.ravel()]),
                       np.concatenate([dx_ref.ravel(), dw_t.permute(2, 3, 1, 0).numpy().ravel()]))
    out = [Workload(f"{name} forward", ck_fwd, t_fwd, flops, results_fwd, repeats, bound)]
    if backward:
        out.append(Workload(f"{name} backward", ck_bwd, t_bwd, 2 * flops, results_bwd, repeats,
                            bound))
    return out


def _time_once(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def pool_workloads(torch, rng, repeats=9):
    """Max and average pooling 2x2 at 128x28x28x32. The max-pool backward row gives each
    library its own forward's indices (``return_argmax`` / ``return_indices``); the extra
    "winners from x" row makes both find the winners again (convkit's one-pass kernel
    against PyTorch's forward with indices followed by its backward)."""
    import convkit as ck
    n, h, w, c = 128, 28, 28, 32
    x = rng.permutation(n * h * w * c).astype(np.float32).reshape(n, h, w, c) / (n * h * w * c)
    dy = rng.standard_normal((n, h // 2, w // 2, c), dtype=np.float32)
    _, ck_argmax = ck.ops.max_pool2d(x, 2, return_argmax=True)
    out = []
    for kind in ("max", "avg"):
        fwd_op = getattr(ck.ops, f"{kind}_pool2d")
        bwd_op = getattr(ck.ops, f"{kind}_pool2d_backward")
        ck_f = lambda f=fwd_op: f(x, 2)  # noqa: E731
        if kind == "max":
            ck_b = lambda f=bwd_op: f(dy, x, 2, argmax=ck_argmax)  # noqa: E731
            ck_r = lambda f=bwd_op: f(dy, x, 2)  # noqa: E731
        else:
            ck_b = lambda f=bwd_op: f(dy, x, 2)  # noqa: E731
        t_f = t_b = t_r = None
        res_f = res_b = res_r = None
        if torch is not None:
            F = torch.nn.functional
            best = None
            for fmt in (torch.contiguous_format, torch.channels_last):
                xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))) \
                    .contiguous(memory_format=fmt)
                dyt = torch.from_numpy(np.ascontiguousarray(dy.transpose(0, 3, 1, 2))) \
                    .contiguous(memory_format=fmt)
                r = None
                if kind == "max":
                    def f(xt=xt):
                        with torch.no_grad():
                            return F.max_pool2d(xt, 2)
                    _, idx = F.max_pool2d(xt, 2, return_indices=True)

                    def b(xt=xt, dyt=dyt, idx=idx):
                        return torch.ops.aten.max_pool2d_with_indices_backward(
                            dyt, xt, [2, 2], [2, 2], [0, 0], [1, 1], False, idx)

                    def r(xt=xt, dyt=dyt):      # find the winners again, then scatter
                        with torch.no_grad():
                            _, fresh = F.max_pool2d(xt, 2, return_indices=True)
                        return torch.ops.aten.max_pool2d_with_indices_backward(
                            dyt, xt, [2, 2], [2, 2], [0, 0], [1, 1], False, fresh)
                else:
                    def f(xt=xt):
                        with torch.no_grad():
                            return F.avg_pool2d(xt, 2)

                    def b(xt=xt, dyt=dyt):
                        return torch.ops.aten.avg_pool2d_backward(
                            dyt, xt, [2, 2], [2, 2], [0, 0], False, True, None)
                cost = min(_time_once(f) for _ in range(3)) + min(_time_once(b) for _ in range(3))
                if best is None or cost < best[0]:
                    best = (cost, f, b, r)
            _, t_f, t_b, t_r = best
            res_f = (ck_f(), t_f().permute(0, 2, 3, 1).numpy())
            res_b = (ck_b(), t_b().permute(0, 2, 3, 1).numpy())
            if t_r is not None:
                res_r = (ck_r(), t_r().permute(0, 2, 3, 1).numpy())
        out.append(Workload(f"{kind} pool 2x2, 128x28x28x32 forward", ck_f, t_f, None, res_f,
                            repeats))
        out.append(Workload(f"{kind} pool 2x2, 128x28x28x32 backward", ck_b, t_b, None, res_b,
                            repeats))
        if kind == "max":
            out.append(Workload("max pool 2x2 backward, winners from x", ck_r, t_r, None,
                                res_r, repeats))
    return out


def train_step_workloads(torch, rng, repeats=7):
    from benchmarks import models as bm
    out = []
    for arch in ("mnist_convnet", "lenet5"):
        x = rng.random((128, 28, 28, 1), dtype=np.float32)
        y = rng.integers(0, 10, 128)
        ck_model = bm.convkit_model(arch, lr=0.01)
        ck_model.train_on_batch(x, y)  # builds it
        ck_fn = lambda m=ck_model: m.train_on_batch(x, y)  # noqa: E731
        t_fn = None
        res = None
        flops = bm.train_flops(ck_model, 128)
        if torch is not None:
            # mirror the weights before convkit's warm-up step changes them
            probe = x[:32]
            fresh = bm.convkit_model(arch, lr=0.01)
            fresh.build((None, 28, 28, 1))
            res = (fresh.predict(probe, batch_size=32, verbose=0),
                   bm.torch_predict(torch, fresh, probe))
            t_fn, _, _ = bm.torch_step_fns(torch, fresh, x, y, lr=0.01)
        out.append(Workload(f"train step {arch}, batch 128", ck_fn, t_fn, flops, res, repeats))
    return out


# --------------------------------------------------------------------------- the table
def build_workloads(torch, quick: bool = False, only: str | None = None) -> list[Workload]:
    """Every row of the table (those whose name contains ``only``), built under the current
    backend (:func:`convkit.fast.set_backend`); the same seed gives the same data."""
    rng = np.random.default_rng(0)
    reps = 3 if quick else 11
    workloads: list[Workload] = []
    builders = [
        lambda: conv_workloads(torch, rng, "seed 7x7 conv+relu, 2x427x640x3->2 same",
                               2, 427, 640, 3, 2, 7, 1, "same", activation="relu",
                               backward=False, repeats=reps),
        lambda: train_step_workloads(torch, rng, repeats=reps),
        lambda: conv_workloads(torch, rng, "conv3x3 8x56x56x64->64 same", 8, 56, 56, 64, 64,
                               3, 1, "same", repeats=reps),
        lambda: conv_workloads(torch, rng, "conv3x3 s2 8x56x56x64->128 pad 1", 8, 56, 56, 64,
                               128, 3, 2, 1, repeats=reps),
        lambda: conv_workloads(torch, rng, "conv1x1 8x56x56x64->128", 8, 56, 56, 64, 128, 1,
                               1, "valid", repeats=reps),
        lambda: conv_workloads(torch, rng, "depthwise3x3 8x56x56x128 same", 8, 56, 56, 128,
                               128, 3, 1, "same", groups=128, repeats=reps),
        lambda: pool_workloads(torch, rng, repeats=reps + 2),
    ]
    for build in builders:
        try:
            rows = build()
        except Exception as exc:  # a missing feature should not hide the other rows
            print(f"  (workload skipped: {type(exc).__name__}: {exc})")
            continue
        workloads.extend(w for w in rows if not only or only in w.name)
    return workloads


def time_workloads(workloads: list[Workload], quick: bool = False) -> list[dict]:
    """Each row timed against PyTorch (interleaved medians) and its results compared."""
    results = []
    for wl in workloads:
        t_ck, t_torch = interleaved(wl.ck_fn, wl.torch_fn, wl.repeats,
                                    min_seconds=0.0 if quick else MIN_TIMED_SECONDS)
        gflops = wl.flops / t_ck / 1e9 if wl.flops else None
        err = rel_err(*wl.results) if wl.results is not None else None
        results.append({"workload": wl.name, "convkit_ms": t_ck * 1e3,
                        "torch_ms": t_torch * 1e3 if t_torch else None,
                        "ratio": t_ck / t_torch if t_torch else None,
                        "gflops": gflops, "rel_err": err, "rel_err_bound": wl.bound,
                        "mismatch": bool(err is not None and not err <= wl.bound)})
    return results


# --------------------------------------------------------------------------- subprocess rows
def _child(code: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def import_times(with_torch: bool, repeats: int = 3) -> dict:
    code = ("import time, json; t = time.perf_counter(); import {m}; "
            "print(json.dumps({{'s': time.perf_counter() - t}}))")
    out = {"convkit": [], "torch": []}
    for _ in range(repeats):
        out["convkit"].append(_child(code.format(m="convkit, convkit.layers, convkit.models"))["s"])
        if with_torch:
            out["torch"].append(_child(code.format(m="torch"))["s"])
    return {k: (statistics.median(v) if v else None) for k, v in out.items()}


def epoch_runs(with_torch: bool, threads: int, repeats: int = 2) -> dict:
    code = (f"from benchmarks import epoch; epoch.main({{which!r}}, {threads})")
    rows = {"convkit": [], "torch": []}
    for _ in range(repeats):
        rows["convkit"].append(_child(code.format(which="convkit")))
        if with_torch:
            rows["torch"].append(_child(code.format(which="torch")))
    summary = {}
    for which, runs in rows.items():
        if not runs:
            continue
        summary[which] = {
            "epoch_s": statistics.median(r["epoch_s"] for r in runs),
            "infer_images_per_s": statistics.median(r["infer_images_per_s"] for r in runs),
            "infer_first_images_per_s": statistics.median(r["infer_first_images_per_s"]
                                                          for r in runs),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
            "first_step_s": statistics.median(r["first_step_s"] for r in runs),
            "import_s": statistics.median(r["import_s"] for r in runs),
            "cold_start_s": statistics.median(r["import_s"] + r["first_step_s"] for r in runs),
            "test_accuracy": runs[-1].get("test_accuracy"),
        }
    return summary


# --------------------------------------------------------------------------- main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", default=None, help="run workloads whose name contains this")
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--no-torch", action="store_true", help="convkit figures only")
    parser.add_argument("--skip-epoch", action="store_true",
                        help="skip the epoch, inference and import rows")
    parser.add_argument("--json", default=os.path.join(HERE, "results.json"))
    args = parser.parse_args(argv)
    _set_threads(args.threads)
    sys.path.insert(0, ROOT)

    torch = None if args.no_torch else load_torch(args.threads)
    started = time.perf_counter()
    peak = gemm_peak()
    info = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(), "numpy": np.__version__,
        "torch": getattr(torch, "__version__", None), "threads": args.threads,
        "gemm_peak_gflops": round(peak, 1), "blas": blas_description(),
    }
    import convkit
    from convkit.fast import kernels as accel
    info["convkit"] = convkit.__version__
    info["numba"] = _numba_version() if accel.enabled() else None
    info["load_average"] = [round(v, 2) for v in os.getloadavg()]
    print(f"convkit {info['convkit']} | numpy {info['numpy']} | numba {info['numba']} | "
          f"torch {info['torch']} | {args.threads} threads | float32 GEMM peak at start "
          f"{peak:.1f} GFLOP/s | load average {info['load_average']}")
    print(f"NumPy's BLAS: {info['blas']}")

    workloads = build_workloads(torch, quick=args.quick, only=args.only)
    results = time_workloads(workloads, quick=args.quick)
    # the cores are shared with other work: the peak is measured again after the timed
    # workloads and the better of the two is the reference for %peak
    peak = max(peak, gemm_peak())
    info["gemm_peak_gflops"] = round(peak, 1)
    print(f"float32 GEMM peak (best of start and end): {peak:.1f} GFLOP/s")
    header = (f"{'workload':<44} {'convkit ms':>10} {'torch ms':>9} {'ratio':>6} "
              f"{'GFLOP/s':>8} {'%peak':>6} {'rel err':>8}")
    print(header)
    print("-" * len(header))
    for row in results:
        row["pct_peak"] = 100 * row["gflops"] / peak if row["gflops"] else None
        print(_format_row(row))

    extra = {}
    if not args.skip_epoch and (not args.only or "epoch" in args.only):
        try:
            ep = epoch_runs(torch is not None, args.threads, repeats=1 if args.quick else 2)
            extra["epoch"] = ep
            ck_e, t_e = ep.get("convkit"), ep.get("torch")
            row = {"workload": "epoch of the make-run job (4,000 MNIST, warm)",
                   "convkit_ms": ck_e["epoch_s"] * 1e3,
                   "torch_ms": t_e["epoch_s"] * 1e3 if t_e else None,
                   "ratio": ck_e["epoch_s"] / t_e["epoch_s"] if t_e else None,
                   "gflops": None, "pct_peak": None, "rel_err": None}
            results.append(row)
            print(_format_row(row))
            ck_i = ck_e["infer_images_per_s"]
            t_i = t_e["infer_images_per_s"] if t_e else None
            row = {"workload": "inference of the trained model (images/s)",
                   "convkit_ms": None, "torch_ms": None,
                   "ratio": t_i / ck_i if t_i else None, "gflops": None, "pct_peak": None,
                   "rel_err": None, "convkit_images_per_s": ck_i, "torch_images_per_s": t_i}
            results.append(row)
            print(f"{'inference (images/s, ratio = torch/convkit)':<44} {ck_i:>10.0f} "
                  f"{(t_i or float('nan')):>9.0f} {row['ratio'] or float('nan'):>6.2f}")
            ck_c = ck_e["infer_first_images_per_s"]
            t_c = t_e["infer_first_images_per_s"] if t_e else None
            print(f"{'  first (cold) inference pass, images/s':<44} {ck_c:>10.0f} "
                  f"{(t_c or float('nan')):>9.0f}")
            # a fresh process: import, then the first step (each library's one-time costs
            # fall in one or the other), and the first step on its own
            for name, key in (("import + first training step, fresh (ms)", "cold_start_s"),
                              ("  the first training step alone (ms)", "first_step_s")):
                row = {"workload": name, "convkit_ms": ck_e[key] * 1e3,
                       "torch_ms": t_e[key] * 1e3 if t_e else None,
                       "ratio": ck_e[key] / t_e[key] if t_e else None,
                       "gflops": None, "pct_peak": None, "rel_err": None}
                results.append(row)
                print(_format_row(row))
            print(f"{'peak RSS of the epoch run (MB)':<44} {ck_e['peak_rss_mb']:>10.0f} "
                  f"{(t_e['peak_rss_mb'] if t_e else float('nan')):>9.0f}")
        except Exception as exc:
            print(f"  (epoch workload skipped: {type(exc).__name__}: {exc})")
        try:
            # a fresh install: an empty numba cache (the NumPy code serves while the kernels
            # compile in the background; see convkit/fast/runtime/compiling.py)
            from benchmarks import first_run
            fr = first_run.run(args.threads)
            extra["first_run"] = fr
            for name, key in (("fresh install: first training step, empty numba cache (ms)",
                               "first_step_s"),
                              ("  ... the second step, kernels still compiling (ms)",
                               "second_step_s")):
                row = {"workload": name, "convkit_ms": fr[key] * 1e3, "torch_ms": None,
                       "ratio": None, "gflops": None, "pct_peak": None, "rel_err": None}
                results.append(row)
                print(_format_row(row))
        except Exception as exc:
            print(f"  (first-run timing skipped: {type(exc).__name__}: {exc})")
        try:
            # inference against onnxruntime on the same exported model, same process
            from benchmarks import inference
            rows = inference.run(args.threads, repeats=10 if args.quick else 50)
            extra["inference_vs_onnxruntime"] = rows
            for r in rows:
                row = {"workload": f"predict vs onnxruntime, MNIST convnet, batch {r['batch']}",
                       "convkit_ms": r["predict_ms"], "torch_ms": None,
                       "ratio": r["ratio_predict"], "gflops": None, "pct_peak": None,
                       "rel_err": r["rel_err"], "onnxruntime_ms": r["onnxruntime_ms"],
                       "call_ms": r["call_ms"]}
                results.append(row)
                print(_format_row(row) + f"   (onnxruntime {r['onnxruntime_ms']:.3f} ms, "
                      f"model(x) {r['call_ms']:.3f} ms)")
        except Exception as exc:
            print(f"  (inference vs onnxruntime skipped: {type(exc).__name__}: {exc})")
        try:
            imp = import_times(torch is not None)
            extra["import_s"] = imp
            print(f"{'import time (ms)':<44} {imp['convkit'] * 1e3:>10.0f} "
                  f"{(imp['torch'] or float('nan')) * 1e3:>9.0f}")
        except Exception as exc:
            print(f"  (import timing skipped: {type(exc).__name__}: {exc})")

    elapsed = time.perf_counter() - started
    print(f"finished in {elapsed:.0f} s")
    return write_results(args.json, {"info": info, "results": results, **extra,
                                     "elapsed_s": elapsed})


def write_results(path: str, payload: dict) -> int:
    """Write ``payload`` (with the names of its mismatched rows added) as JSON, atomically;
    print the mismatches. Returns the exit status: 1 if any row exceeded its bound."""
    mismatches = [row["workload"] for row in payload["results"] if row.get("mismatch")]
    payload = {**payload, "mismatches": mismatches}
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(payload, fh, indent=2)
    os.replace(tmp, path)
    print(f"wrote {os.path.relpath(path)}")
    if mismatches:
        print(f"MISMATCH in {len(mismatches)} row(s): {'; '.join(mismatches)}")
        return 1
    return 0


def _format_row(row) -> str:
    def num(v, fmt):
        return format(v, fmt) if v is not None else "-".rjust(len(format(0.0, fmt)))
    return (f"{row['workload']:<44} {num(row['convkit_ms'], '>10.2f')} "
            f"{num(row['torch_ms'], '>9.2f')} {num(row['ratio'], '>6.2f')} "
            f"{num(row['gflops'], '>8.1f')} {num(row['pct_peak'], '>6.1f')} "
            f"{num(row['rel_err'], '>8.1e')}"
            + (f"  MISMATCH (bound {row['rel_err_bound']:.0e})" if row.get("mismatch") else ""))


if __name__ == "__main__":
    sys.exit(main())
