"""Inference of a whole chain of layers with its set-up done once (a model's ``predict``).

A model whose layers form one straight chain (a ``Sequential`` model, or a functional one
written the same way) describes itself as a tuple of steps
(:func:`prepare_chain`'s ``steps``); this module turns them into one ``run(x, weights) ->
y`` with every plan, geometry and compiled kernel fixed for that input shape. What it saves
over calling the layers one by one, each set up on its own:

* **Python between the kernels.** Each layer's call, its checks and its op's set-up cost
  2-10 us; a batch-1 prediction of the MNIST convnet spent half its time there.
* **Outputs nobody reads.** A 2x2, stride-2 ``'valid'`` max pool after a convolution drops
  the last row and column of an odd-sized map: ``floor(11 / 2) = 5`` windows cover rows
  0-9 of 11. The convolution computes only the rows and columns the pool reads (the MNIST
  convnet's second convolution: 100 of 121 pixels, 17 % of its multiply-adds).
* **A round trip through memory.** The convolution and that max pool run together on a few
  images at a time, per thread: the convolution's output goes to a small scratch buffer
  that stays in the core's cache, the pool reads it from there, and only the pooled map,
  a quarter of the size, is written out (the MNIST convnet's first convolution writes
  86.5 KB per image otherwise and the pool reads it back). One compiled call per thread
  for the pair (:mod:`convkit.fast.kernels.fused`).
* **Hand-offs to the threads.** With two threads or more, a fused pair is shared with one
  helper thread parked in compiled code (:class:`_Parked`,
  :mod:`convkit.fast.runtime.parked`), handed over without the GIL in ~1 us, against
  15-60 us through the pool. Both threads take chunks of the images (of one image: of its
  convolution's pixels, which the calling thread then pools) until none is left, so a
  helper that starts late or runs on a busier core takes less.
* **Winograd for several images.** A fused 3x3 convolution over at least
  :data:`WINOGRAD_MIN_IMAGES` images runs by F(2x2, 3x3), whose 2x2 output tile is
  exactly one pool window: 16 multiplies per channel pair and window instead of 36
  (``fused._k_wino_pool_images``; the MNIST convnet's second convolution, one thread: 21
  against 32 us per image).
* **A Dense head on a few rows** (a batch-1 prediction) runs as one compiled call: the
  product, the bias and the softmax were three NumPy calls of 2-5 us each.

Pooling before the ReLU's clamp or after it gives the same numbers (both are monotonic,
and so is adding the bias in float arithmetic), so the direct fused convolutions and pools
equal the layer-by-layer path's exactly; the Winograd stages and the compiled Dense head
round differently (float32 rounding: ~1e-6 of the largest output, ~1e-7). The tests
compare the two.

MNIST convnet of ``make run`` (``benchmarks/inference.py``, one process): ``predict`` at
batch 1 99 -> 48-60 us, batch 32 1.16 -> 0.76-0.88 ms, batch 1000 33 -> 23-24 ms; see
``benchmarks/README.md`` for the figures against onnxruntime.

Steps (all channels_last):

``("conv2d", kernel_shape, strides, padding, dilation_rate, groups, relu)``
    zero padding; ``relu`` says whether the ReLU is applied (else linear)
``("max_pool2d", pool_size, strides, padding, dilation_rate, ceil_mode)``
``("flatten",)``                  each sample to one row
``("identity",)``                 ``Dropout`` at inference
``("dense", kernel_shape, activation)``   ``activation`` a name of
    :func:`convkit.ops.activations.get`, without parameters
``("layer", layer)``              any other layer, called as the model would call it,
    ``layer(x, training=False)`` (``BatchNormalization``, ``Rescaling``, an ``Activation``,
    average pooling, ...): the same numbers as the layer-by-layer path by construction, and
    the steps around it keep their prepared and fused forms. Should such a layer return
    anything but a float32 array, the chain gives up for that call (``run`` returns
    ``None``) and the model calls its layers one by one.

A step list holding anything else, or a step that does not fit its input's shape, gets
``None`` (the model then calls its layers).
"""
from __future__ import annotations

