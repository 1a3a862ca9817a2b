"""Public-op calls with idle gaps between them, against PyTorch in the same run.

A tight loop keeps every thread awake and every array in cache; an interactive app or a
server calls an op now and then. Here each call follows ``--gap`` milliseconds of sleep (the
thread pools of both libraries go idle, the caches cool), alternating convkit and PyTorch,
and the median of ``--repeats`` such calls is compared with the same rows' tight-loop
medians from the same run::

    python -m benchmarks.idle_gaps [--gap 50] [--repeats 15] [--only pool] [--threads 2]

One line per row: convkit and PyTorch milliseconds after a gap, their ratio, and the
tight-loop ratio. The rows are the op rows of ``benchmarks.run`` (convolutions and pooling,
forward and backward); results are checked against PyTorch's as there.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

if __name__ == "__main__":          # threads must be fixed before NumPy loads its BLAS
    _threads = 2
    for i, arg in enumerate(sys.argv):
        if arg == "--threads" and i + 1 < len(sys.argv):
            _threads = int(sys.argv[i + 1])
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "CONVKIT_NUM_THREADS"):
        os.environ[var] = str(_threads)

import numpy as np  # noqa: E402


def after_gaps(fn_a, fn_b, gap_s: float, repeats: int):
    """Median seconds of single calls of ``fn_a`` and ``fn_b``, each after ``gap_s`` of
    sleep, alternated (``fn_b`` may be None)."""
    times_a, times_b = [], []
    for _ in range(repeats):
        for fn, times in ((fn_a, times_a), (fn_b, times_b)):
            if fn is None:
                continue
            time.sleep(gap_s)
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(times_a), (statistics.median(times_b) if times_b else None)


def op_workloads(torch, rng):
    """The op rows of ``benchmarks.run``: the convolutions and the pools."""
    from benchmarks import run as bench
    rows = []
    rows += bench.conv_workloads(torch, rng, "conv3x3 8x56x56x64->64 same", 8, 56, 56, 64, 64,
                                 3, 1, "same")
    rows += bench.conv_workloads(torch, rng, "conv3x3 s2 8x56x56x64->128 pad 1", 8, 56, 56,
                                 64, 128, 3, 2, 1)
    rows += bench.conv_workloads(torch, rng, "conv1x1 8x56x56x64->128", 8, 56, 56, 64, 128,
                                 1, 1, "valid")
    rows += bench.conv_workloads(torch, rng, "depthwise3x3 8x56x56x128 same", 8, 56, 56, 128,
                                 128, 3, 1, "same", groups=128)
    rows += bench.pool_workloads(torch, rng)
    return rows


def run(gap_ms: float = 50.0, repeats: int = 15, only: str | None = None,
        threads: int = 2) -> list[dict]:
    from benchmarks import run as bench
    torch = bench.load_torch(threads)
    rng = np.random.default_rng(0)
    results = []
    for wl in op_workloads(torch, rng):
        if only and only not in wl.name:
            continue
        tight_ck, tight_torch = bench.interleaved(wl.ck_fn, wl.torch_fn, 7,
                                                  min_seconds=bench.MIN_TIMED_SECONDS)
        gap_ck, gap_torch = after_gaps(wl.ck_fn, wl.torch_fn, gap_ms / 1e3, repeats)
        err = bench.rel_err(*wl.results) if wl.results is not None else None
        results.append({
            "workload": wl.name, "gap_ms": gap_ms,
            "convkit_ms": gap_ck * 1e3, "torch_ms": gap_torch * 1e3 if gap_torch else None,
            "ratio": gap_ck / gap_torch if gap_torch else None,
            "tight_ratio": tight_ck / tight_torch if tight_torch else None,
            "rel_err": err, "mismatch": bool(err is not None and not err <= wl.bound)})
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.idle_gaps",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gap", type=float, default=50.0, help="milliseconds of sleep")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--only", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    rows = run(args.gap, args.repeats, args.only, args.threads)
    print(f"load average {os.getloadavg()[0]:.2f} | each call after {args.gap:g} ms idle")
    print(f"{'workload':<44} {'convkit ms':>10} {'torch ms':>9} {'ratio':>6} {'tight':>6}")
    for row in rows:
        def num(v, fmt):
            return format(v, fmt) if v is not None else "-"
        flag = "  MISMATCH" if row["mismatch"] else ""
        print(f"{row['workload']:<44} {row['convkit_ms']:>10.3f} "
              f"{num(row['torch_ms'], '>9.3f')} {num(row['ratio'], '>6.2f')} "
              f"{num(row['tight_ratio'], '>6.2f')}{flag}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)
    return 1 if any(row["mismatch"] for row in rows) else 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main())
