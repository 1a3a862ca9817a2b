"""The one door to the fast paths: the dispatch table.

Every public op in :mod:`convkit.ops` that has a fast path opens with one question::

    fast = dispatch.lookup(op, direction, *args)
    if fast is not None:
        return fast(*args)
    ... the NumPy reference code ...

:func:`lookup` answers it from :data:`TABLE`, ``(op, direction) -> rule``, where a rule
takes the op's arguments (their shapes and dtype) and returns the function that computes
the result faster from the same arguments, or ``None`` when no fast path applies. Before
any rule runs, :func:`lookup` checks the one switch (:func:`allowed`): ``CONVKIT_ACCEL``
not ``0`` (its run-time form :func:`convkit.fast.set_backend`) and numba importable. So
without numba, or with ``CONVKIT_ACCEL=0``, every op runs its NumPy code and nothing here
can reach a compiled kernel. On a first run the answer is also ``None`` while the fast
path's kernels compile in the background (:mod:`convkit.fast.runtime.compiling`). The fast paths compute the same numbers as the reference up to float rounding
(tested in ``tests/ops`` on both sides of the switch and in ``tests/ops_fast``).

================  ===============  ===============================================
op                direction        fast path (when its rule applies)
================  ===============  ===============================================
conv2d            forward          the plan :func:`conv_plan` names, :mod:`.conv`
conv2d            backward         the gradients' plan, :mod:`.conv`
max_pool2d        forward          compiled values only (inference)
max_pool2d        forward_argmax   compiled values and argmax (training)
max_pool2d        backward         compiled argmax, then the scatter
max_pool2d        backward_argmax  compiled scatter of a given argmax
avg_pool2d        forward          compiled (row-sum kernels for tiling windows)
avg_pool2d        backward         compiled
dense             forward          rows split over the threads, one-thread BLAS each
dense             backward         the same for ``dy k^T`` and ``x^T dy``
================  ===============  ===============================================

Pooling and dense rules need float32 or float64 and a non-empty batch.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import ShapeError
from ..ops.padding import check_data_format
from ..shapes import window_geometry
from . import chain, conv, kernels
from .runtime import backend, compiling, threads

__all__ = ["allowed", "lookup", "prepare", "conv_plan", "TABLE", "PREPARERS"]


def allowed() -> bool:
    """The one switch: may the fast paths run? ``CONVKIT_ACCEL`` is not ``0``, the backend
    is ``"auto"`` (:func:`convkit.fast.set_backend`) and numba imports."""
    return backend.enabled()


def lookup(op: str, direction: str, *args):
    """The fast path for ``op`` in ``direction`` given the op's arguments (see
    :data:`TABLE`), to be called with the same arguments, or ``None``: then the caller's
    NumPy code runs."""
    if not allowed():
        return None
    fast = TABLE[op, direction](*args)
    if fast is None or not compiling.in_background() or not getattr(fast, "compiles", True):
        return fast
    if compiling.ready(_key(op, direction, fast, args),
                       lambda copies=[_copy(a) for a in args]: fast(*copies)):
        return fast
    return None


def prepare(op: str, direction: str, *spec):
    """A fast path with its set-up done once, for calls that repeat the same shapes (a
    model's inference): ``prepare(op, direction, *spec)`` returns ``run(*arrays)`` or
    ``None`` (no fast path: the caller takes the public op). ``spec`` holds shapes, dtypes
    and the op's arguments, hashable (see :data:`PREPARERS`); the caller has checked its
    arrays against them once (the public op's checks), and ``run`` does not check again.
    The answer is remembered per ``spec`` (but see :data:`UNSHARED`); the switch (:func:`allowed`) is asked on every
    call, and nothing is prepared while kernels compile in the background."""
    if not allowed() or compiling.in_background():
        return None
    key = (op, direction, spec)
    try:
        run = _prepared.get(key)
    except TypeError:                # an unhashable argument (a list): no remembering
        return None
    if run is None:
        try:
            run = PREPARERS[op, direction](*spec) or False
        except ShapeError:           # the public op gives the error, in its own words
            run = False
        if (op, direction) in UNSHARED and run:
            return run               # the caller's own (it holds buffers and a helper)
        if len(_prepared) >= 512:
            _prepared.clear()
        _prepared[key] = run
    return run or None


_prepared: dict = {}   # (op, direction, spec) -> run, or False for "no fast path"


def _prepare_conv_forward(x_shape, dtype, kernel_shape, strides, padding, dilation_rate,
                          groups, padding_mode, data_format, relu):
    """``run(x, kernel, bias) -> y`` for channels_last ``conv2d`` (+ ReLU) with zero
    padding: the plan chosen once, the register-tile product's set-up too."""
    from ..ops.conv import _ConvSetup
    if data_format != "channels_last" or padding_mode != "zeros":
        return None
    dtype = np.dtype(dtype)
    geo = window_geometry(x_shape[1:3], kernel_shape[:2], strides, padding, dilation_rate)
    plan = conv.choose(x_shape[0], kernel_shape, geo, groups, dtype)
    if plan == "numpy":
        return None
    if conv.forward_plan(plan, kernel_shape, dtype) == "implicit":
        return kernels.implicit.prepare_forward(x_shape, kernel_shape, geo, bool(relu))

    def run(x, kernel, bias):
        return conv.forward(_ConvSetup(x, kernel, geo, groups, "zeros", dtype), plan, bias,
                            relu)
    return run


def _prepare_max_pool(x_shape, dtype, pool_size, strides, padding, dilation_rate, ceil_mode,
                      data_format):
    """``run(x) -> y`` for channels_last ``max_pool2d`` values (inference)."""
    if data_format != "channels_last" or np.dtype(dtype) not in (np.float32, np.float64) \
            or not x_shape[0]:
        return None
    geo = window_geometry(x_shape[1:3], pool_size, strides, padding, dilation_rate,
                          bool(ceil_mode), max_pad_half_window=True)
    return kernels.pooling.prepare_max_values(x_shape, np.dtype(dtype), geo)


#: the ops with a prepared form, ``(op, direction) -> preparer(*spec) -> run or None``:
#: ``conv2d`` forward takes ``(x_shape, dtype, kernel_shape, strides, padding,
#: dilation_rate, groups, padding_mode, data_format, relu)``; ``max_pool2d`` forward takes
#: ``(x_shape, dtype, pool_size, strides, padding, dilation_rate, ceil_mode, data_format)``
#: (``strides`` already resolved: the pool size when it was None); ``chain`` forward, a
#: model's layers at inference, takes ``(x_shape, dtype, steps)`` (:mod:`.chain`)
PREPARERS = {
    ("conv2d", "forward"): _prepare_conv_forward,
    ("max_pool2d", "forward"): _prepare_max_pool,
    ("chain", "forward"): chain.prepare_chain,
}


#: prepared forms that hold state of their own (buffers, a helper thread): each ``prepare``
#: makes a new one, for the caller to keep (a model's chain; two models of the same
#: architecture must not share one)
UNSHARED = {("chain", "forward")}


def _copy(arg):
    """The background thread's own copy of an argument: the caller may change its arrays
    (an optimizer's in-place update) while the compile runs."""
    if isinstance(arg, np.ndarray):
        return arg.copy()
    if hasattr(arg, "geo") and hasattr(arg, "kernel"):           # a convolution's set-up
        return dataclasses.replace(arg, x=arg.x.copy(), kernel=arg.kernel.copy())
    return arg


def _key(op, direction, fast, args) -> tuple:
    """What decides which kernels a fast path compiles: the op, the plan and, per argument,
    its dtype and rank (a convolution's set-up: dtype, groups, padding, kernel size)."""
    return (op, direction, getattr(fast, "plan", None), tuple(_describe(a) for a in args))


def _describe(arg):
    if isinstance(arg, np.ndarray):
        return arg.dtype.str, arg.ndim
    if hasattr(arg, "geo") and hasattr(arg, "kernel"):           # a convolution's set-up
        return (arg.dtype.str, arg.groups == 1, arg.mode, arg.geo.pads == ((0, 0), (0, 0)),
                arg.kernel.shape[:2])
    if arg is None or isinstance(arg, (bool, int, str)):
        return arg
    return type(arg).__name__


def conv_plan(x_shape, kernel_shape, strides=1, padding="valid", dilation_rate=1, groups=1,
              data_format="channels_last", dtype=np.float32, backward=False) -> str:
    """Which implementation :func:`convkit.ops.conv2d` (or, with ``backward=True``,
    :func:`convkit.ops.conv2d_backward`) uses for these shapes under the current backend
    (:func:`convkit.fast.set_backend`). The first that applies, in this order:

    ``"winograd"``   ungrouped 3x3, stride 1, dilation 1, ``C_in, filters >= 8``
                     (:mod:`convkit.ops.winograd`, ReLU and bias fused in the forward);
                     where ``"implicit"`` applies, only from ``C_in * filters`` of
                     :data:`convkit.fast.conv.WINOGRAD_MIN_PAIRS_FORWARD` (forward) or
                     :data:`~convkit.fast.conv.WINOGRAD_MIN_PAIRS_BACKWARD` (gradients) on
    ``"implicit"``   (forward only, ahead of the next four) where the register-tile
                     product applies (see below) and ``"winograd_s2"`` does not
    ``"taps"``       ungrouped, ``kh*kw*C_in <= 32``, ``C_in <= 4``, ``filters >= 16``
                     (a first layer on grey or RGB images, any stride / dilation): one GEMM
                     per block of images over tap-major columns (:mod:`convkit.ops.tapcols`),
                     bias and ReLU fused; its input gradient takes the next plan in this list
    ``"wide"``       ungrouped, stride 1, ``kh*kw*C_in <= 25`` (e.g. a first layer on
                     grey images): compiled direct convolution on the wide grid, one
                     image per task, ReLU and bias fused, gradients in one pass
    ``"direct"``     ungrouped, ``C_in * filters <= 16``, kernel at least 5x5 (compiled)
    ``"depthwise"``  one input channel per group (compiled, any stride / dilation)
    ``"pointwise"``  ungrouped 1x1, stride 1, no padding: threaded matrix products (float32
                     with at least 16 input channels and a multiple of 16 filters: the
                     register-tile product of :mod:`convkit.fast.kernels.implicit`, bias and
                     ReLU in registers)
    ``"winograd_s2"`` ungrouped float32 3x3, stride 2, dilation 1, at least 16 input
                     channels, a multiple of 16 filters, output width cut into 4-wide tiles
                     with at most 15 % waste: F(4, 2) along the width, 75 % of the
                     multiplies (:mod:`convkit.fast.kernels.winograd_s2`, bias and ReLU fused);
                     its gradients by the transforms' adjoints, also 75 % (input channels
                     a multiple of 16; else the ``"im2col"`` ones)
    ``"implicit"``   ungrouped float32, a multiple of 16 filters, at least 3 contiguous
                     input values per kernel row (``kw*C_in``; ``C_in`` with a dilated
                     width; a 1x1 kernel needs 16 channels): the forward as an implicit
                     product, no columns, the output tile, bias and ReLU in registers
                     (:mod:`convkit.fast.kernels.implicit`); its gradients are the
                     ``"im2col"`` ones
    ``"im2col"``     anything else: compiled im2col / col2im around threaded products
                     (grouped convolutions one group at a time)
    ``"numpy"``      the NumPy code (backend ``"numpy"``, or numba unavailable)

    Other padding modes pad first, then take the plan of the zero-padded problem.

    >>> conv_plan((8, 56, 56, 64), (1, 1, 64, 128)) in ("pointwise", "numpy")
    True
    >>> conv_plan((128, 14, 14, 6), (5, 5, 6, 16)) in ("implicit", "numpy")   # LeNet-5
    True
    """
    check_data_format(data_format, "conv_plan")
    n, h, w = (x_shape[0], *x_shape[1:3]) if data_format == "channels_last" else \
        (x_shape[0], *x_shape[2:4])
    geo = window_geometry((h, w), kernel_shape[:2], strides, padding, dilation_rate,
                          where="conv_plan")
    if not allowed():
        return "numpy"
    return conv.choose(n, tuple(kernel_shape), geo, int(groups), np.dtype(dtype),
                       backward=bool(backward))


# ----------------------------------------------------------------------------- the rules
def _floats(x: np.ndarray) -> bool:
    return x.dtype in (np.float32, np.float64) and x.size > 0


def _conv_forward(s, bias, relu):
    """``fast(s, bias, relu) -> y (N, H_out, W_out, F)``; ``s`` is the set-up of
    :func:`convkit.ops.conv2d`."""
    plan = conv.plan_for(s)
    if plan == "numpy":
        return None

    def fast(s, bias, relu):
        return conv.forward(s, plan, bias, relu)
    fast.plan = plan
    return fast


def _conv_backward(s, dy, relu_y, input_grad):
    """``fast(s, dy, relu_y, input_grad) -> (dx or None, dkernel, dbias)``, NHWC."""
    plan = conv.plan_for(s, backward=True)
    if plan == "numpy":
        return None

    def fast(s, dy, relu_y, input_grad):
        return conv.backward(s, plan, dy, relu_y, input_grad)
    fast.plan = plan
    return fast


def _max_pool_backward_from_x(dy, x, geo):
    """The winners found again by the forward with argmax, then the scatter: two passes
    that vectorise over channels, faster than one compare-and-write pass per window."""
    _, argmax = kernels.max_pool2d_forward(x, geo)
    return kernels.max_pool2d_backward(dy, argmax, x.shape, geo)


def _dense_forward(x, kernel):
    """``x @ kernel`` over the last axis, the rows split over the threads."""
    x2d = np.ascontiguousarray(x).reshape(-1, kernel.shape[0])        # (rows, in)
    return threads.matmul(x2d, kernel).reshape(x.shape[:-1] + (kernel.shape[1],))


def _dense_backward(dy2d, x2d, kernel, input_grad):
    """``(dx2d or None, dkernel)`` of ``y = x2d @ kernel``, rows split over the threads."""
    dy2d = np.ascontiguousarray(dy2d)
    dx2d = threads.matmul(dy2d, kernel.T) if input_grad else None
    return dx2d, threads.matmul_tn(np.ascontiguousarray(x2d), dy2d)


_dense_forward.compiles = _dense_backward.compiles = False   # NumPy products on threads


def _if_floats(fast):
    return lambda x, *rest: fast if _floats(x) else None


#: THE table: ``(op, direction) -> rule(arrays) -> fast function or None``
TABLE = {
    ("conv2d", "forward"): _conv_forward,
    ("conv2d", "backward"): _conv_backward,
    ("max_pool2d", "forward"): _if_floats(kernels.max_pool2d_values),
    ("max_pool2d", "forward_argmax"): _if_floats(kernels.max_pool2d_forward),
    ("max_pool2d", "backward"): _if_floats(_max_pool_backward_from_x),
    ("max_pool2d", "backward_argmax"): _if_floats(kernels.max_pool2d_backward),
    ("avg_pool2d", "forward"): _if_floats(kernels.avg_pool2d_forward),
    ("avg_pool2d", "backward"): _if_floats(kernels.avg_pool2d_backward),
    ("dense", "forward"): lambda x, kernel: _dense_forward if x.ndim >= 2 else None,
    ("dense", "backward"): lambda dy2d, x2d, kernel, input_grad: _dense_backward,
}