import functools
import math
import threading

import numpy as np

from .._aligned import aligned_empty, aligned_zeros, output_empty
from ..ops import activations
from ..shapes import window_geometry
from . import conv
from .kernels import fused, implicit, pooling
from .runtime import backend as _backend
from .runtime import parked as _parked
from .runtime import spin as _spin
from .runtime import threads as _threads

__all__ = ["prepare_chain", "fused_steps", "SCRATCH_BYTES"]
#: the convolution's scratch output per thread in a fused convolution + max pool: small
#: enough to stay in the core's L2 cache with its input and the pooled output
SCRATCH_BYTES = 1 << 19
#: a fused stage whose arrays hold at least PARKED_MIN_BYTES and less than
#: PARKED_MAX_BYTES is shared with a parked helper (:class:`_Parked`); larger ones go to
#: the thread pool (all threads), smaller ones stay on the calling thread (the MNIST
#: convnet's first pair at batch 1, 26 KB, ~9 us of work: batch-1 predict 46-49 us with it
#: on the calling thread, 48-51 us shared; its second pair, 101 KB, ~25 us of work on an
#: AVX-512 CPU: batch-1 predict 44.8-45.0 us with it on the calling thread, 38.1-38.5
#: shared in chunks of 48 pixels). Above PARKED_MAX_BYTES a stage lasts longer
#: than the helper's wait for its next task, and a helper that missed one stage would miss
#: them all (batch 256: 12.0 ms shared against 6.0 ms through the pool); below it a
#: missed stage is short and the helper is back for the next (batch 128: 2.9 ms either way)
PARKED_MIN_BYTES = 1 << 16
PARKED_MAX_BYTES = 1 << 21
#: a shared stage is taken a chunk at a time by the caller and the helper, each taking the
#: next chunk left when done with its last (a helper that starts late or runs on a busier
#: core takes less): one image's convolution in chunks of this many pixels (six register
#: tiles; the MNIST convnet's second pair at batch 1, 100 pixels, AVX-512: predict 41.6-42.4
#: us in chunks of 16, 40.7 in 32, 38.1-38.5 in 48, 39.6 in 64), several images in about
#: SHARED_CHUNKS chunks (batch 32: 0.755-0.78 ms in 2 or 4 chunks, 0.77-0.79 in 16)
SHARED_CHUNK_PIXELS = 48
SHARED_CHUNKS = 4
#: microseconds the parked helper waits for its next task before it sleeps
PARKED_SPIN_US = 300.0
#: the longest the calling thread waits for the helper's last chunk inside the compiled call
#: before it waits from Python instead
SHARED_WAIT_US = 20000.0
#: a fused 3x3 convolution + pool on at least WINOGRAD_MIN_IMAGES images of at least
#: WINOGRAD_MIN_CHANNELS channels runs by Winograd F(2x2, 3x3), whose 2x2 output tile is
#: one pool window (:func:`convkit.fast.kernels.fused._k_wino_pool_images`): 16 multiplies
#: per channel pair and window instead of 36. Its kernel transform is made again whenever
#: the kernel's bits differ from the copy it was made from (the optimizers update weights
#: in place): 3x3x32x64, 1.1-1.4 us to compare against 2.8-3.6 to transform. One image
#: keeps the direct kernel: its two threads share the image's 100 pixels, while Winograd's
#: 25 tiles split over the filters cost each thread the whole input transform (MNIST
#: convnet's second convolution + pool, batch 1, two threads: 14.4-14.5 us by Winograd
#: against 13.2-13.4 directly; one thread 17.9 against 19.1). The results differ from
#: the direct kernel's by float32 rounding (~1e-6 of the largest output)
WINOGRAD_MIN_IMAGES = 2
WINOGRAD_MIN_CHANNELS = 8
#: a ``dense`` step on at most this many rows runs as one compiled call
DENSE_KERNEL_ROWS = 4


