"""A software prefetch the compiled kernels can ask for.

``prefetch(a, i, j)`` asks the CPU to bring the cache line holding ``a[i, j]`` (``a`` a 2-D
array) towards its first-level cache, without waiting for it and without changing anything.
The address is computed from the strides without a bounds check, so for a C-contiguous
``a`` a column ``j`` past the end of row ``i`` names the following rows' values: the lines
of rows ``i, i + 1, ...`` are ``prefetch(a, i, 0)``, ``prefetch(a, i, 16)``, ... (float32,
64-byte lines). A kernel uses it for data it will read a little later that the hardware
prefetchers fetch too late: the next tile's input rows in :func:`convkit.fast._generated.conv_regs._k_gemm_regs`,
whose first reads otherwise stall the tile's multiply-adds. Two threads, in one process:
25088 x 64 @ 64 x 128 (a 1x1 convolution) 2.22 ms without and 2.11 ms with, against
1.87-1.94 ms when the input rows are all in cache; 25088 x 128 @ 128 x 64 (its input
gradient) 2.50 and 2.20 ms.

In the interpreter it does nothing. Compiled by numba, it is one ``llvm.prefetch`` (read,
high locality, data cache; ``prefetcht0`` on x86-64): :func:`register` teaches numba that,
and :func:`convkit.fast.runtime.backend.jit` calls it before compiling any kernel, so
importing this module never imports numba. A prefetch only moves data between memory and
the caches: the kernels compute the same numbers with or without it.

>>> import numpy as np
>>> prefetch(np.zeros((4, 16), np.float32), 1, 0) is None
True
"""
from __future__ import annotations

import threading

__all__ = ["prefetch", "register"]

_lock = threading.Lock()
_registered = False


def prefetch(a, i, j) -> None:
    """Hint that ``a[i, j]`` will be read soon (``a`` 2-D, ``i`` and ``j`` integers, not
    checked against the bounds: a prefetch never faults). Does nothing in the interpreter."""
    return None


def _intrinsic_name(llvm_version) -> str:
    # LLVM 15 and later mangle the intrinsic by address space only ("opaque" pointers)
    return "llvm.prefetch.p0" if llvm_version >= (15,) else "llvm.prefetch.p0i8"


def register() -> None:
    """Give :func:`prefetch` its compiled form (once per process; numba must be
    importable)."""
    global _registered
    if _registered:
        return
    with _lock:
        if not _registered:
            _register()
            _registered = True


def _register() -> None:
    from llvmlite import binding, ir
    from numba.core import cgutils, types
    from numba.extending import intrinsic, overload

    name = _intrinsic_name(tuple(binding.llvm_version_info))

    def _accepts(a, i, j):
        return (isinstance(a, types.Array) and a.ndim == 2 and isinstance(i, types.Integer)
                and isinstance(j, types.Integer))

    @intrinsic
    def _line(typingctx, a, i, j):
        def codegen(context, builder, signature, args):
            array_type, i_type, j_type = signature.args
            array = context.make_array(array_type)(context, builder, args[0])
            index = [context.cast(builder, args[1], i_type, types.intp),
                     context.cast(builder, args[2], j_type, types.intp)]
            pointer = cgutils.get_item_pointer(context, builder, array_type, array, index,
                                               wraparound=False)
            byte_pointer = builder.bitcast(pointer, ir.IntType(8).as_pointer())
            i32 = ir.IntType(32)
            signature_ir = ir.FunctionType(ir.VoidType(), [byte_pointer.type, i32, i32, i32])
            function = cgutils.get_or_insert_function(builder.module, signature_ir, name)
            # read (0), keep in all cache levels (3), data cache (1)
            builder.call(function, [byte_pointer, ir.Constant(i32, 0), ir.Constant(i32, 3),
                                    ir.Constant(i32, 1)])
            return context.get_dummy_value()
        if _accepts(a, i, j):
            return types.none(a, i, j), codegen
        return None

    @overload(prefetch, jit_options={"nogil": True})
    def _prefetch(a, i, j):
        if _accepts(a, i, j):
            def compiled(a, i, j):
                _line(a, i, j)
            return compiled
        return None
