"""Micro-benchmark of the compiled fast paths (convkit.fast.kernels)
against PyTorch on the CPU, in the same run.

    python -m benchmarks.micro_kernels                  # every workload, 2 threads
    python -m benchmarks.micro_kernels --only pool      # workloads whose name contains a word
    python -m benchmarks.micro_kernels --repeats 31

For each workload, after warm-up (which includes compiling the kernels), the convkit kernel
and PyTorch (NCHW and channels_last, the faster of the two is kept) run interleaved; the
table shows median milliseconds, the ratio convkit/torch (below 1.0 means convkit is
faster) and the largest difference between the two results relative to the largest value.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def _set_threads(n: int) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMBA_NUM_THREADS", "CONVKIT_NUM_THREADS"):
        os.environ[var] = str(n)


if __name__ == "__main__":  # thread counts must be fixed before NumPy / numba load
    _threads = 2
    for _i, _arg in enumerate(sys.argv):
        if _arg == "--threads" and _i + 1 < len(sys.argv):
            _threads = int(sys.argv[_i + 1])
    _set_threads(_threads)

import numpy as np  # noqa: E402

from convkit.fast.runtime import threads as _threads  # noqa: E402
from convkit.fast import kernels as accel  # noqa: E402
from convkit.fast.kernels import winograd  # noqa: E402
from convkit.shapes import window_geometry  # noqa: E402


def rel_err(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def interleaved(fns, repeats: int, warmup: int = 2):
    """Median seconds of each callable, all run in turn ``repeats`` times after warm-up."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for slot, fn in zip(times, fns):
            start = time.perf_counter()
            fn()
            slot.append(time.perf_counter() - start)
    return [statistics.median(slot) for slot in times]


# ------------------------------------------------------------------------ convkit paths
def conv_general(x, k, b, geo, use_winograd, use_direct):
    """Forward and backward callables of one conv workload on the fastest kernel for it."""
    (kh, kw), stride = geo.kernel, geo.strides
    n, c_in, c_out = x.shape[0], x.shape[3], k.shape[3]
    h_out, w_out = geo.out_hw
    if use_direct:
        def fwd():
            return accel.conv2d_direct_forward(x, k, b, geo)

        def bwd(dy):
            return accel.conv2d_direct_backward(dy, x, k, geo)
    elif use_winograd:
        def fwd():
            return winograd.conv3x3_winograd_forward(x, k, b, geo.pads)

        def bwd(dy):
            dx = winograd.conv3x3_winograd_input_grad(dy, k, geo.pads, geo.in_hw)
            dk = winograd.conv3x3_winograd_kernel_grad(x, dy, geo.pads)
            return dx, dk, dy.sum(axis=(0, 1, 2))
    elif (kh, kw) == (1, 1) and stride == (1, 1) and geo.pads == ((0, 0), (0, 0)):
        x2 = x.reshape(-1, c_in)                                  # (N*H*W, Cin)
        k2 = k.reshape(c_in, c_out)

        def fwd():
            y2 = _threads.matmul(x2, k2)                          # (N*H*W, Cout)
            return accel.bias_act_(y2, b).reshape(n, h_out, w_out, c_out)

        def bwd(dy):
            dy2 = dy.reshape(-1, c_out)
            return (_threads.matmul(dy2, k2.T).reshape(x.shape),
                    _threads.matmul_tn(x2, dy2).reshape(k.shape), dy2.sum(axis=0))
    else:
        k2 = k.reshape(kh * kw * c_in, c_out)

        def fwd():
            cols = accel.im2col(x, geo)                           # (N*Ho*Wo, kh*kw*Cin)
            y2 = _threads.matmul(cols, k2)                        # (N*Ho*Wo, Cout)
            return accel.bias_act_(y2, b).reshape(n, h_out, w_out, c_out)

        def bwd(dy):
            dy2 = dy.reshape(-1, c_out)
            cols = accel.im2col(x, geo)
            dk = _threads.matmul_tn(cols, dy2).reshape(k.shape)
            dx = accel.col2im(_threads.matmul(dy2, k2.T), geo, x.shape)
            return dx, dk, dy2.sum(axis=0)
    return fwd, bwd