def prepare_chain(x_shape: tuple, dtype, steps: tuple):
    """``run(x, weights) -> y`` for inputs of ``x_shape`` (C-contiguous, ``dtype``) through
    ``steps`` (see the module docstring), or ``None`` when a step has no fast form.
    ``weights`` holds one entry per step: ``(kernel, bias or None)`` for ``conv2d`` and
    ``dense``, ``None`` for the others; they are read afresh on every call. ``run`` returns
    ``None`` when another thread is running the same chain (its scratch buffers are shared)
    or when a layer called as itself returned something else than a float32 array: the
    caller then takes the layers one by one."""
    dtype = np.dtype(dtype)
    if dtype != np.float32 or not x_shape[0]:
        return None
    compute = _stages_run(tuple(x_shape), steps)
    if compute is None:
        return None
    busy = threading.Lock()          # the stages' scratch buffers serve one call at a time

    def run(x, weights):
        """The chain's output, or ``None`` while another thread runs this chain, or when a
        layer of its own gave something else than a float32 array (``run.gave_up`` is then
        set: the caller need not try this chain again)."""
        if not busy.acquire(blocking=False):
            return None
        try:
            y = compute(x, weights)
        finally:
            busy.release()
        if y is None:
            run.gave_up = True
        return y
    run.gave_up = False
    return run


def _plan(x_shape: tuple, steps: tuple):
    """The chain's stages before any is built: ``[(i, fused, in_shape, out_shape)]``, step
    ``i`` (and the max pool after it when ``fused``: :func:`_fusable`) from ``in_shape`` to
    ``out_shape``; ``None`` when a step does not apply to its input's shape. The one walk
    over the steps: the stages are built from it, and :func:`fused_steps` reads it."""
    plan, shape, i = [], tuple(x_shape), 0
    while i < len(steps):
        step = steps[i]
        following = steps[i + 1] if i + 1 < len(steps) else None
        fused_pair = step[0] == "conv2d" and _fusable(shape, step, following) is not None
        out_shape = _output_shape(shape, step)
        if fused_pair:
            out_shape = _output_shape(out_shape, following)
        if out_shape is None:
            return None
        plan.append((i, fused_pair, shape, out_shape))
        shape = out_shape
        i += 2 if fused_pair else 1
    return plan


def _stages_run(x_shape: tuple, steps: tuple):
    """``compute(x, weights) -> y``: the steps' stages one after the other, or ``None``."""
    plan = _plan(x_shape, steps)
    if plan is None:
        return None
    parked = _Parked.for_this_machine()
    stages = []
    for i, fused_pair, shape, out_shape in plan:
        step = steps[i]
        kind = step[0]
        if kind == "identity":
            continue
        if kind == "layer":
            stage = _layer(step[1])
        elif fused_pair:
            # a shared stage right after another reads that one's output buffer in place
            feeds = getattr(stages[-1][0], "shared_index", None) if stages else None
            stage = _fused_stage(shape, step, out_shape, parked, feeds)
        elif kind == "conv2d":
            stage = _conv(shape, step)
        elif kind == "max_pool2d":
            stage = _max_pool(shape, step)
        elif kind == "flatten":
            stage = _flatten(out_shape)
        else:                                   # dense (the plan knows no other kind)
            stage = _dense(shape, step, out_shape)
        if stage is None:
            return None
        stages.append((stage, i))
    stages = tuple(stages)
    for (before, _), (after, _) in zip(stages, stages[1:]):
        # a fused stage of its own (not shared) before a shared one writes straight into
        # the shared stage's input buffer (batch 1: a copy and an allocation saved)
        shared = getattr(after, "shared_index", None)
        if shared is not None and hasattr(before, "write_into") \
                and before.shared_index is None:
            before.write_into(parked.inputs[shared])
    # a shared stage's output is the chain's own buffer: the caller gets a copy
    copy_out = bool(stages) and getattr(stages[-1][0], "shared_index", None) is not None

    def compute(x, weights):
        for stage, index in stages:
            x = stage(x, weights[index])
            if x is None:               # a layer of its own gave something else: give up
                return None
        return x.copy() if copy_out else x
    return compute


