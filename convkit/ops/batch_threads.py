"""The NumPy reference ops over the batch, on a few threads.

NumPy's element-wise loops, reductions and copies release the GIL on large arrays, so plain
Python threads run them in parallel; without that the NumPy path would use one core (and
its BLAS products the others). :func:`over_batch` is the one place where the reference ops
of :mod:`convkit.ops` are split: it calls ``fn(start, stop)`` for contiguous ranges of the
batch, one per thread, on the pool of :mod:`convkit.fast.runtime.threads` (plain Python
threads, no numba needed), with the BLAS library on one thread per chunk meanwhile. Each
chunk writes its own slice of an output the caller allocated once; what a chunk returns
(partial sums of a kernel gradient, say) comes back in batch order. The op functions stay
plain NumPy over whatever batch they are given::

    y = np.empty((N, H_out, W_out, F))
    over_batch(lambda start, stop: forward(x[start:stop], out=y[start:stop]), N, nbytes)

Per-sample results (a forward, an input gradient) are bitwise the same however the batch is
split: every sample goes through the same NumPy code, except where a BLAS product rounds a
row's sums differently for a different number of rows (OpenBLAS does, measured: the banded
products of a convolution with few filters, :func:`convkit.ops.conv._banded_forward`);
there, and in sums over the batch (a kernel gradient, the chunks' partial sums added), the
results are equal up to float rounding.

Like the threaded fast paths, the first call sets the C allocator to keep freed blocks for
reuse (:func:`convkit.fast.runtime.memory.keep_freed_memory`): the reference ops allocate
their outputs and temporaries anew on every call, and fresh pages cost a page fault each.

The split pays only when there is enough work: a call whose arrays hold fewer than
:data:`SPLIT_BYTES` bytes, a batch of one, one thread (``CONVKIT_NUM_THREADS=1``), or a call
made from inside a chunk that already runs on a pool thread (a nested op), stays on the
calling thread as one chunk. A forward over a single image splits its output rows instead
(:func:`over_images`).

Why here and not in :mod:`convkit.fast`: the split belongs to the NumPy path (the compiled
kernels split their own loops), and a reader of ``ops/`` should see where it happens; the
pool it runs on is the fast paths' runtime, which imports nothing compiled.

>>> out = np.zeros((4, 2))
>>> def fill(start, stop):
...     out[start:stop] = np.arange(start, stop)[:, None]
...     return stop - start
>>> over_batch(fill, 4, nbytes=1 << 30, threads=2)
[2, 2]
>>> out[:, 0].tolist()
[0.0, 1.0, 2.0, 3.0]
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..fast.runtime import memory as _memory, threads as _threads

__all__ = ["over_batch", "map_batch", "over_images", "sum_chunks", "SPLIT_BYTES"]

#: calls that read and write fewer bytes than this (inputs, outputs, temporaries) run on the
#: calling thread: below it, waking a pool thread, waiting for it and the two threads'
#: turns at the GIL between NumPy calls cost more than the second core saves. Measured on
#: the NumPy path, one thread against two: 2x2 max pooling of 64x16x16x32 (2.6 MB) 157
#: against 180 us, of 128x16x16x32 (5.2 MB) 330 against 264 us; a depthwise 3x3
#: convolution of 16x16x16x32 (4.7 MB of products) 257 against 315 us, of 64x16x16x32
#: (19 MB) 951 against 840 us (see benchmarks/README.md, "The NumPy path against PyTorch")
SPLIT_BYTES = 1 << 22


def over_batch(fn: Callable[[int, int], object], batch: int, nbytes: int,
               threads: int | None = None) -> list:
    """Call ``fn(start, stop)`` over contiguous ranges covering ``range(batch)`` and return
    what each call returned, in batch order.

    ``nbytes``: the bytes the whole call reads and writes (its inputs and outputs), which
    decides whether to split (:data:`SPLIT_BYTES`); ``threads``: at most this many chunks
    (default :func:`~convkit.fast.runtime.threads.num_threads`). Split, the chunks run in
    parallel, each on one BLAS thread; not split, ``fn(0, batch)`` runs once on the calling
    thread. Exceptions propagate once every chunk has ended.
    """
    _memory.keep_freed_memory()        # once per process: reuse freed arrays' pages
    threads = _threads.num_threads() if threads is None else max(1, int(threads))
    chunks = _threads.split(batch, threads)
    if len(chunks) <= 1 or nbytes < SPLIT_BYTES:
        return [fn(0, batch)]
    results = {}

    def run(start, stop):
        results[start] = fn(start, stop)

    # called from inside a chunk, run_chunks runs run(0, batch) on the calling thread
    _threads.run_chunks(run, batch, len(chunks))
    return [results[start] for start in sorted(results)]


def map_batch(fn, out: np.ndarray | None, *arrays: np.ndarray | None,
              threads: int | None = None, extra_bytes: int = 0,
              block_bytes: int | None = None) -> list:
    """:func:`over_batch` over the first axis of ``out`` and ``arrays``: each chunk calls
    ``fn(*(a[start:stop] for a in arrays), out=out[start:stop])`` (None stays None), so it
    writes its own slice of the preallocated ``out``; returns what the calls returned, in
    batch order. The bytes of ``out`` and ``arrays``, plus ``extra_bytes`` (temporaries,
    e.g. a convolution's columns), decide whether to split.

    ``block_bytes``: each chunk calls ``fn`` on consecutive blocks of images whose arrays
    (``out`` and ``arrays``) hold about this many bytes, at least one image, so that the
    temporaries of an op making several passes (a padded copy, say) stay in cache; one
    result per block then.

    >>> x = np.arange(6.0).reshape(3, 2)
    >>> y = np.empty_like(x)
    >>> map_batch(lambda x, out: np.multiply(x, 2, out=out).sum(), y, x)   # small: one chunk
    [np.float64(30.0)]
    >>> map_batch(lambda x, out: np.multiply(x, 2, out=out).sum(), y, x, block_bytes=32)
    [np.float64(2.0), np.float64(10.0), np.float64(18.0)]
    >>> y.tolist()
    [[0.0, 2.0], [4.0, 6.0], [8.0, 10.0]]
    """
    present = [a for a in (out, *arrays) if a is not None]
    batch = present[0].shape[0]
    array_bytes = sum(a.nbytes for a in present)
    step = batch if block_bytes is None else max(1, block_bytes * batch // max(1, array_bytes))

    def chunk(start, stop):
        def part(a, begin, end):
            return None if a is None else a[begin:end]
        return [fn(*(part(a, begin, min(begin + step, stop)) for a in arrays),
                   out=part(out, begin, min(begin + step, stop)))
                for begin in range(start, stop, step)]

    chunks = over_batch(chunk, batch, array_bytes + extra_bytes, threads)
    return [result for results in chunks for result in results]


def over_images(fn, out: np.ndarray, x: np.ndarray, extra_bytes: int = 0,
                block_bytes: int | None = None) -> None:
    """A forward op over the images of ``x`` into ``out`` (both batch first, ``out``'s
    output rows on axis 1): ``fn(x_part, out_part, rows)`` writes the output rows ``rows``
    (``(start, stop)``, or None for all of them) of the images ``x_part`` into ``out_part``.
    Several images: :func:`map_batch` over them (``rows`` None); one image: its output rows
    are split instead (``x_part`` is ``x`` and ``out_part`` is ``out``, each chunk writing
    its own rows).

    >>> y = np.zeros((1, 4))
    >>> over_images(lambda x, out, rows: out.__setitem__((0, slice(*rows)), 7.0),
    ...             y, np.zeros((1, 4)))
    >>> y.tolist()
    [[7.0, 7.0, 7.0, 7.0]]
    """
    if x.shape[0] != 1:
        map_batch(lambda x, out: fn(x, out, None), out, x, extra_bytes=extra_bytes,
                  block_bytes=block_bytes)
    else:
        over_batch(lambda start, stop: fn(x, out, (start, stop)), out.shape[1],
                   x.nbytes + out.nbytes + extra_bytes)


def sum_chunks(parts: list) -> np.ndarray:
    """The sum of the chunks' partial results, in batch order (the first one as is when
    there is one chunk)."""
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total
