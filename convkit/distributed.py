"""Beyond one machine on Dask: prediction over chunked data and synchronous data-parallel
training (``pip install convkit[distributed]``: ``dask[array]`` and ``distributed`` of the
same release).

    from dask.distributed import Client
    import dask.array as da
    import convkit.distributed as ckd

    client = Client("tcp://scheduler:8786")          # or Client() for a local cluster
    x = da.from_zarr("images.zarr")                   # (N, 28, 28, 1), chunks along N
    probs = ckd.predict(model, x, batch_size=256)     # lazy (N, 10) dask array
    history = ckd.fit(model, x, y, batch_size=128, epochs=3, client=client)

How the model travels. A model is two things: its architecture (the JSON-able
``model.get_config()``, the loss) and its weight arrays. :func:`predict` sends both once as
one payload that every block task depends on; a worker builds the model from it once and
keeps it in a small per-thread cache keyed by a token, so the architecture is never rebuilt
per chunk. :func:`fit` broadcasts the architecture once (``client.scatter(...,
broadcast=True)``) and, for every weight update, only the list of weight arrays: sent to
one worker (inside a task, or scattered when larger than 1 MB) and fetched from there by
each other worker once.

One training step of :func:`fit` on a global batch of ``B`` sample indices (drawn exactly as
``model.fit`` draws them, from the model's own shuffling generator)::

    shard_w   = the batch's samples whose chunk lives on worker w          (no data moves)
    worker w:   g_w = (|shard_w| / B) * dL_w/dtheta             L_w = mean loss on shard_w
    tree sum:   g   = sum_w g_w  =  dL/dtheta of the mean loss over the global batch
    client:     g  += regularization gradient (once), optimizer.apply_gradients(g)
                then the new weights go to every worker

so with the same seed, batch size and shuffling the weights equal single-process
``model.fit`` up to floating-point summation order, and so does the History: every worker
also returns its targets and predictions, and the client computes the loss and metrics of
the whole batch exactly as ``fit`` does.

What data-parallel means for the layers that look at the batch:

* ``BatchNormalization`` normalizes each shard by that shard's own mean and variance (as
  PyTorch's DistributedDataParallel without SyncBatchNorm), so the gradients differ from
  single-process training. The moving statistics are updated on every worker and the
  client adds the shard-size-weighted mean of the changes: exact for the moving mean, for
  the moving variance the between-shard part of the variance is left out.
* ``Dropout`` draws its masks on the workers from generators seeded by (run, step, shard
  position), so a run is reproducible and a task Dask reruns draws the same masks, but
  the masks differ from single-process ``fit``'s. With either layer, a step resent after
  a lost worker may split the batch differently and so give a slightly different result.

Fault tolerance is Dask's: a lost worker's chunks are recomputed from their graph and its
tasks rescheduled on the others; a step whose results cannot be gathered is sent again
(``max_retries`` times), with the same weights, so it gives the same gradient.
"""
from __future__ import annotations

import collections
import json
import math
import os
import threading
import uuid

import numpy as np

from .errors import ConvkitError, ShapeError
from .models.training import _check_int, _ops_context, validation_split_index

__all__ = ["predict", "evaluate", "fit", "from_memmap", "image_paths", "step_bytes"]


def _require_dask(where: str):
    try:
        import dask.array as da
    except ImportError:
        raise ConvkitError(f"{where}: needs Dask; pip install convkit[distributed]") from None
    return da


def _require_client(client, where: str):
    """The given client, or the current default one, or an error saying how to make one."""
    _require_dask(where)
    try:
        from distributed import get_client
    except ImportError:
        raise ConvkitError(f"{where}: needs dask.distributed; pip install "
                           f"convkit[distributed]") from None
    if client is not None:
        return client
    try:
        return get_client()
    except ValueError:
        raise ConvkitError(f"{where}: no Dask client; start one, e.g. client = "
                           f"distributed.Client('tcp://scheduler:8786'), and pass "
                           f"client=client") from None


def _where(model, what: str) -> str:
    kind = model._kind() if hasattr(model, "_kind") else type(model).__name__
    return f"convkit.distributed.{what} ({kind} {getattr(model, 'name', '')!r})"