def _conv_geometry(shape, step):
    _, kernel_shape, strides, padding, dilation, groups, relu = step
    if len(shape) != 4 or shape[3] != kernel_shape[2] * groups:
        return None
    return window_geometry(shape[1:3], kernel_shape[:2], strides, padding, dilation)


def _conv(shape, step):
    """A convolution alone: the prepared form of :func:`convkit.fast.dispatch.prepare`."""
    from . import dispatch
    _, kernel_shape, strides, padding, dilation, groups, relu = step
    run = dispatch.prepare("conv2d", "forward", shape, np.dtype(np.float32), kernel_shape,
                           strides, padding, dilation, groups, "zeros", "channels_last", relu)
    if run is None:
        return None

    def stage(x, weights):
        return run(x, *weights)
    return stage


def _max_pool(shape, step):
    run = pooling.prepare_max_values(shape, np.dtype(np.float32),
                                     _pool_geometry(shape, step))

    def stage(x, weights):
        return run(x)
    return stage


def _layer(layer):
    """Any other layer, as the model calls it; its output made C-contiguous for the steps
    after it, or ``None`` when it is not a float32 array (see the module docstring)."""
    def stage(x, weights):
        y = layer(x, training=False)
        if type(y) is not np.ndarray or y.dtype != np.float32:
            return None
        return y if y.flags.c_contiguous else np.ascontiguousarray(y)
    return stage


def _flatten(out_shape):
    def stage(x, weights):
        return x.reshape(out_shape)
    return stage


def _dense(shape, step, out_shape):
    """``activation(x @ kernel + bias)`` on the last axis, computed as the ``Dense`` layer
    computes it at inference (the same products and activation, so the same numbers), or
    for at most :data:`DENSE_KERNEL_ROWS` rows with a linear, ReLU or softmax activation
    by one compiled call (the same numbers up to float32 rounding: the sums run in
    another order)."""
    _, kernel_shape, activation = step
    if shape[0] <= DENSE_KERNEL_ROWS and activation in fused.DENSE_ACTIVATIONS:
        kernel_rows = fused.dense_rows_kernel()
        code = fused.DENSE_ACTIVATIONS[activation]

        def small_stage(x, weights):
            kernel, bias = weights
            y = np.empty(out_shape, np.float32)
            kernel_rows(x, kernel, _no_bias(kernel_shape[1]) if bias is None else bias,
                        code, y)
            return y
        return small_stage
    act = activations.get(activation)
    threaded = shape[0] * math.prod(kernel_shape) >= _threads.THREADED_PRODUCT

    def stage(x, weights):
        kernel, bias = weights
        z = _threads.matmul(x, kernel) if threaded else x @ kernel
        if bias is not None:
            z += bias
        return act.forward(z)
    return stage


def fused_steps(x_shape: tuple, steps: tuple) -> frozenset:
    """The indices of the convolution steps whose outputs the chain never writes out (each
    fused with the max pool after it; :func:`_fusable`), for inputs of ``x_shape``: what a
    caller sizing its batches by the largest activation may leave out."""
    plan = _plan(tuple(x_shape), steps)
    return frozenset(i for i, fused_pair, _, _ in plan or () if fused_pair)


def _pool_geometry(shape, step):
    _, pool_size, strides, padding, dilation, ceil_mode = step
    return window_geometry(shape[1:3], pool_size, strides, padding, dilation, ceil_mode,
                           max_pad_half_window=True)


