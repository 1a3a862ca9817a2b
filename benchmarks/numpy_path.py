"""The NumPy path against PyTorch: the rows of :mod:`benchmarks.run` with convkit's compiled
kernels switched off.

    python -m benchmarks.numpy_path                 # every row, 2 threads, one pass
    python -m benchmarks.numpy_path --runs 3        # three passes: medians and ranges
    python -m benchmarks.numpy_path --only pool     # rows whose name contains a word
    python -m benchmarks.numpy_path --blas-threads 1  # NumPy's BLAS on one thread

The NumPy path is what runs without numba, with ``CONVKIT_ACCEL=0`` or under
``convkit.fast.set_backend("numpy")``: the reference ops of :mod:`convkit.ops`, NumPy and
its BLAS only, split over the batch on ``--threads`` Python threads where the work is large
(``CONVKIT_NUM_THREADS``, :mod:`convkit.ops.batch_threads`). The workloads, data, timing (interleaved with PyTorch after warm-up, medians)
and correctness bounds are :mod:`benchmarks.run`'s; the models of the train-step rows are
built under the NumPy backend too. With ``--runs`` above 1 each row is timed that many
times in turn (all rows, then all rows again), and the table shows the median of the runs
with the range of the ratio. A row whose result differs from PyTorch's beyond its bound
prints MISMATCH, and the exit status is 1. Results go to ``benchmarks/results_numpy.json``.
"""
from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # threads must be fixed before NumPy loads its BLAS (see run.py)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # The same for OpenBLAS, which NumPy's products run on: its idle workers otherwise spin
    # for about 2^28 cycles after each call, taking the two cores from PyTorch's next call
    # (PyTorch's 3x3 convolution measured 1.7-2x slower) and from each other; 2^4 cycles
    # makes them sleep almost at once, and convkit's own times drop too.
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    _threads = _blas_threads = 2
    for _i, _arg in enumerate(sys.argv[:-1]):
        if _arg == "--threads":
            _threads = _blas_threads = int(sys.argv[_i + 1])
    for _i, _arg in enumerate(sys.argv[:-1]):
        if _arg == "--blas-threads":
            _blas_threads = int(sys.argv[_i + 1])
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "CONVKIT_NUM_THREADS"):
        os.environ[_var] = str(_threads)
    os.environ["OPENBLAS_NUM_THREADS"] = str(_blas_threads)     # NumPy's BLAS only

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks import run  # noqa: E402

#: the issue's goal for every row: the NumPy path within this factor of PyTorch's time
TARGET_RATIO = 2.0


def summarise(runs: list[list[dict]]) -> list[dict]:
    """One row per workload from several passes: median times and ratio, the ratio's range,
    the largest relative error and whether any pass exceeded its bound."""
    rows = []
    for passes in zip(*runs):
        ratios = [p["ratio"] for p in passes if p["ratio"] is not None]
        torch_ms = [p["torch_ms"] for p in passes if p["torch_ms"] is not None]
        errors = [p["rel_err"] for p in passes if p["rel_err"] is not None]
        rows.append({
            "workload": passes[0]["workload"],
            "convkit_ms": statistics.median(p["convkit_ms"] for p in passes),
            "torch_ms": statistics.median(torch_ms) if torch_ms else None,
            "ratio": statistics.median(ratios) if ratios else None,
            "ratio_range": [min(ratios), max(ratios)] if ratios else None,
            "rel_err": max(errors) if errors else None,
            "rel_err_bound": passes[0]["rel_err_bound"],
            "mismatch": any(p["mismatch"] for p in passes),
        })
    return rows


def format_row(row: dict) -> str:
    def num(value, fmt):
        return format(value, fmt) if value is not None else "-".rjust(len(format(0.0, fmt)))
    ratio_range = row["ratio_range"]
    spread = f"{ratio_range[0]:.2f}-{ratio_range[1]:.2f}" if ratio_range else "-"
    verdict = ""
    if row["ratio"] is not None:
        verdict = "ok" if row["ratio"] <= TARGET_RATIO else f"> {TARGET_RATIO:g}x"
    return (f"{row['workload']:<44} {num(row['convkit_ms'], '>10.2f')} "
            f"{num(row['torch_ms'], '>9.2f')} {num(row['ratio'], '>6.2f')} {spread:>11} "
            f"{num(row['rel_err'], '>8.1e')}  {verdict}"
            + (f"  MISMATCH (bound {row['rel_err_bound']:.0e})" if row["mismatch"] else ""))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.numpy_path", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="threads of NumPy's BLAS (default: --threads; PyTorch keeps "
                             "--threads)")
    parser.add_argument("--only", default=None, help="run workloads whose name contains this")
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--runs", type=int, default=1, help="passes over every row")
    parser.add_argument("--json", default=os.path.join(run.HERE, "results_numpy.json"))
    args = parser.parse_args(argv)
    blas_threads = args.threads if args.blas_threads is None else args.blas_threads

    import convkit
    from convkit.fast import set_backend
    set_backend("numpy")            # every op takes its NumPy code from here on
    torch = run.load_torch(args.threads)
    started = time.perf_counter()
    info = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "backend": "numpy",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(), "numpy": np.__version__,
        "torch": getattr(torch, "__version__", None), "threads": args.threads,
        "numpy_blas_threads": blas_threads, "blas": run.blas_description(),
        "convkit": convkit.__version__,
        "load_average_start": [round(v, 2) for v in os.getloadavg()],
    }
    print(f"convkit {info['convkit']} on the NumPy path | numpy {info['numpy']} | torch "
          f"{info['torch']} | {args.threads} threads (NumPy's BLAS {blas_threads}) | load average "
          f"{info['load_average_start']}")
    print(f"NumPy's BLAS: {info['blas']}")

    workloads = run.build_workloads(torch, quick=args.quick, only=args.only)
    runs = [run.time_workloads(workloads, quick=args.quick) for _ in range(max(1, args.runs))]
    rows = summarise(runs)
    info["load_average_end"] = [round(v, 2) for v in os.getloadavg()]

    header = (f"{'workload':<44} {'convkit ms':>10} {'torch ms':>9} {'ratio':>6} "
              f"{'ratio range':>11} {'rel err':>8}  within {TARGET_RATIO:g}x")
    print(header)
    print("-" * len(header))
    for row in rows:
        print(format_row(row))
    within = sum(1 for row in rows if row["ratio"] is not None and row["ratio"] <= TARGET_RATIO)
    timed = sum(1 for row in rows if row["ratio"] is not None)
    elapsed = time.perf_counter() - started
    print(f"{within} of {timed} rows within {TARGET_RATIO:g}x of PyTorch | {len(runs)} pass(es) "
          f"| load average at the end {info['load_average_end']} | {elapsed:.0f} s")

    return run.write_results(args.json, {"info": info, "results": rows, "passes": runs,
                                         "elapsed_s": elapsed})


if __name__ == "__main__":
    sys.exit(main())
