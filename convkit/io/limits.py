"""The limits convkit's loaders check before they allocate or decompress anything.

A file of ``n`` bytes can make a loader allocate at most a fixed multiple of ``n`` (plus a
small constant), and a file that asks for more is refused with
:class:`~convkit.errors.FileFormatError` before the allocation. The numbers:

=================================  ==============  ==============================================
limit                              value           what it bounds
=================================  ==============  ==============================================
``MAX_META_BYTES``                 16 MiB          ``convkit.json`` once decompressed (a
                                                   LeNet-5's is about 6 KB)
``MAX_JSON_DEPTH``                 64              nesting of lists/objects in any JSON a
                                                   loader parses (a model config needs ~8)
``MAX_MEMBERS``                    100,000         entries in a zip (and in a manifest)
``MAX_DEFLATE_RATIO``              50              a deflated member's size over its compressed
                                                   size (arrays are written uncompressed, so a
                                                   real file is near 1; a zip bomb is ~1000)
``MAX_ARRAY_RANK``                 32              dimensions of a stored array
``MAX_CONFIG_INT``                 2**24           any size in a model config: ``units``,
                                                   ``filters``, kernel sizes, strides, input
                                                   dimensions, ...
``MAX_CONFIG_ELEMENTS``            2**31           the product of an input shape's dimensions
``MAX_LAYERS``                     100,000         layers in a model config
``MAX_NAME_LENGTH``                1,024           a layer or model name
``MAX_KERAS_MEMBER_BYTES``         2 GiB           a member of a ``.keras`` zip (and at most
                                                   ``MAX_DEFLATE_RATIO`` times its compressed
                                                   size)
=================================  ==============  ==============================================

Building a model from a file is bounded by the file itself: while a loaded config is turned
into layers, :func:`weight_budget` lets the layers create at most as many weight bytes as the
file stores (plus ``WEIGHT_BUDGET_SLACK``), since every weight of a saved model is in it.
"""
from __future__ import annotations

import contextlib
import contextvars
import math
import os

from ..errors import FileFormatError

MAX_META_BYTES = 16 * 1024 * 1024
MAX_JSON_DEPTH = 64
MAX_MEMBERS = 100_000
MAX_DEFLATE_RATIO = 50
MAX_ARRAY_RANK = 32
MAX_CONFIG_INT = 2 ** 24
MAX_CONFIG_ELEMENTS = 2 ** 31
MAX_LAYERS = 100_000
MAX_NAME_LENGTH = 1024
MAX_KERAS_MEMBER_BYTES = 2 * 1024 ** 3
#: weight bytes a model built from a file may create beyond the bytes the file stores
WEIGHT_BUDGET_SLACK = 1 << 20

_budget: contextvars.ContextVar = contextvars.ContextVar("convkit_weight_budget", default=None)


def json_depth(value) -> int:
    """Nesting depth of parsed JSON (a scalar is 0, ``[[1]]`` is 2), without recursion, so
    a 100,000-deep list is measured, not a ``RecursionError``."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        # only containers are pushed: a list of a million numbers costs no stack
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, (dict, list)))
    return deepest


class _Budget:
    def __init__(self, where: str, nbytes: int):
        self.where = where
        self.left = int(nbytes)


@contextlib.contextmanager
def weight_budget(where: str, nbytes: int):
    """Within this block, layers may create at most ``nbytes`` bytes of weights in total;
    :func:`reserve_weight` raises ``FileFormatError`` (naming ``where``) for more.

    >>> with weight_budget("load_model: 'net.convkit'", 4_000_000):    # doctest: +SKIP
    ...     model = model_from_config(config)
    """
    token = _budget.set(_Budget(where, nbytes))
    try:
        yield
    finally:
        _budget.reset(token)


def reserve_weight(owner: str, name: str, shape, itemsize: int) -> None:
    """Count a weight of ``shape`` against the current :func:`weight_budget` (nothing
    happens outside one). Called by ``Layer.add_weight`` before it allocates."""
    budget = _budget.get()
    if budget is None:
        return
    nbytes = math.prod(int(d) for d in shape) * int(itemsize)
    if nbytes > budget.left:
        raise FileFormatError(f"{budget.where}: {owner} would create weight {name!r} of shape "
                              f"{tuple(shape)} ({nbytes:,} bytes), more than the file holds "
                              f"({budget.left:,} bytes left); the model description is "
                              f"damaged or hostile")
    budget.left -= nbytes


def refuse_special_file(path, fail) -> None:
    """Call ``fail(reason)`` when ``path`` exists but is not a regular file: a FIFO would
    block the open and a device never ends. A missing path is left to ``open`` (a
    ``FileNotFoundError``, as usual)."""
    if os.path.exists(path) and not os.path.isfile(path):
        fail("it is not a regular file")