def _output_shape(shape, step):
    """The shape after one step, or ``None`` when it does not apply (the one place of the
    chain's shape arithmetic, from :mod:`convkit.shapes`' geometries)."""
    if shape is None:
        return None
    kind = step[0]
    if kind == "conv2d":
        geo = _conv_geometry(shape, step)
        return None if geo is None else (shape[0], *geo.out_hw, step[1][3])
    if kind == "max_pool2d" and len(shape) == 4:
        return (shape[0], *_pool_geometry(shape, step).out_hw, shape[3])
    if kind == "flatten":
        return (shape[0], math.prod(shape[1:]))
    if kind == "identity":
        return shape
    if kind == "layer":
        try:
            out = step[1].compute_output_shape((None, *shape[1:]))
        except Exception:       # (a layer's own error for a shape it cannot take)
            return None
        if not isinstance(out, tuple) or any(not isinstance(d, int) for d in out[1:]):
            return None
        return (shape[0], *out[1:])
    if kind == "dense" and len(shape) == 2 and shape[1] == step[1][0]:
        return (shape[0], step[1][1])
    return None


def _fusable(shape, step, following):
    """The convolution's geometry when a convolution and the max pool after it can be
    fused: the convolution goes to the register-tile product with every window inside the
    input (``'valid'``, stride 1, no dilation) and a multiple of 16 filters, the pool is
    2x2 with stride 2 and no padding; else ``None``."""
    if following is None or following[0] != "max_pool2d":
        return None
    _, kernel_shape, strides, padding, dilation, groups, relu = step
    geo = _conv_geometry(shape, step)
    if geo is None or geo.pads != ((0, 0), (0, 0)) or geo.strides != (1, 1) \
            or geo.dilation != (1, 1):
        return None
    pool_geo = _pool_geometry((shape[0], *geo.out_hw, kernel_shape[3]), following)
    if pool_geo.kernel != (2, 2) or pool_geo.strides != (2, 2) \
            or pool_geo.dilation != (1, 1) or pool_geo.pads != ((0, 0), (0, 0)):
        return None
    plan = conv.choose(shape[0], kernel_shape, geo, groups, np.dtype(np.float32))
    if conv.forward_plan(plan, kernel_shape, np.float32) != "implicit" \
            or kernel_shape[3] % implicit.LANES or kernel_shape[:2] == (1, 1):
        return None
    return geo


