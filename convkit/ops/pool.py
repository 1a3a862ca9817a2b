"""2-D max and average pooling (windowed and global), forward and backward.

Windowed pooling reads the same strided windows as convolution
(:mod:`convkit.ops.windows`) and reduces each over its ``kh x kw`` cells; the reductions
loop over the kernel offsets, each step touching one strided slice ``(N, H_out, W_out, C)``.
Windows that tile the input (stride = pool size, no padding or dilation) are a view
``(N, H_out, kh, W_out, kw, C)`` of it, so their gradients are written straight into each
offset's cells instead of added up.

Shapes (channels_last; channels_first is ``(N, C, H, W)`` in and out)::

    x  (N, H, W, C)  ->  y  (N, H_out, W_out, C)

    valid     H_out = floor((n - d*(k-1) - 1) / s) + 1
    same      H_out = ceil(n / s), pads split before = total // 2, after = the rest
    explicit  H_out = floor((n + before + after - d*(k-1) - 1) / s) + 1   (pads <= k // 2)
    ceil_mode ceil instead of floor; a window starting inside the right padding is dropped

``strides=None`` means ``strides = pool_size``. Max pooling pads with -inf, so padded cells
never win; average pooling divides by the number of real cells in each window
(``count_include_pad=False``, the Keras rule) or by the cells of the window that lie inside
the input or its explicit padding (``count_include_pad=True``, PyTorch's rule; the extra
cells ``ceil_mode`` adds beyond the padding never count).

This NumPy code is the reference. Each windowed op first asks the dispatch table
(:mod:`convkit.fast.dispatch`) for a fast path (the compiled kernels, with numba and
``CONVKIT_ACCEL`` not ``0``) and runs the code below when there is none, over the batch on
a few threads when the arrays are large (:func:`~convkit.ops.batch_threads.map_batch`); the
results are the same up to the order of float additions.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .._validate import as_float_array
from ..errors import ShapeError
from ..shapes import Geometry, window_geometry
from .padding import (check_data_format, from_channels_last, layout_of, layout_shape,
                      to_channels_last)
from ..fast import dispatch
from .batch_threads import map_batch, over_images
from .windows import offset_window, pad_for_windows, windows_backward

__all__ = ["max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
           "global_avg_pool2d", "global_avg_pool2d_backward", "global_max_pool2d",
           "global_max_pool2d_backward", "max_pool2d_with_argmax",
           "max_pool2d_backward_from_argmax"]


def _setup(where, x, pool_size, strides, padding, dilation_rate, ceil_mode, data_format):
    check_data_format(data_format, where)
    x = as_float_array(x, where, "input", ndim=4, layout=layout_of(data_format))
    if not isinstance(ceil_mode, (bool, np.bool_)):
        raise ShapeError(f"{where}: ceil_mode must be True or False, got {ceil_mode!r}")
    xl = to_channels_last(x, data_format)
    try:
        geo = window_geometry(xl.shape[1:3], pool_size, pool_size if strides is None else strides,
                              padding, dilation_rate, bool(ceil_mode), where=where,
                              max_pad_half_window=True)
    except ShapeError as exc:
        raise ShapeError(f"{exc} (input shape {x.shape}, pool_size {pool_size!r})") from None
    return x, xl, geo


def _check_dy(where, dy, x, geo: Geometry, data_format):
    dy = as_float_array(dy, where, "dy", ndim=4, layout=layout_of(data_format))
    channels = to_channels_last(x, data_format).shape[3]
    expected = layout_shape((x.shape[0], *geo.out_hw, channels), data_format)
    if dy.shape != expected:
        raise ShapeError(f"{where}: dy has shape {dy.shape} but the pooled output of input "
                         f"shape {x.shape} has shape {expected}")
    return to_channels_last(dy, data_format).astype(x.dtype, copy=False)


def _offsets(geo: Geometry):
    return [(a, b) for a in range(geo.kernel[0]) for b in range(geo.kernel[1])]


def _is_tiling(geo: Geometry) -> bool:
    """Non-overlapping, unpadded windows: pooling is a reshape and a reduction."""
    return (geo.strides == geo.kernel and geo.dilation == (1, 1) and geo.extra == (0, 0)
            and geo.pads == ((0, 0), (0, 0)))


def _tiles(arr: np.ndarray, geo: Geometry, writeable: bool = False) -> np.ndarray:
    """The cells of tiling windows as a view ``(N, H_out, kh, W_out, kw, C)`` of ``arr``
    (NHWC): ``tiles[n, i, a, j, b, c] = arr[n, i*kh + a, j*kw + b, c]``; rows and columns
    past the last whole window are left out."""
    (kh, kw), (h_out, w_out) = geo.kernel, geo.out_hw
    n, c = arr.shape[0], arr.shape[3]
    s_n, s_h, s_w, s_c = arr.strides
    return as_strided(arr, shape=(n, h_out, kh, w_out, kw, c),
                      strides=(s_n, s_h * kh, s_h, s_w * kw, s_w, s_c), writeable=writeable)


def _scatter_offsets(offset_grad, geo: Geometry, out: np.ndarray) -> np.ndarray:
    """Gradient of the input, written into ``out`` ``(N, H, W, C)``, from the gradients of
    each kernel offset's cells, ``offset_grad(a, b, out=None)`` ``(N, H_out, W_out, C)``:
    :func:`windows_backward`, or for tiling windows, where every cell belongs to one window,
    each offset's gradient written by ``offset_grad`` straight into its cells (``out``, a
    strided view; nothing to add up)."""
    if not _is_tiling(geo):
        out[...] = windows_backward(offset_grad, geo, out.shape, out.dtype)
        return out
    dx, tiles = _tiling_gradient(geo, out)
    for a, b in _offsets(geo):
        offset_grad(a, b, out=tiles[:, :, a, :, b])
    return dx


def _tiling_gradient(geo: Geometry, dx: np.ndarray):
    """The input gradient ``dx`` ``(N, H, W, C)`` for tiling windows, set to zero where no
    window reaches (rows and columns past the last whole window), and its cells
    :func:`_tiles` to write the rest."""
    (kh, kw), (h_out, w_out) = geo.kernel, geo.out_hw
    dx[:, h_out * kh:] = 0
    dx[:, :h_out * kh, w_out * kw:] = 0
    return dx, _tiles(dx, geo, writeable=True)                   # (N, H_out, kh, W_out, kw, C)


#: the pooling forwards work through blocks of images whose arrays hold about this many
#: bytes, so a block's padded copy and running result stay in cache between the passes
BLOCK_BYTES = 1 << 20
#: the tiling max-pool gradient takes blocks of whole images holding about this many
#: bytes (input, gradient and result; 128x28x28x32: 18 images, 3.6-3.8 ms against 3.9-4.2
#: for each thread's half at once and 5.5-5.9 for blocks of 1 MB)
TILES_BLOCK_BYTES = 4 << 20


# ----------------------------------------------------------------------------- max
def max_pool2d(x, pool_size, strides=None, padding="valid", *, dilation_rate=1,
               ceil_mode=False, data_format="channels_last", return_argmax=False):
    """Maximum over each ``pool_size`` window.

    Shapes: ``(N, H, W, C) -> (N, H_out, W_out, C)`` (see the module docstring for
    ``H_out``); padded cells are -inf, so they never win. ``strides=None`` means
    ``strides = pool_size``; ``dilation_rate`` spreads the window's cells apart. A NaN in a
    window gives NaN (as in PyTorch).

    With ``return_argmax=True`` the result is ``(y, argmax)``: ``argmax`` is int32, shaped
    ``(N, H_out, W_out, C)`` in channels_last order whatever ``data_format``, and holds the
    flat index ``ih * W + iw`` of each window's winner in the unpadded input (the first
    maximum in row-major window order on a tie, the last NaN if there is one, ``-1`` for a
    window of padding only) -- what :func:`max_pool2d_backward` takes as ``argmax=`` to skip
    finding the winners again (PyTorch's ``return_indices``, in NHWC).

    >>> x = np.arange(16.0).reshape(1, 4, 4, 1)
    >>> max_pool2d(x, 2)[0, :, :, 0]
    array([[ 5.,  7.],
           [13., 15.]])
    >>> max_pool2d(x, 2, return_argmax=True)[1][0, :, :, 0]
    array([[ 5,  7],
           [13, 15]], dtype=int32)
    """
    x, xl, geo = _setup("max_pool2d", x, pool_size, strides, padding, dilation_rate, ceil_mode,
                        data_format)
    if return_argmax:
        fast = dispatch.lookup("max_pool2d", "forward_argmax", xl, geo)
        if fast is not None:
            y, argmax = fast(xl, geo)
        else:
            y, winner = _max_winners(xl, geo)
            argmax = _winner_to_flat(winner, geo)
        return from_channels_last(y, data_format), argmax
    fast = dispatch.lookup("max_pool2d", "forward", xl, geo)
    if fast is not None:
        return from_channels_last(fast(xl, geo), data_format)
    y = np.empty(_out_shape(xl, geo), dtype=xl.dtype)
    if _is_tiling(geo):
        _tiling_forward(np.maximum, xl, geo, y)
    else:
        over_images(lambda x, out, rows: _max_values(x, geo, _rows(rows), out[:, _rows(rows)]),
                    y, xl, block_bytes=BLOCK_BYTES)
    return from_channels_last(y, data_format)


def _out_shape(xl: np.ndarray, geo: Geometry) -> tuple:
    return (xl.shape[0], *geo.out_hw, xl.shape[3])               # (N, H_out, W_out, C)


def _rows(rows: tuple[int, int] | None) -> slice:
    """Output rows ``(start, stop)`` as a slice; None: all of them."""
    return slice(None) if rows is None else slice(*rows)


def _max_values(xl: np.ndarray, geo: Geometry, rows: slice = slice(None),
                out: np.ndarray | None = None) -> np.ndarray:
    """Each window's maximum, ``(N, H_out, W_out, C)`` (output rows ``rows`` only): one
    ``np.maximum`` per kernel offset over the whole batch (NaN propagates)."""
    padded = pad_for_windows(xl, geo, "zeros", -np.inf)
    return _fold_offsets(np.maximum, padded, geo, rows, out)


def _fold_offsets(ufunc, padded: np.ndarray, geo: Geometry, rows: slice = slice(None),
                  out: np.ndarray | None = None) -> np.ndarray:
    """``ufunc`` (``np.maximum``, ``np.add``) over the windows of every kernel offset, one
    pass each, into ``out`` or a new ``(N, H_out, W_out, C)`` array: the first window
    copied, then ``ufunc(result, window, out=result)`` for each further one (see
    :func:`_fold_tiles`)."""
    windows = [offset_window(padded, geo, a, b)[:, rows] for a, b in _offsets(geo)]
    if out is None:
        result = windows[0].copy()
    else:
        result = out
        np.copyto(result, windows[0])
    for window in windows[1:]:
        ufunc(result, window, out=result)
    return result


def _tiling_forward(ufunc, xl: np.ndarray, geo: Geometry, out: np.ndarray,
                    divisor=None) -> None:
    """:func:`_fold_tiles` of ``ufunc`` over windows that tile ``xl`` ``(N, H, W, C)``, into
    ``out`` ``(N, H_out, W_out, C)``, then divided by ``divisor`` (a number) if given,
    block by block of images (the output rows of a single image), over the batch's threads.
    The cells' view is made once for the whole batch and each block only slices it: the
    general path's padding and window helpers, run again for every block, took 0.1 of 1.25
    ms (128x28x28x32, pool 2, 16 blocks of 8 images on one thread)."""
    cells = _tiles(xl, geo)                                      # (N, H_out, kh, W_out, kw, C)
    then = None if divisor is None else _division(divisor)

    def fold(cells, out, rows):
        if rows is not None:
            cells, out = cells[:, rows[0]:rows[1]], out[:, rows[0]:rows[1]]
        _fold_tiles(ufunc, cells, out, then)
    over_images(fold, out, cells, block_bytes=BLOCK_BYTES)


def _fold_tiles(ufunc, cells: np.ndarray, out: np.ndarray, then=None) -> np.ndarray:
    """``ufunc`` (``np.maximum``, ``np.add``) over the cells of tiling windows ``(N, H_out,
    kh, W_out, kw, C)`` in row-major window order, into ``out`` ``(N, H_out, W_out, C)``:
    the first cell copied, then ``ufunc(out, cell, out=out)`` for each further one (the
    same values as :func:`_fold_offsets`); then ``then = (op, value)``, if given, as
    ``op(out, value, out=out)`` (:func:`_division`).

    A strided cell against the contiguous result runs about twice as fast as two strided
    cells against each other (2x2 over 128x28x28x32 in blocks of 8 images, one thread: the
    first two cells 0.39 ms, against 0.14 + 0.21 for the copy and one fold)."""
    kh, kw = cells.shape[2], cells.shape[4]
    np.copyto(out, cells[:, :, 0, :, 0])
    for a in range(kh):
        for b in range(1 if a == 0 else 0, kw):
            ufunc(out, cells[:, :, a, :, b], out=out)
    if then is not None:
        then[0](out, then[1], out=out)
    return out


def _division(divisor) -> tuple:
    """``(op, value)`` such that ``op(total, value)`` is ``total / divisor`` (a number):
    a product by ``1 / divisor`` when that is exact (a power of two; a product is about
    twice as fast as a division, 128x28x28x32, pool 2: 0.13 -> 0.06 ms on one thread)."""
    if np.frexp(divisor)[0] == 0.5:
        return np.multiply, 1 / divisor
    return np.true_divide, divisor


def _max_winners(xl: np.ndarray, geo: Geometry):
    """``(y, winner)``: each window's maximum and the index ``a * kw + b`` of its winning
    offset, ``(N, H_out, W_out, C)`` each. Offsets are visited in row-major window order;
    padded cells never win, a later cell wins only if strictly larger (the first maximum
    stays) or NaN (so the last NaN wins, as in PyTorch). A window of padding only gives
    ``-inf`` and ``-1``."""
    (sh, sw), (dh, dw) = geo.strides, geo.dilation
    (top, _), (left, _) = geo.pads
    h_out, w_out = geo.out_hw
    padded = pad_for_windows(xl, geo, "zeros", -np.inf)
    best = np.full((xl.shape[0], h_out, w_out, xl.shape[3]), -np.inf, dtype=xl.dtype)
    winner = np.full(best.shape, -1, dtype=np.int32)
    rows = np.arange(h_out) * sh - top
    cols = np.arange(w_out) * sw - left
    for index, (a, b) in enumerate(_offsets(geo)):
        ih, iw = rows + a * dh, cols + b * dw
        real = (((ih >= 0) & (ih < xl.shape[1]))[:, None]
                & ((iw >= 0) & (iw < xl.shape[2]))[None, :])[None, :, :, None]  # (1, Ho, Wo, 1)
        win = offset_window(padded, geo, a, b)
        better = real & ((win > best) | np.isnan(win) | (winner < 0))
        np.copyto(best, win, where=better)
        np.copyto(winner, index, where=better)
    return best, winner


def _winner_to_flat(winner: np.ndarray, geo: Geometry) -> np.ndarray:
    """Offset indices of :func:`_max_winners` as flat input indices ``ih * W + iw``."""
    kw, (sh, sw), (dh, dw) = geo.kernel[1], geo.strides, geo.dilation
    (top, _), (left, _) = geo.pads
    h_out, w_out = geo.out_hw
    oh = np.arange(h_out).reshape(1, h_out, 1, 1)
    ow = np.arange(w_out).reshape(1, 1, w_out, 1)
    ih = oh * sh - top + (winner // kw) * dh
    iw = ow * sw - left + (winner % kw) * dw
    inside = (winner >= 0) & (ih >= 0) & (ih < geo.in_hw[0]) & (iw >= 0) & (iw < geo.in_hw[1])
    return np.where(inside, ih * geo.in_hw[1] + iw, -1).astype(np.int32)


def max_pool2d_backward(dy, x, pool_size, strides=None, padding="valid", *, dilation_rate=1,
                        ceil_mode=False, data_format="channels_last", argmax=None) -> np.ndarray:
    """Gradient of :func:`max_pool2d`: each ``dy`` value goes to the input cell that was its
    window's maximum (the first in row-major window order on a tie, the last NaN if the
    window has one); overlapping windows add up. ``dy`` is shaped like the output, the
    result like ``x``.

    ``argmax``: the second result of ``max_pool2d(..., return_argmax=True)`` on this ``x``;
    given, the winners are not searched again (a scatter of ``dy``), else they are found
    from ``x``.

    >>> x = np.array([[1., 4.], [4., 2.]]).reshape(1, 2, 2, 1)
    >>> max_pool2d_backward(np.ones((1, 1, 1, 1)), x, 2)[0, :, :, 0]   # tie: first 4 wins
    array([[0., 1.],
           [0., 0.]])
    """
    where = "max_pool2d_backward"
    x, xl, geo = _setup(where, x, pool_size, strides, padding, dilation_rate, ceil_mode,
                        data_format)
    dyl = _check_dy(where, dy, x, geo, data_format)
    if argmax is not None:
        argmax = _check_argmax(where, argmax, dyl, xl.shape)
        return from_channels_last(_scatter_argmax(dyl, argmax, xl.shape, geo), data_format)
    fast = dispatch.lookup("max_pool2d", "backward", dyl, xl, geo)
    if fast is not None:
        return from_channels_last(fast(dyl, xl, geo), data_format)
    dx = np.empty(xl.shape, dtype=xl.dtype)                      # (N, H, W, C)
    done = False
    if _is_tiling(geo):
        parts = map_batch(lambda dy, x, out: _max_backward_tiles(dy, x, geo, out), dx, dyl, xl,
                          block_bytes=TILES_BLOCK_BYTES)
        done = all(part is not None for part in parts)
    if not done:             # overlapping windows, or a NaN maximum: the general loop
        map_batch(lambda dy, x, out: _max_backward_offsets(dy, x, geo, out), dx, dyl, xl)
    return from_channels_last(dx, data_format)


def _max_backward_offsets(dyl: np.ndarray, xl: np.ndarray, geo: Geometry,
                          out: np.ndarray) -> np.ndarray:
    """:func:`max_pool2d_backward` for any windows, into ``out``: the winners of
    :func:`_max_winners`, one masked pass per kernel offset."""
    _, winner = _max_winners(xl, geo)
    masked = _masking(dyl)
    kw = geo.kernel[1]
    return _scatter_offsets(lambda a, b, out=None: masked(winner == a * kw + b, out), geo, out)


def _masking(dy: np.ndarray):
    """The function ``(mask, out=None) -> dy where mask, else 0`` (into ``out`` if given),
    by :func:`_write_masked`."""
    finite = bool(np.isfinite(dy).all())

    def masked(mask, out=None):
        if out is None:
            out = np.empty(dy.shape, dtype=dy.dtype)
        _write_masked(dy, mask, out, finite)
        return out
    return masked


def _max_backward_tiles(dyl: np.ndarray, xl: np.ndarray, geo: Geometry,
                        out: np.ndarray | None = None):
    """:func:`max_pool2d_backward` for windows that tile the input, into ``out`` (or a new
    array), or ``None`` when a window's maximum is NaN (the offset loop of
    :func:`_max_winners` decides those; ``out`` is then untouched). Every cell of the
    tiles ``(N, H_out, kh, W_out, kw, C)`` (the input in memory order) is compared with
    its window's maximum in one broadcast pass; then, if some window has more than one hit,
    offset by offset in row-major window order, a hit is kept only where no earlier cell
    of the window has won (the first maximum of a tie, frequent after a ReLU,
    :func:`_keep_first_hits`), and one broadcast product writes ``dy`` to
    the winners (128x28x28x32, pool 2, two threads: 4.3 -> 3.6-3.8 ms against one masked
    pass per offset)."""
    cells = _tiles(xl, geo)                                      # (N, H_out, kh, W_out, kw, C)
    y = _fold_tiles(np.maximum, cells, np.empty(_out_shape(xl, geo), dtype=xl.dtype))
    if np.isnan(y).any():
        return None
    dx, dx_cells = _tiling_gradient(geo, np.empty_like(xl) if out is None else out)
    hits = cells == y[:, :, None, :, None, :]
    # every window holds its maximum, so as many hits as windows means no tie, and the
    # offset loop is skipped (a count is one fast pass over the booleans; the loop took a
    # fifth of the time, 128x28x28x32 in blocks of 18 images on one thread: 0.19 ms a block)
    if np.count_nonzero(hits) > y.size:
        _keep_first_hits(hits, geo)
    _write_masked(dyl[:, :, None, :, None, :], hits, dx_cells, bool(np.isfinite(dyl).all()))
    return dx


def _keep_first_hits(hits: np.ndarray, geo: Geometry) -> None:
    """Of the hits ``(N, H_out, kh, W_out, kw, C)`` of each tiling window, keep only the
    first in row-major window order (in place)."""
    unclaimed = None                                             # windows without a winner yet
    for a, b in _offsets(geo):
        hit = hits[:, :, a, :, b]                                # (N, H_out, W_out, C) view
        if unclaimed is None:
            unclaimed = ~hit
            continue
        hit &= unclaimed
        unclaimed ^= hit


def _write_masked(dy: np.ndarray, mask: np.ndarray, out: np.ndarray, finite: bool) -> None:
    """``out = dy where mask, else 0``: a product by the mask when ``dy`` is finite (several
    times faster than ``np.where``; ``inf * 0`` would be NaN)."""
    if finite:
        np.multiply(dy, mask, out=out)
    else:
        out[...] = np.where(mask, dy, 0)


def _check_argmax(where, argmax, dyl: np.ndarray, x_shape) -> np.ndarray:
    """``argmax`` as a C-contiguous int32 array shaped like the NHWC ``dy``, indices in range."""
    arr = np.asarray(argmax)
    if arr.shape != dyl.shape or not np.issubdtype(arr.dtype, np.integer):
        raise ShapeError(f"{where}: argmax must be an integer array shaped like the "
                         f"channels_last output {dyl.shape} (from max_pool2d(..., "
                         f"return_argmax=True)), got {arr.dtype} {arr.shape}")
    cells = x_shape[1] * x_shape[2]
    # read as unsigned, negative indices are above every cell: one pass over the indices
    # when all are cells (the usual case; 0.1 of the 2.2 ms the gradient takes at
    # 128x28x28x32), the maximum and the minimum when some are not
    if (arr.size and int(arr.view(f"u{arr.dtype.itemsize}").max()) >= cells
            and (int(arr.max()) >= cells or int(arr.min()) < -1)):
        raise ShapeError(f"{where}: argmax holds indices outside -1..{cells - 1} for input "
                         f"shape {tuple(x_shape)}")
    return np.ascontiguousarray(arr, dtype=np.int32)


def _scatter_argmax(dyl: np.ndarray, argmax: np.ndarray, x_shape, geo=None) -> np.ndarray:
    """``dx[n, argmax // W, argmax % W, c] += dy`` (channels_last; ``-1`` sends nothing).

    With the windows' geometry, one pass per kernel offset: the offset's cell takes ``dy``
    where its flat index is the window's ``argmax``; without it, an unbuffered add."""
    fast = dispatch.lookup("max_pool2d", "backward_argmax", dyl, argmax, x_shape, geo)
    if fast is not None:
        return fast(dyl, argmax, x_shape, geo)
    if geo is not None:
        dx = np.empty(x_shape, dtype=dyl.dtype)                  # (N, H, W, C)
        map_batch(lambda dy, argmax, out: _scatter_argmax_offsets(dy, argmax, geo, out),
                  dx, dyl, argmax)
        return dx
    n, h, w, c = x_shape
    dx = np.zeros((n, h * w, c), dtype=dyl.dtype)                 # (N, H*W, C)
    keep = argmax >= 0
    idx_n, _, _, idx_c = np.nonzero(keep)
    np.add.at(dx, (idx_n, argmax[keep], idx_c), dyl[keep])
    return dx.reshape(x_shape)


def _scatter_argmax_offsets(dyl: np.ndarray, argmax: np.ndarray, geo: Geometry,
                            out: np.ndarray) -> np.ndarray:
    """:func:`_scatter_argmax` with the windows' geometry, into ``out``: each offset's cell
    takes ``dy`` where its flat index is the window's ``argmax``. Tiling windows do all
    offsets in one broadcast compare and product over the cells ``(N, H_out, kh, W_out, kw,
    C)``, written in memory order (128x28x28x32, pool 2: 2.2 -> 1.7 ms against one strided
    pass per offset)."""
    if _is_tiling(geo):
        (kh, kw), (h_out, w_out) = geo.kernel, geo.out_hw
        cell_index = np.stack([np.stack([_offset_flat_index(geo, a, b)[0] for b in range(kw)],
                                        axis=2) for a in range(kh)], axis=1)
        # repeated over the channels: the compare then runs along contiguous rows
        cell_index = np.broadcast_to(cell_index[None], (1, h_out, kh, w_out, kw, out.shape[3]))
        cell_index = np.ascontiguousarray(cell_index)
        dx, cells = _tiling_gradient(geo, out)                  # (N, H_out, kh, W_out, kw, C)
        wins = argmax[:, :, None, :, None, :] == cell_index
        _write_masked(dyl[:, :, None, :, None, :], wins, cells, bool(np.isfinite(dyl).all()))
        return dx
    masked = _masking(dyl)
    channels = (1, *geo.out_hw, out.shape[3])

    def offset_grad(a, b, out=None):
        # the index repeated over the channels: the compare runs along whole rows
        index = np.broadcast_to(_offset_flat_index(geo, a, b), channels).copy()
        return masked(argmax == index, out)                     # (N, H_out, W_out, C)
    return _scatter_offsets(offset_grad, geo, out)


def _offset_flat_index(geo: Geometry, a: int, b: int) -> np.ndarray:
    """Flat input index ``ih * W + iw`` of the cell kernel offset ``(a, b)`` reads for each
    output pixel, ``(1, H_out, W_out, 1)`` int32; ``-2`` (no argmax) where it is padding."""
    (sh, sw), (dh, dw) = geo.strides, geo.dilation
    (top, _), (left, _) = geo.pads
    (h, w), (h_out, w_out) = geo.in_hw, geo.out_hw
    ih = np.arange(h_out) * sh - top + a * dh
    iw = np.arange(w_out) * sw - left + b * dw
    real = ((ih >= 0) & (ih < h))[:, None] & ((iw >= 0) & (iw < w))[None, :]
    index = np.where(real, ih[:, None] * w + iw[None, :], -2)    # (H_out, W_out)
    return index.astype(np.int32)[None, :, :, None]


# ------------------------------------------------------------------------- average
def _axis_counts(n: int, k: int, s: int, before: int, after: int, out: int,
                 include_pad: bool) -> np.ndarray:
    """Cells each window covers along one axis: real ones, or real + explicit padding."""
    starts = np.arange(out) * s - before                        # in input coordinates
    low, high = (-before, n + after) if include_pad else (0, n)
    return np.minimum(starts + k, high) - np.maximum(starts, low)


def _divisor(geo: Geometry, count_include_pad: bool, dtype) -> np.ndarray:
    """``(1, H_out, W_out, 1)`` number of cells each average is taken over."""
    rows = _axis_counts(geo.in_hw[0], geo.kernel[0], geo.strides[0], *geo.pads[0],
                        geo.out_hw[0], count_include_pad)
    cols = _axis_counts(geo.in_hw[1], geo.kernel[1], geo.strides[1], *geo.pads[1],
                        geo.out_hw[1], count_include_pad)
    counts = np.maximum(rows[:, None] * cols[None, :], 1)
    return counts.astype(dtype)[None, :, :, None]


def avg_pool2d(x, pool_size, strides=None, padding="valid", *, ceil_mode=False,
               count_include_pad=False, data_format="channels_last") -> np.ndarray:
    """Mean over each ``pool_size`` window.

    Shapes: ``(N, H, W, C) -> (N, H_out, W_out, C)`` (see the module docstring). Padded cells
    hold 0 but, with the default ``count_include_pad=False`` (Keras), are not counted: each
    window is divided by its number of real cells. ``count_include_pad=True`` (PyTorch) also
    counts explicit padding, never the ceil-mode extra cells.

    >>> x = np.arange(9.0).reshape(1, 3, 3, 1)
    >>> avg_pool2d(x, 2, padding="same")[0, :, :, 0]    # edges average their real cells only
    array([[2. , 3.5],
           [6.5, 8. ]])
    """
    x, xl, geo = _setup("avg_pool2d", x, pool_size, strides, padding, 1, ceil_mode,
                        data_format)
    fast = dispatch.lookup("avg_pool2d", "forward", xl, geo, bool(count_include_pad))
    if fast is not None:
        return from_channels_last(fast(xl, geo, bool(count_include_pad)), data_format)
    y = np.empty(_out_shape(xl, geo), dtype=xl.dtype)
    if _is_tiling(geo):
        _tiling_forward(np.add, xl, geo, y, xl.dtype.type(geo.kernel[0] * geo.kernel[1]))
        return from_channels_last(y, data_format)
    divisor = _divisor(geo, count_include_pad, xl.dtype)        # (1, H_out, W_out, 1)
    over_images(lambda x, out, rows: _avg_values(x, geo, divisor, _rows(rows),
                                                 out[:, _rows(rows)]),
                y, xl, block_bytes=BLOCK_BYTES)
    return from_channels_last(y, data_format)


def _avg_values(xl: np.ndarray, geo: Geometry, divisor, rows: slice,
                out: np.ndarray) -> np.ndarray:
    """Each window's sum, one ``np.add`` per kernel offset, divided by ``divisor``
    ``(1, H_out, W_out, 1)``, for output rows ``rows``, into ``out`` ``(N, rows, W_out,
    C)``."""
    padded = pad_for_windows(xl, geo, "zeros", 0.0)
    total = _fold_offsets(np.add, padded, geo, rows, out=out)
    total /= divisor[:, rows]
    return total


def avg_pool2d_backward(dy, x, pool_size, strides=None, padding="valid", *, ceil_mode=False,
                        count_include_pad=False, data_format="channels_last") -> np.ndarray:
    """Gradient of :func:`avg_pool2d`: each ``dy`` value, divided by its window's divisor,
    is spread over the window's input cells; overlapping windows add up.

    >>> avg_pool2d_backward(np.ones((1, 1, 1, 1)), np.zeros((1, 2, 2, 1)), 2)[0, :, :, 0]
    array([[0.25, 0.25],
           [0.25, 0.25]])
    """
    where = "avg_pool2d_backward"
    x, xl, geo = _setup(where, x, pool_size, strides, padding, 1, ceil_mode, data_format)
    dyl = _check_dy(where, dy, x, geo, data_format)
    fast = dispatch.lookup("avg_pool2d", "backward", dyl, geo, xl.shape,
                           bool(count_include_pad))
    if fast is not None:
        dx = fast(dyl, geo, xl.shape, bool(count_include_pad))
        return from_channels_last(dx, data_format)
    divisor = _divisor(geo, count_include_pad, xl.dtype)        # (1, H_out, W_out, 1)
    dx = np.empty(xl.shape, dtype=xl.dtype)                      # (N, H, W, C)
    map_batch(lambda dy, out: _avg_backward(dy, geo, divisor, out), dx, dyl)
    return from_channels_last(dx, data_format)


def _avg_backward(dyl: np.ndarray, geo: Geometry, divisor: np.ndarray,
                  out: np.ndarray) -> np.ndarray:
    """:func:`avg_pool2d_backward` into ``out`` ``(N, H, W, C)``: every cell of a window
    takes the window's share ``dy / divisor``."""
    share = dyl / divisor                                        # (N, H_out, W_out, C)
    if _is_tiling(geo):             # one copy: every cell of a window takes its share
        dx, cells = _tiling_gradient(geo, out)                   # cells (N, Ho, kh, Wo, kw, C)
        np.copyto(cells, share[:, :, None, :, None, :])
        return dx

    def offset_grad(a, b, out=None):
        if out is None:
            return share
        np.copyto(out, share)
        return out
    return _scatter_offsets(offset_grad, geo, out)


# -------------------------------------------------------------------------- global
def _global_setup(where, x, data_format):
    check_data_format(data_format, where)
    x = as_float_array(x, where, "input", ndim=4, layout=layout_of(data_format))
    axes = (1, 2) if data_format == "channels_last" else (2, 3)
    return x, axes


def _global_dy(where, dy, x, axes, keepdims):
    dy = as_float_array(dy, where, "dy")
    expected = tuple(1 if i in axes else d for i, d in enumerate(x.shape)) if keepdims else \
        tuple(d for i, d in enumerate(x.shape) if i not in axes)
    if dy.shape != expected:
        raise ShapeError(f"{where}: dy has shape {dy.shape} but the pooled output of input "
                         f"shape {x.shape} (keepdims={keepdims}) has shape {expected}")
    dy = dy.astype(x.dtype, copy=False)
    return dy if keepdims else np.expand_dims(dy, axes)


def global_avg_pool2d(x, keepdims=False, data_format="channels_last") -> np.ndarray:
    """Mean over all spatial positions: ``(N, H, W, C) -> (N, C)``, or ``(N, 1, 1, C)`` with
    ``keepdims`` (``(N, C, 1, 1)`` for channels_first).

    >>> global_avg_pool2d(np.arange(8.0).reshape(1, 2, 2, 2))
    array([[3., 4.]])
    """
    x, axes = _global_setup("global_avg_pool2d", x, data_format)
    return x.mean(axis=axes, keepdims=keepdims, dtype=x.dtype)


def global_avg_pool2d_backward(dy, x, keepdims=False, data_format="channels_last") -> np.ndarray:
    """Gradient of :func:`global_avg_pool2d`: ``dy / (H*W)`` at every position of ``x``."""
    where = "global_avg_pool2d_backward"
    x, axes = _global_setup(where, x, data_format)
    dy = _global_dy(where, dy, x, axes, keepdims)
    cells = x.shape[axes[0]] * x.shape[axes[1]]
    return np.broadcast_to(dy / x.dtype.type(cells), x.shape).copy()


def global_max_pool2d(x, keepdims=False, data_format="channels_last") -> np.ndarray:
    """Maximum over all spatial positions: ``(N, H, W, C) -> (N, C)``, or ``(N, 1, 1, C)``
    with ``keepdims`` (``(N, C, 1, 1)`` for channels_first).

    >>> global_max_pool2d(np.arange(8.0).reshape(1, 2, 2, 2))
    array([[6., 7.]])
    """
    x, axes = _global_setup("global_max_pool2d", x, data_format)
    return x.max(axis=axes, keepdims=keepdims)


def global_max_pool2d_backward(dy, x, keepdims=False, data_format="channels_last") -> np.ndarray:
    """Gradient of :func:`global_max_pool2d`: each ``dy`` goes to the first (row-major)
    position of its channel's maximum."""
    where = "global_max_pool2d_backward"
    x, axes = _global_setup(where, x, data_format)
    dy = _global_dy(where, dy, x, axes, keepdims)
    xl = to_channels_last(x, data_format)
    dyl = to_channels_last(dy, data_format)                      # (N, 1, 1, C)
    n, h, w, c = xl.shape
    flat = xl.reshape(n, h * w, c)                               # (N, H*W, C)
    first = flat.argmax(axis=1)                                  # (N, C)
    dx = np.zeros((n, h * w, c), dtype=x.dtype)
    np.put_along_axis(dx, first[:, None, :], dyl.reshape(n, 1, c), axis=1)
    return from_channels_last(dx.reshape(n, h, w, c), data_format)


# ------------------------------------------------------------ max pooling with its argmax
def max_pool2d_with_argmax(x, pool_size, strides=None, padding="valid", *, dilation_rate=1,
                           ceil_mode=False, data_format="channels_last"):
    """:func:`max_pool2d` and, when the compiled kernels ran, the int32 flat index
    ``ih * W + iw`` of each maximum in channels_last order ``(N, H_out, W_out, C)`` (else
    ``None``), so a layer can keep it for :func:`max_pool2d_backward_from_argmax`.

    >>> y, _ = max_pool2d_with_argmax(np.arange(16.0).reshape(1, 4, 4, 1), 2)
    >>> y[0, :, :, 0]
    array([[ 5.,  7.],
           [13., 15.]])
    """
    x, xl, geo = _setup("max_pool2d", x, pool_size, strides, padding, dilation_rate, ceil_mode,
                        data_format)
    fast = dispatch.lookup("max_pool2d", "forward_argmax", xl, geo)
    if fast is None:
        return max_pool2d(x, pool_size, strides, padding, dilation_rate=dilation_rate,
                          ceil_mode=ceil_mode, data_format=data_format), None
    y, argmax = fast(xl, geo)
    return from_channels_last(y, data_format), argmax


def max_pool2d_backward_from_argmax(dy, argmax, x_shape, data_format="channels_last"):
    """Gradient of max pooling from the ``argmax`` of :func:`max_pool2d_with_argmax`:
    ``dy`` (shaped like the output, in ``data_format``) goes to the winning cells of an input
    of shape ``x_shape``; the result has the dtype of ``dy``."""
    where = "max_pool2d_backward"
    check_data_format(data_format, where)
    dy = as_float_array(dy, where, "dy", ndim=4, layout=layout_of(data_format))
    dyl = to_channels_last(dy, data_format)
    x_nhwc = tuple(x_shape) if data_format == "channels_last" else \
        (x_shape[0], x_shape[2], x_shape[3], x_shape[1])
    argmax = np.ascontiguousarray(argmax, dtype=np.int32)
    return from_channels_last(_scatter_argmax(dyl, argmax, x_nhwc), data_format)