# -------------------------------------------------------------------------- torch paths
def torch_conv(torch, x, k, b, stride, pad, groups):
    """(fwd, bwd) pairs for NCHW and channels_last; results in NHWC / HWIO numpy."""
    F = torch.nn.functional
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    wt = torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1)))
    bt = torch.from_numpy(b)
    variants = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        xv = xt.contiguous(memory_format=fmt)
        wv = wt.contiguous(memory_format=fmt)

        def fwd(xv=xv, wv=wv):
            with torch.no_grad():
                return F.conv2d(xv, wv, bt, stride, pad, 1, groups)

        def bwd(dy, xv=xv, wv=wv, fmt=fmt):
            dyt = torch.from_numpy(dy).permute(0, 3, 1, 2).contiguous(memory_format=fmt)
            return torch.ops.aten.convolution_backward(
                dyt, xv, wv, [wv.shape[0]], [stride, stride], [pad, pad], [1, 1], False,
                [0, 0], groups, [True, True, True])
        variants.append((fmt, fwd, bwd))
    return variants


def to_nhwc(t):
    return t.permute(0, 2, 3, 1).contiguous().numpy()


def pick_faster(fns, repeats):
    """Index of the fastest of a few torch variants (a short timing of each)."""
    times = interleaved(fns, max(3, repeats // 3), warmup=1)
    return int(np.argmin(times))


# ------------------------------------------------------------------------------ report
ROWS = []


def report(name, ck_fn, torch_fns, repeats, compare=None):
    if torch_fns:
        best = pick_faster(torch_fns, repeats)
        ck_t, torch_t = interleaved([ck_fn, torch_fns[best]], repeats)
    else:
        (ck_t,), torch_t, best = interleaved([ck_fn], repeats), None, None
    err = compare(ck_fn(), torch_fns[best]()) if (compare and torch_fns) else float("nan")
    ratio = ck_t / torch_t if torch_t else float("nan")
    fmt = ("", "NCHW", "channels_last")[0 if best is None else best + 1]
    ROWS.append((name, ck_t * 1e3, None if torch_t is None else torch_t * 1e3, ratio, fmt, err))
    torch_ms = "-" if torch_t is None else f"{torch_t * 1e3:8.2f}"
    print(f"{name:34s} {ck_t * 1e3:8.2f} {torch_ms:>8s} {ratio:6.2f}  {fmt:13s} {err:.1e}",
          flush=True)


def conv_workloads(torch, rng, repeats, only):
    specs = [
        # name, N, H, W, Cin, Cout, k, stride, pad, groups
        ("seed7x7 2x427x640x3->2", 2, 427, 640, 3, 2, 7, 1, 3, 1),
        ("conv3x3 8x56x56x64->64", 8, 56, 56, 64, 64, 3, 1, 1, 1),
        ("conv3x3/s2 8x56x56x64->128", 8, 56, 56, 64, 128, 3, 2, 1, 1),
        ("conv1x1 8x56x56x64->128", 8, 56, 56, 64, 128, 1, 1, 0, 1),
        ("depthwise3x3 8x56x56x128", 8, 56, 56, 128, 128, 3, 1, 1, 128),
    ]
    for name, n, h, w, c_in, c_out, ks, stride, pad, groups in specs:
        if only and not any(word in name for word in only):
            continue
        x = rng.standard_normal((n, h, w, c_in), dtype=np.float32)
        k = (rng.standard_normal((ks, ks, c_in // groups, c_out), dtype=np.float32)
             * np.float32(np.sqrt(2.0 / (ks * ks * (c_in // groups + c_out // groups)))))
        b = rng.standard_normal(c_out, dtype=np.float32) * np.float32(0.1)
        geo = window_geometry((h, w), ks, stride, pad)
        if groups > 1:
            def fwd():
                return accel.depthwise_conv2d_forward(x, k, b, geo, 1)

            def bwd(dy):
                return accel.depthwise_conv2d_backward(dy, x, k, geo, 1)
        else:
            fwd, bwd = conv_general(x, k, b, geo, use_winograd=(ks == 3 and stride == 1),
                                    use_direct=(c_in * c_out <= 16 and ks >= 5))
        y = fwd()
        dy = rng.standard_normal(y.shape, dtype=np.float32)
        tv = torch_conv(torch, x, k, b, stride, pad, groups) if torch else []

        def cmp_fwd(a, t):
            return rel_err(a, to_nhwc(t))

        def cmp_bwd(a, t):
            tdx, tdw, tdb = t
            return max(rel_err(a[0], to_nhwc(tdx)),
                       rel_err(a[1], tdw.permute(2, 3, 1, 0).numpy()), rel_err(a[2], tdb))
        report(f"{name} fwd", fwd, [v[1] for v in tv], repeats, cmp_fwd)
        report(f"{name} bwd", lambda: bwd(dy), [lambda f=v[2]: f(dy) for v in tv], repeats,
               cmp_bwd)


def pool_workloads(torch, rng, repeats, only):
    x = rng.standard_normal((128, 28, 28, 32), dtype=np.float32)
    geo = window_geometry((28, 28), 2, 2)
    y, arg = accel.max_pool2d_forward(x, geo)
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    variants = []
    if torch:
        xt = torch.from_numpy(x).permute(0, 3, 1, 2)                  # channels_last view
        dyt = torch.from_numpy(dy).permute(0, 3, 1, 2)
        for fmt in (torch.contiguous_format, torch.channels_last):
            xv, dyv = xt.contiguous(memory_format=fmt), dyt.contiguous(memory_format=fmt)
            with torch.no_grad():
                _, ind = torch.ops.aten.max_pool2d_with_indices(xv, [2, 2], [2, 2])
            variants.append((xv, dyv, ind))

    def cmp(a, t):
        return rel_err(a[0] if isinstance(a, tuple) else a, to_nhwc(t[0] if isinstance(t, tuple)
                                                                   else t))
    if not only or any(word in "maxpool" for word in only):
        report("maxpool2x2 128x28x28x32 fwd", lambda: accel.max_pool2d_forward(x, geo),
               [lambda v=v: torch.ops.aten.max_pool2d_with_indices(v[0], [2, 2], [2, 2])
                for v in variants], repeats, cmp)
        report("maxpool2x2 128x28x28x32 bwd", lambda: accel.max_pool2d_backward(dy, arg, x.shape),
               [lambda v=v: torch.ops.aten.max_pool2d_with_indices_backward(
                   v[1], v[0], [2, 2], [2, 2], [0, 0], [1, 1], False, v[2]) for v in variants],
               repeats, cmp)
    if not only or any(word in "avgpool" for word in only):
        report("avgpool2x2 128x28x28x32 fwd", lambda: accel.avg_pool2d_forward(x, geo),
               [lambda v=v: torch.ops.aten.avg_pool2d(v[0], [2, 2], [2, 2])
                for v in variants], repeats, cmp)
        report("avgpool2x2 128x28x28x32 bwd",
               lambda: accel.avg_pool2d_backward(dy, geo, x.shape),
               [lambda v=v: torch.ops.aten.avg_pool2d_backward(
                   v[1], v[0], [2, 2], [2, 2], [0, 0], False, True, None) for v in variants],
               repeats, cmp)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--only", nargs="*", default=[])
    args = parser.parse_args(argv)
    if not accel.available():
        print("the compiled kernels are unavailable (numba missing or CONVKIT_ACCEL=0)")
        return 1
    try:
        import torch
        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
    rng = np.random.default_rng(0)
    print(f"threads {args.threads}, convkit threads {accel.num_threads()}, "
          f"torch {torch.__version__ if torch else 'absent'}, repeats {args.repeats}")
    print(f"{'workload':34s} {'convkit':>8s} {'torch':>8s} {'ratio':>6s}  {'torch layout':13s} "
          f"rel.diff")
    start = time.perf_counter()
    conv_workloads(torch, rng, args.repeats, args.only)
    pool_workloads(torch, rng, args.repeats, args.only)
    print(f"total {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