# ----------------------------------------------------------------------------- the model
class _Architecture:
    """What a worker needs to rebuild a model, without weights: the class name, the JSON of
    ``model.get_config()`` and the loss object (``None`` for prediction). ``token`` names it
    in the workers' caches."""

    def __init__(self, model, with_loss: bool):
        self.token = uuid.uuid4().hex
        self.model_class = "Sequential" if type(model).__name__ == "Sequential" \
            else "Functional"
        self.config_json = json.dumps(model.get_config())
        self.loss = model.loss if with_loss else None

    def __repr__(self):
        return f"_Architecture({self.model_class}, token={self.token[:8]})"


# architecture token -> {thread id: [model, version of the weights it holds]}, the most
# recently used token last; a worker keeps the models of the last few architectures
_WORKER_MODELS: "collections.OrderedDict" = collections.OrderedDict()
_WORKER_MODELS_LOCK = threading.Lock()
_WORKER_CACHE_SIZE = 4
#: architecture token -> how many times this process built a model from it
_WORKER_BUILDS: "collections.Counter" = collections.Counter()


def _worker_model(arch: _Architecture, weights, version):
    """The model for ``arch`` on this thread, holding ``weights`` (set only when ``version``
    changed): built from the JSON config on first use, then reused. Each thread has its own
    model (a forward pass keeps state in the layers)."""
    thread = threading.get_ident()
    with _WORKER_MODELS_LOCK:
        models = _WORKER_MODELS.setdefault(arch.token, {})
        _WORKER_MODELS.move_to_end(arch.token)
        while len(_WORKER_MODELS) > _WORKER_CACHE_SIZE:
            _WORKER_MODELS.popitem(last=False)
        entry = models.get(thread)
    if entry is None:
        from .models.saving import model_from_config
        model = model_from_config(json.loads(arch.config_json), arch.model_class)
        if arch.loss is not None:
            model.compile(optimizer="sgd", loss=arch.loss)
        entry = [model, None]
        with _WORKER_MODELS_LOCK:
            models[thread] = entry
            _WORKER_BUILDS[arch.token] += 1
    if entry[1] != version:
        entry[0].set_weights(weights)
        entry[1] = version
    return entry[0]


def _single_io(model, where: str):
    """``(input shape, output shape)`` of a model with one input and one output."""
    inputs, outputs = model._input_shapes(), model._output_shapes()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ConvkitError(f"{where}: models with one input and one output only; this one has "
                           f"{len(inputs)} inputs and {len(outputs)} outputs")
    return tuple(inputs[0]), tuple(outputs[0])


def _payload(model, client):
    """``(architecture, weights, version)`` as one object every block task depends on: a
    future broadcast to every worker with a client, else one delayed value in the graph."""
    payload = (_Architecture(model, with_loss=False), model.get_weights(), uuid.uuid4().hex)
    if client is not None:
        return client.scatter([payload], broadcast=True, hash=False)[0]
    import dask
    return dask.delayed(payload, pure=False, traverse=False)


# ----------------------------------------------------------------------------- predict
def _predict_block(block, payload, batch_size):
    arch, weights, version = payload
    model = _worker_model(arch, weights, version)
    return np.asarray(model.predict(block, batch_size=batch_size, verbose=0))