def _fused_stage(shape, step, out_shape, parked, feeds=None):
    """A convolution and the 2x2 max pool after it as one stage (see the module
    docstring; :func:`_fusable` said they fit), ``shape -> out_shape``."""
    kernel_shape, relu = step[1], step[6]
    geo = _conv_geometry(shape, step)
    kh, kw = geo.kernel
    h_out, w_out = geo.out_hw
    filters = kernel_shape[3]
    n = shape[0]
    pooled_hw = out_shape[1:3]
    block = max(1, SCRATCH_BYTES // (4 * h_out * w_out * filters))
    work_bytes = 4 * (math.prod(shape) + math.prod(out_shape) + kh * kw * shape[3] * filters)
    winograd = n >= WINOGRAD_MIN_IMAGES and (kh, kw) == (3, 3) \
        and shape[3] >= WINOGRAD_MIN_CHANNELS
    by_images = by_rows = by_tiles = None     # only the kernels this stage runs compile
    if winograd:                # the kernel's transform, made again when the kernel changed
        refresh, by_tiles = fused.wino_kernels()
        u2 = aligned_empty((16 * shape[3], filters), np.float32)
        rows_g = aligned_empty(12 * shape[3] * filters, np.float32)
        made_from = [np.empty(9 * shape[3] * filters, np.float32), True]  # its kernel, fresh
        scratch_shape = (1, 1, 1, fused.wino_scratch_floats(
            shape[2], shape[3], filters, pooled_hw[0] * pooled_hw[1]))
    else:
        by_images, by_rows, _ = fused.conv_pool_kernels()
        refresh = u2 = rows_g = made_from = None
        scratch_shape = (min(block, n), h_out, w_out, filters)
    # one image: its pooled rows are split over the threads; more: the images are
    total = pooled_hw[0] if n == 1 else n
    pixels = 4 * pooled_hw[0] * pooled_hw[1]            # the convolution's, per image
    if parked is not None and PARKED_MIN_BYTES <= work_bytes < PARKED_MAX_BYTES:
        k = parked.add(shape, out_shape, scratch_shape, relu, kh, kw, block, n == 1,
                       pixels if n == 1 else n, feeds, winograd)
        slots = 1
    else:
        k = None
        slots = 1 if work_bytes < _backend.SMALL_WORK_BYTES else _threads.num_threads()
    scratch = [aligned_empty(scratch_shape, np.float32) for _ in range(slots)]
    starts = {lo: q for q, (lo, _) in enumerate(_threads.split(total, slots))}

    def run_part(x, w2, bias_v, y, lo, hi):
        s = scratch[starts.get(lo, 0)]
        if n == 1:
            by_rows(x, w2, bias_v, s, y, relu, kh, kw, lo, hi)
        elif winograd:
            by_tiles(x, w2, bias_v, s, y, relu, lo, hi)
        else:
            by_images(x, w2, bias_v, s, y, relu, kh, kw, block, lo, hi)

    # the output buffer, when a shared stage reads this stage's output (set by
    # _stages_run), and the last kernel with its (N*kh*kw*C, F) view
    into = [None]
    seen = [None, None]

    def stage(x, weights):
        kernel, bias = weights
        if winograd:
            refresh(np.ascontiguousarray(kernel, np.float32), made_from[0], made_from[1], u2,
                    rows_g)
            made_from[1] = False
            kernel = u2                 # what the stage multiplies by, (16*C, F)
        if k is not None and parked.point_at(k, kernel, bias, filters):
            # several images: split; one image: its convolution's pixels split (into the
            # shared scratch), then pooled by this thread
            return parked.run(k, x, scratch[0])
        if kernel is seen[0]:
            w2 = seen[1]
        else:
            w2 = np.ascontiguousarray(kernel, np.float32).reshape(-1, filters)
            # a view follows the kernel's values; a converted copy would not
            seen[:] = (kernel, w2) if np.shares_memory(w2, kernel) else (None, None)
        bias_v = _no_bias(filters) if bias is None else bias
        y = into[0] if into[0] is not None else output_empty(out_shape, np.float32)
        if slots == 1:
            run_part(x, w2, bias_v, y, 0, total)
        else:
            _threads.run_chunks(lambda lo, hi: run_part(x, w2, bias_v, y, lo, hi), total,
                                threads=slots, single_blas=False)
        return y
    stage.shared_index = k

    def write_into(buffer):
        into[0] = buffer
    stage.write_into = write_into
    return stage


class _Parked:
    """A chain's fused stages shared between the calling thread and one helper thread
    parked in compiled code (:class:`convkit.fast.runtime.parked.ParkedHelper`): both take
    chunks of a stage's images (or of one image's convolution pixels) until none is left,
    with no GIL in the hand-off (~1 us against 15-60 us through the thread pool). The
    helper knows the stages' arrays in advance, so they are the chain's own: each stage's
    input (copied in when it comes from elsewhere), output, and the helper's scratch; the
    weights are the layers' arrays themselves, shared (an array replaced by another
    re-points the helper)."""

    def __init__(self, kernels):
        self.park, self.post, self.shared = kernels
        self.rounds = _spin.rounds_for(SHARED_WAIT_US)
        self._no_helper = np.zeros(_parked.FLAGS, np.int64)     # always "away"
        self.inputs, self.outputs, self.scratch = [], [], []
        self.tasks = []         # per stage, the integers of _k_shared_stage's task
        self.w2s, self.biases, self.seen = [], [], []
        self.helper = None
        self._args = None

    @classmethod
    def for_this_machine(cls):
        """A new ``_Parked`` where it pays and can run (two threads or more, the spin-waits
        usable), else ``None``."""
        if _threads.num_threads() < 2:
            return None
        kernels = fused.park_kernels()
        return None if kernels is None else cls(kernels)

    def add(self, in_shape, out_shape, scratch_shape, relu, kh, kw, block, one_image,
            total, feeds=None, winograd=False) -> int:
        """Buffers for one more fused stage (over ``0:total``: images, or one image's
        convolution pixels); its index. ``feeds``: the stage whose output is this one's
        input, read in place (MNIST convnet, batch 32: a 692 KB copy per call saved)."""
        k = len(self.inputs)
        self.inputs.append(aligned_zeros(in_shape, np.float32) if feeds is None else
                           self.outputs[feeds])
        self.outputs.append(aligned_zeros(out_shape, np.float32))
        self.scratch.append(aligned_zeros(scratch_shape, np.float32))
        chunk = SHARED_CHUNK_PIXELS if one_image else max(1, total // SHARED_CHUNKS)
        self.tasks.append(fused.task_row(k, relu, winograd, kh, kw, block, one_image, chunk,
                                         total, self.rounds))
        self.w2s.append(None)
        self.biases.append(None)
        self.seen.append(None)
        return k

    def point_at(self, k: int, kernel, bias, filters: int) -> bool:
        """Stage ``k`` reads these weights (the helper too); ``False`` when they cannot be
        shared (not C-contiguous float32: the stage then runs on its own)."""
        seen = self.seen[k]
        if seen is not None and seen[0] is kernel and seen[1] is bias:
            return True
        for array in (kernel, bias):
            if array is not None and (array.dtype != np.float32
                                      or not array.flags.c_contiguous):
                return False
        self.w2s[k] = kernel.reshape(-1, filters)
        self.biases[k] = _no_bias(filters) if bias is None else bias
        self.seen[k] = (kernel, bias)
        self._args = None
        return True

    def run(self, k: int, x, own_scratch):
        """Stage ``k`` on ``x`` (its images, or one image's convolution pixels), shared with
        the helper when it is parked, in one compiled call
        (:func:`convkit.fast.kernels.fused._k_shared_stage`); returns the stage's output
        buffer."""
        inp = self.inputs[k]
        if x is not inp:
            np.copyto(inp, x)
        y = self.outputs[k]
        helper = self._helper()
        if helper is None:
            flags, posted = self._no_helper, 0
        else:
            helper.take_turn()
            if helper.flags[_parked.STATE] == _parked.AWAY:
                helper.wake()       # this stage runs alone; parked for the next one
            flags, posted = helper.flags, helper.posted
        status = self.shared(flags, self.tasks[k], posted, inp, self.w2s[k], self.biases[k],
                             own_scratch, self.scratch[k], y)
        if helper is None:
            return y
        if status == 0:
            helper.wake()           # (again: it may have left while this stage ran)
            return y
        if status == 2:             # parked, but every chunk was taken before it started
            return y
        helper.claimed()
        if status < 0:              # still running: wait here (interrupts deferred), pool
            helper.wait()
            if self.tasks[k][fused.T_ONE_IMAGE]:    # one image: its pixels still to pool
                pool = pooling.max_values_2x2("max_pool2d_values")
                pool(self.scratch[k], y, 0, y.shape[1])
        return y

    def _helper(self):
        """The helper, pointed at the current arrays; ``None`` until every stage has been
        given its weights once."""
        if self._args is None:
            if any(w2 is None for w2 in self.w2s):
                return None
            args = tuple(tuple(arrays) for arrays in (self.inputs, self.w2s, self.biases,
                                                       self.scratch, self.outputs))
            args += (np.stack(self.tasks),)
            if self.helper is None:
                self.helper = _parked.ParkedHelper(self.park, self.post, _spin.wait_flag,
                                                   args, _spin.rounds_for(PARKED_SPIN_US))
            else:
                self.helper.replace_args(args)
            self._args = args
        return self.helper


@functools.lru_cache(maxsize=16)
def _no_bias(filters: int) -> np.ndarray:
    zeros = np.zeros(filters, np.float32)
    zeros.setflags(write=False)
    return zeros