def _as_batch_array(x, input_shape, where: str, name: str = "x", batch_size: int = 1):
    """A dask array chunked along the batch axis only (NumPy arrays and memmaps are wrapped,
    not copied), checked against the model's input shape."""
    da = _require_dask(where)
    if not isinstance(x, da.Array):
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            raise ShapeError(f"{where}: {name} must be a dask array or a NumPy array, got "
                             f"{type(x).__name__}")
        # about 32 MB per chunk once converted to float64, whatever the stored dtype
        rows = max(1, (32 << 20) // max(1, int(np.prod(x.shape[1:])) * 8))
        rows = max(batch_size, rows // batch_size * batch_size)    # whole batches per chunk
        x = _wrap_numpy(da, x, rows)
    want = input_shape[1:]
    if x.ndim != len(input_shape) or any(w is not None and g != w
                                         for g, w in zip(x.shape[1:], want)):
        raise ShapeError(f"{where}: {name} has shape {x.shape}; the model takes "
                         f"{(None,) + tuple(want)}")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise ShapeError(f"{where}: {name} must be numeric, got dtype {x.dtype}")
    if x.numblocks[1:] != (1,) * (x.ndim - 1):
        x = x.rechunk({axis: -1 for axis in range(1, x.ndim)})   # whole samples per chunk
    return x


def _wrap_numpy(da, x, rows):
    """A dask array over a NumPy array. A memmap of a whole file is read chunk by chunk from
    its file (``da.from_array`` would copy all of it into the graph); other arrays are
    sliced into the graph as usual."""
    import mmap
    if isinstance(x, np.memmap) and isinstance(x.base, mmap.mmap) and x.filename \
            and x.flags.c_contiguous:
        return da.from_array(_FileRows(x.filename, x.shape, x.dtype, x.offset),
                             chunks=(rows,) + tuple(x.shape[1:]), asarray=True)
    return da.from_array(np.asarray(x), chunks=(rows,) + tuple(x.shape[1:]))


def _blocks_to_outputs(x, func, args, out_shape, dtype):
    """``x.map_blocks(func, *args)`` for a function that maps ``(n, ...)`` blocks to
    ``(n, *out_shape)`` arrays."""
    rank = 1 + len(out_shape)
    extra = {}
    if rank < x.ndim:
        extra["drop_axis"] = list(range(rank, x.ndim))
    elif rank > x.ndim:
        extra["new_axis"] = list(range(x.ndim, rank))
    chunks = (x.chunks[0],) + tuple((int(d),) for d in out_shape)
    return x.map_blocks(func, *args, dtype=dtype, chunks=chunks, **extra)


def predict(model, x, batch_size=32, client=None, files_per_task=256,
            interpolation="bilinear"):
    """``model.predict`` where the data lives: a lazy dask array of outputs.

    ``x``: a dask array ``(N, H, W, C)`` chunked along the batch axis (a NumPy array is
    wrapped in one, chunks of whole batches and about 32 MB as float64; a memmap of a
    whole file, or :func:`from_memmap`, is read from its file chunk by chunk), or a folder
    of image files, or a list of image paths. Each block runs ``model.predict(block, batch_size)``
    on the worker (or thread) that holds it: any input dtype, converted one batch at a time.
    Returns a dask array ``(N, *model.output_shape[1:])`` in the model's dtype, chunked like
    ``x``: ``.compute()`` it, or store it with ``.to_zarr(...)``.

    For image files (``image_paths(folder)`` lists a folder, sorted), each task reads
    ``files_per_task`` files on its worker with :func:`convkit.data.read_image`, resized to
    the model's input and in its colour mode (1 channel grayscale, 3 rgb, 4 rgba) with pixel
    values in [0, 1]: row ``i`` belongs to ``paths[i]``. Workers must see the same files
    (a shared file system).

    The weights and architecture go to each worker once: with ``client`` as a future
    broadcast to every worker now, without one as one value in the task graph, which
    whatever scheduler computes the result (a default distributed client, threads)
    sends to each worker that needs it once. With chunk
    sizes a multiple of ``batch_size`` the results equal ``model.predict(x.compute(),
    batch_size)`` bit for bit, otherwise up to float rounding.

    >>> probs = predict(model, da.from_array(images, chunks=(4096, 28, 28, 1)))
    >>> probs.shape, probs.chunks[0][:2]
    ((100000, 10), (4096, 4096))
    """
    where = _where(model, "predict")
    _require_dask(where)
    batch_size = _check_int(batch_size, "batch_size", where, minimum=1)
    input_shape, output_shape = _single_io(model, where)
    if isinstance(x, (str, os.PathLike)) or (isinstance(x, (list, tuple)) and x
                                            and isinstance(x[0], (str, os.PathLike))):
        files_per_task = _check_int(files_per_task, "files_per_task", where, minimum=1)
        return _predict_files(model, x, batch_size, client, files_per_task, interpolation,
                              input_shape, output_shape, where)
    x = _as_batch_array(x, input_shape, where, batch_size=batch_size)
    payload = _payload(model, client)
    return _blocks_to_outputs(x, _predict_block, (payload, batch_size), output_shape[1:],
                              np.dtype(model.dtype))


class _FileRows:
    """A raw or ``.npy`` array file as an array-like that dask slices: each slice opens the
    file as a memmap, copies its rows and closes it, so only the path travels in the graph
    and no process keeps the whole file mapped."""

    def __init__(self, path, shape, dtype, offset):
        self.path, self.shape, self.dtype, self.offset = path, shape, dtype, offset
        self.ndim = len(shape)
        stat = os.stat(path)
        self._stamp = (stat.st_size, stat.st_mtime_ns)

    def __getitem__(self, index):
        images = np.memmap(self.path, dtype=self.dtype, mode="r", shape=self.shape,
                           offset=self.offset)
        try:
            return np.array(images[index])
        finally:
            del images

    def __dask_tokenize__(self):
        return (os.path.abspath(self.path), self.shape, self.dtype.str, self.offset,
                self._stamp)

    def __repr__(self):
        return f"_FileRows({self.path!r}, shape={self.shape}, dtype={self.dtype})"


def from_memmap(path, shape=None, dtype=None, offset=0, chunk_rows=4096):
    """A dask array over an array file on disk, chunked by ``chunk_rows`` samples, each chunk
    read only when it is computed (by the worker computing it, so on a cluster the workers
    need the same file, e.g. on a shared file system).

    ``path``: a ``.npy`` file (shape, dtype and offset come from its header; ``np.save``
    writes one, ``np.lib.format.open_memmap`` too) or a raw file with ``shape`` and
    ``dtype`` given (``offset`` bytes of header skipped). ``da.from_array`` on a NumPy
    memmap would copy the data into the graph instead.

    >>> x = from_memmap("images.npy")                     # (100000, 28, 28, 1) uint8
    >>> probs = predict(model, x, batch_size=256)
    """
    where = "convkit.distributed.from_memmap"
    da = _require_dask(where)
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConvkitError(f"{where}: no such file {path!r}")
    if shape is None:
        try:
            header = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise ConvkitError(f"{where}: {path!r} is not a .npy file ({exc}); give shape= "
                               f"and dtype= for a raw file") from None
        shape, dtype, offset = header.shape, header.dtype, header.offset
        del header
    if dtype is None:
        raise ConvkitError(f"{where}: a raw file needs dtype= as well as shape=")
    shape, dtype = tuple(int(d) for d in shape), np.dtype(dtype)
    need = offset + int(np.prod(shape)) * dtype.itemsize
    if os.path.getsize(path) < need:
        raise ShapeError(f"{where}: {path!r} has {os.path.getsize(path)} bytes, shape {shape} "
                         f"of {dtype} from offset {offset} needs {need}")
    rows = max(1, int(chunk_rows))
    return da.from_array(_FileRows(path, shape, dtype, offset),
                         chunks=(rows,) + shape[1:], asarray=True)


def image_paths(folder) -> list[str]:
    """The image files under ``folder`` (recursively, by extension), sorted: the row order of
    ``predict(model, folder)``."""
    from .data.images import IMAGE_EXTENSIONS
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise ConvkitError(f"convkit.distributed.image_paths: {folder!r} is not a directory")
    found = []
    for current, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(os.path.join(current, name))
    return found


_COLOR_MODES = {1: "grayscale", 3: "rgb", 4: "rgba"}


def _predict_paths_block(paths, payload, batch_size, size, color_mode, interpolation):
    from .data.images import read_image
    images = np.stack([read_image(p, size=size, color_mode=color_mode,
                                  interpolation=interpolation) for p in paths])  # (n, H, W, C)
    return _predict_block(images, payload, batch_size)


def _predict_files(model, x, batch_size, client, files_per_task, interpolation,
                   input_shape, output_shape, where):
    da = _require_dask(where)
    paths = image_paths(x) if isinstance(x, (str, os.PathLike)) else [os.fspath(p) for p in x]
    if not paths:
        raise ConvkitError(f"{where}: no image files in {x!r}")
    if len(input_shape) != 4 or input_shape[1] is None or input_shape[2] is None:
        raise ShapeError(f"{where}: reading image files needs a fixed (None, H, W, C) input, "
                         f"the model takes {input_shape}")
    color_mode = _COLOR_MODES.get(input_shape[3])
    if color_mode is None:
        raise ShapeError(f"{where}: the model takes {input_shape[3]}-channel images; files are "
                         f"read as 1 (grayscale), 3 (rgb) or 4 (rgba) channels")
    names = da.from_array(np.array(paths, dtype=object), chunks=files_per_task)
    payload = _payload(model, client)
    args = (payload, batch_size, tuple(input_shape[1:3]), color_mode, interpolation)
    return _blocks_to_outputs(names, _predict_paths_block, args, output_shape[1:],
                              np.dtype(model.dtype))


def evaluate(model, x, y, batch_size=32, client=None, return_dict=False):
    """``model.evaluate`` with the forward passes on the workers: predictions come back to
    the client (``(N, classes)``, small beside the images) and the loss and metrics are
    computed there batch by batch, as ``model.evaluate`` does. ``y`` may be a dask array."""
    where = _where(model, "evaluate")
    model._require_compiled(where)
    logs = _evaluate_logs(model, x, y, batch_size, client, where)
    if return_dict:
        return logs
    if not model.compiled_metrics:
        return logs["loss"]
    return [logs["loss"]] + [logs[m.name] for m in model.compiled_metrics]


def _evaluate_logs(model, x, y, batch_size, client, where) -> dict:
    import dask
    y_pred = predict(model, x, batch_size=batch_size, client=client)
    y_pred, y = dask.compute(y_pred, y)
    y = _checked_targets(model, y, len(y_pred), where)
    for m in model.compiled_metrics:
        m.reset_state()
    penalty, _ = model._regularization(with_grads=False)
    n = len(y)
    loss_sum = 0.0
    for start in range(0, n, batch_size):
        yb, pb = y[start:start + batch_size], y_pred[start:start + batch_size]
        loss_sum += (float(model.loss(yb, pb)) + penalty) * len(yb)
        for m in model.compiled_metrics:
            m.update_state(yb, pb)
    logs = {"loss": loss_sum / n}
    logs.update(model._metric_results())
    return logs


def _checked_targets(model, y, n, where):
    y = np.asarray(y)
    if y.ndim == 0 or y.shape[0] != n:
        raise ShapeError(f"{where}: x and y must have the same number of samples, got {n} "
                         f"inputs and y of shape {y.shape}")
    model._check_targets(y, where)
    if np.issubdtype(y.dtype, np.floating) and y.dtype != np.dtype(model.dtype):
        y = y.astype(model.dtype)
    return y


# ----------------------------------------------------------------------------- fit
def _layer_rngs(model):
    return [layer for layer in model.layers
            if isinstance(getattr(layer, "rng", None), np.random.Generator)]


def _shard_step(arch, weights_payload, x_blocks, y_blocks, block_of_row, rows, positions,
                scale, seed):
    """One worker's share of a step: gradients of ``scale * mean loss`` on its rows (the
    mean over the global batch needs ``scale = rows / batch``), without applying them.

    ``x_blocks``/``y_blocks``: the chunks this shard reads; row ``i`` is
    ``x_blocks[block_of_row[i]][rows[i]]``. Returns a dict with the positions in the global
    batch, the targets and predictions of those rows, every layer's gradient list (scaled)
    and the scaled change of each non-trainable weight (``None`` where unchanged)."""
    weights, version = weights_payload
    model = _worker_model(arch, weights, version)
    xb = np.concatenate([x_blocks[b][rows[block_of_row == b]]
                         for b in range(len(x_blocks))])
    yb = np.concatenate([y_blocks[b][rows[block_of_row == b]]
                         for b in range(len(y_blocks))])
    # the concatenation above groups rows by block: restore the order within the batch
    order = np.argsort(np.argsort(block_of_row, kind="stable"), kind="stable")
    xb, yb = xb[order], yb[order]
    xs, yb_checked = model._prepare_data(xb, yb, "convkit.distributed.fit (worker)")
    for i, layer in enumerate(_layer_rngs(model)):
        layer.rng = np.random.default_rng([seed[0], seed[1], seed[2], i])
    with _ops_context():
        _, y_pred, _, _ = model._loss_and_backward(xs, yb_checked)
    grads = [[None if g is None else g * scale for g in layer.grads] for layer in model.layers]
    state = []
    offset = 0
    for layer in model.layers:
        for w in layer.weights:
            before = weights[offset]
            offset += 1
            trainable = w.trainable and layer.trainable
            changed = not trainable and not np.array_equal(w.value, before)
            state.append((w.value - before) * scale if changed else None)
    return {"positions": positions, "y": yb, "y_pred": np.asarray(y_pred), "grads": grads,
            "state": state}


def _add(a, b):
    return b if a is None else a if b is None else a + b


def _sum_shards(first, second):
    """Two shard results as one: gradients and state changes added, rows appended."""
    return {"positions": np.concatenate([first["positions"], second["positions"]]),
            "y": np.concatenate([first["y"], second["y"]]),
            "y_pred": np.concatenate([first["y_pred"], second["y_pred"]]),
            "grads": [[_add(g, h) for g, h in zip(ga, gb)]
                      for ga, gb in zip(first["grads"], second["grads"])],
            "state": [_add(s, t) for s, t in zip(first["state"], second["state"])]}


def _tree_sum(client, futures):
    """Pairwise sums on the workers until one future is left (log2(workers) rounds)."""
    while len(futures) > 1:
        paired = [client.submit(_sum_shards, futures[i], futures[i + 1], pure=False)
                  for i in range(0, len(futures) - 1, 2)]
        if len(futures) % 2:
            paired.append(futures[-1])
        futures = paired
    return futures[0]


class _Placement:
    """Where the persisted chunks of ``x`` and ``y`` live: the block futures, the first row
    of each block, and the worker holding each block (refreshed after a failure)."""

    def __init__(self, client, x, y):
        from distributed import futures_of, wait
        self.client = client
        self.starts = np.concatenate([[0], np.cumsum(x.chunks[0])])
        self.x_futures = _block_futures(x, futures_of(x))
        self.y_futures = _block_futures(y, futures_of(y))
        wait(self.x_futures + self.y_futures)
        self.refresh()

    def refresh(self):
        who = self.client.who_has(self.x_futures)
        self.owner = [(who.get(f.key) or [None])[0] for f in self.x_futures]

    def shards(self, idx):
        """``{worker: (block ids, rows within them, positions in the batch)}``."""
        block = np.searchsorted(self.starts, idx, side="right") - 1
        rows = idx - self.starts[block]
        owners = np.array([self.owner[b] or "" for b in block], dtype=object)
        out = {}
        for worker in dict.fromkeys(owners.tolist()):
            positions = np.flatnonzero(owners == worker)
            out[worker] = (block[positions], rows[positions], positions)
        return out


def _block_futures(array, futures):
    """The futures of ``array``'s blocks along axis 0, in order (one block across the other
    axes, so the first key of each nested list)."""
    by_key = {f.key: f for f in futures}
    keys = []
    for key in array.__dask_keys__():
        while isinstance(key, list):
            key = key[0]
        keys.append(key)
    return [by_key[k] for k in keys]


def _persist_pair(client, x, y, input_shape, where):
    """x and y as persisted dask arrays with the same chunks along the batch axis."""
    da = _require_dask(where)
    x = _as_batch_array(x, input_shape, where)
    if not isinstance(y, da.Array):
        y = np.asarray(y)
    if y.ndim == 0 or y.shape[0] != x.shape[0]:
        raise ShapeError(f"{where}: x and y must have the same number of samples, got x of "
                         f"shape {x.shape} and y of shape {y.shape}")
    if not isinstance(y, da.Array):
        y = da.from_array(y, chunks=(x.chunks[0],) + y.shape[1:])
    y = y.rechunk((x.chunks[0],) + tuple(-1 for _ in y.shape[1:]))
    x, y = client.persist([x, y])
    return x, y


def step_bytes(model) -> dict:
    """Bytes one step of :func:`fit` moves per worker: ``weights`` (every weight array, sent
    to each worker) and ``gradients`` (the trainable weights' gradients, each worker's share
    going into the tree sum), besides a few kB of indices, targets and predictions."""
    weights = sum(w.value.nbytes for w in model.weights)
    grads = sum(w.value.nbytes for w in model.trainable_weights)
    return {"weights": int(weights), "gradients": int(grads)}


def fit(model, x, y, batch_size=32, epochs=1, verbose=1, callbacks=None, validation_split=0.0,
        validation_data=None, shuffle=True, initial_epoch=0, steps_per_epoch=None,
        client=None, max_retries=3):
    """Synchronous data-parallel ``model.fit`` on a Dask cluster (see the module docstring).

    ``x`` ``(N, H, W, C)`` and ``y`` are dask arrays (NumPy arrays are wrapped) whose chunks
    are persisted on the workers and stay there; only sample indices, weights, gradients and
    each batch's targets and predictions move. The arguments and the returned
    :class:`~convkit.callbacks.History` are ``model.fit``'s: callbacks, the progress bar,
    ``validation_split`` (the last fraction, before shuffling) and ``validation_data``
    (NumPy arrays are evaluated on the client as ``fit`` does; dask arrays with
    :func:`evaluate`). The model on the client is trained in place.

    >>> history = fit(model, x, y, batch_size=128, epochs=3, client=client)
    """
    where = _where(model, "fit")
    client = _require_client(client, where)
    model._require_compiled(where)
    batch_size = _check_int(batch_size, "batch_size", where, minimum=1)
    epochs = _check_int(epochs, "epochs", where, minimum=0)
    initial_epoch = _check_int(initial_epoch, "initial_epoch", where, minimum=0)
    max_retries = _check_int(max_retries, "max_retries", where, minimum=0)
    if steps_per_epoch is not None:
        steps_per_epoch = _check_int(steps_per_epoch, "steps_per_epoch", where, minimum=1)
    input_shape, _ = _single_io(model, where)
    if y is None:
        raise ConvkitError(f"{where}: y (the targets) is required")
    val = _validation(model, x, y, validation_split, validation_data, where)
    if val is not None and validation_data is None:
        split_at = val.pop()
        x, y = x[:split_at], y[:split_at]
    x, y = _persist_pair(client, x, y, input_shape, where)
    placement = _Placement(client, x, y)
    # one small sample checks the targets against the loss before any work is sent
    first_x, first_y = client.compute([x[:1], y[:1]], sync=True)
    model._prepare_data(np.asarray(first_x), np.asarray(first_y), where)

    n = x.shape[0]
    steps = steps_per_epoch or -(-n // batch_size)
    shared = _Shared(client, _Architecture(model, with_loss=True))
    run_seed = _run_seed(model)
    cbs = model._callback_list(callbacks, verbose=verbose, epochs=epochs, steps=steps,
                               add_history=True)
    global_step = 0

    def epoch_batches():
        placement.refresh()
        return model._batch_indices(n, batch_size, shuffle, steps)

    def train_step(idx):
        nonlocal global_step
        result = _run_step(client, placement, shared, model, idx, (run_seed, global_step),
                           max_retries, where)
        global_step += 1
        yb, y_pred = result["y"], result["y_pred"]
        penalty, reg_grads = model._regularization(with_grads=True)
        loss_value = float(model.loss(yb, y_pred)) + penalty
        finite = math.isfinite(loss_value)
        if finite:
            _apply(model, result, reg_grads)
            for m in model.compiled_metrics:
                m.update_state(yb, y_pred)
        return loss_value, len(yb), finite

    def validate(epoch):
        if val is None:
            return None
        return _validation_logs(model, val, batch_size, client, where)

    return model._run_epochs(cbs, where, initial_epoch, epochs, epoch_batches, train_step,
                             validate)


def _run_seed(model) -> int:
    """A seed for the workers' dropout generators from the state of the model's shuffling
    generator, read without drawing from it (the batch order stays ``fit``'s)."""
    import hashlib
    state = json.dumps(model._rng.bit_generator.state, sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(state.encode()).digest()[:7], "little")


def _validation(model, x, y, validation_split, validation_data, where):
    """``[x_val, y_val]`` (plus the split index for ``validation_split``) or None."""
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ConvkitError(f"{where}: validation_data must be a pair (x_val, y_val)")
        return list(validation_data)
    if not validation_split:
        return None
    split_at = validation_split_index(len(x), validation_split, where)
    return [x[split_at:], y[split_at:], split_at]


def _validation_logs(model, val, batch_size, client, where) -> dict:
    x_val, y_val = val
    da = _require_dask(where)
    if isinstance(x_val, da.Array) or isinstance(y_val, da.Array):
        return _evaluate_logs(model, x_val, y_val, batch_size, client, where)
    xs, yv = model._prepare_data(x_val, y_val, where + " (validation_data)")
    return model._evaluate_arrays(xs, yv, batch_size)


#: seconds a scatter may take before the step is sent again
_SCATTER_TIMEOUT = 30
#: weights up to this size travel inside a task, larger ones are scattered
_INLINE_WEIGHTS_BYTES = 1 << 20


def _same(value):
    return value


def _send_weights(client, payload):
    """A future of ``(weights, version)`` on one worker; the other workers fetch it from
    there when their share starts (a broadcast would push to every worker the scheduler
    knows, a dead one too). Small weights go inside a task sent with the step's other tasks
    (no round trip of their own, and Dask can rerun it if its worker dies); large ones are
    scattered, which keeps them out of the scheduler's task graph."""
    if sum(w.nbytes for w in payload[0]) <= _INLINE_WEIGHTS_BYTES:
        return client.submit(_same, payload, pure=False)
    return client.scatter([payload], hash=False, timeout=_SCATTER_TIMEOUT)[0]


class _Shared:
    """The architecture, broadcast to every worker once per run (again only if a lost worker
    took its last copy)."""

    def __init__(self, client, arch):
        self.client = client
        self.arch = arch
        self.future = None

    def get(self):
        if self.future is None:
            self.future = self.client.scatter([self.arch], broadcast=True, hash=False,
                                              timeout=_SCATTER_TIMEOUT)[0]
        return self.future


def _run_step(client, placement, shared, model, idx, seed, max_retries, where):
    """Send one step to the workers and gather the summed result, sending it again (same
    weights, same seed) if a worker was lost and Dask could not recover on its own."""
    import time

    for attempt in range(max_retries + 1):
        try:
            weights = _send_weights(client, (model.get_weights(), uuid.uuid4().hex))
            shards = []
            for rank, (worker, (blocks, rows, positions)) in \
                    enumerate(placement.shards(idx).items()):
                used = np.unique(blocks)                        # chunks this shard reads
                local = np.searchsorted(used, blocks)           # (rows,) index into used
                shards.append(client.submit(
                    _shard_step, shared.get(), weights,
                    [placement.x_futures[b] for b in used],
                    [placement.y_futures[b] for b in used],
                    local, rows, positions, len(rows) / len(idx), seed + (rank,),
                    pure=False, **({"workers": [worker], "allow_other_workers": True}
                                   if worker else {})))
            result = _tree_sum(client, shards).result()
            order = np.argsort(result["positions"], kind="stable")
            result["y"], result["y_pred"] = result["y"][order], result["y_pred"][order]
            return result
        except ConvkitError:
            raise                        # the step itself is wrong: no point sending it again
        except Exception as exc:         # noqa: BLE001 - a lost worker shows in many ways
            if attempt == max_retries:
                raise ConvkitError(f"{where}: a step failed {max_retries + 1} times on the "
                                   f"cluster ({type(exc).__name__}: {exc})") from exc
            time.sleep(0.5 * (attempt + 1))      # let the scheduler see who is gone
            shared.future = None
            placement.refresh()
    raise AssertionError("unreachable")


def _apply(model, result, reg_grads):
    """The summed gradient through the model's own optimizer path (regularization added once,
    as in ``fit``), then the summed changes of non-trainable weights (moving statistics)."""
    for layer, grads in zip(model.layers, result["grads"]):
        layer.grads = list(grads)
    model.optimizer.apply_gradients(model._gradients_and_weights(reg_grads))
    records = [w for layer in model.layers for w in layer.weights]
    for w, change in zip(records, result["state"]):
        if change is not None:
            w.value += change.astype(w.value.dtype, copy=False)
