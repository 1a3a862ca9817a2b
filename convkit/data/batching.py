"""Mini-batches and train/test splits over in-memory arrays.

``x`` and ``y`` may each be one array or a list/tuple of arrays (models with several inputs or
outputs); all arrays share their first axis, the sample axis. Nothing here copies a whole data
set: an epoch draws one index permutation and every batch gathers only its own rows.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import ConvkitError, ShapeError
from ..random import make_rng


def _as_arrays(data, where: str, name: str):
    """``data`` as ``(list_of_arrays, was_a_list)``; ndarrays are used as they are (no copy)."""
    if isinstance(data, (list, tuple)) and data and all(
            isinstance(item, np.ndarray) for item in data):
        arrays, multi = list(data), True
    else:
        arrays, multi = [np.asarray(data)], False
    for index, array in enumerate(arrays):
        label = f"{name}[{index}]" if multi else name
        if array.dtype == object:
            raise ShapeError(f"{where}: {label} is not a numeric array (dtype object; ragged "
                             "nested lists?)")
        if array.ndim == 0:
            raise ShapeError(f"{where}: {label} must have a sample axis, got a scalar")
    return arrays, multi


def _check_lengths(where: str, groups) -> int:
    """All arrays of all groups have the same number of samples; returns it.

    ``groups`` is a list of ``(name, arrays, multi)``.
    """
    labelled = []
    for name, arrays, multi in groups:
        for index, array in enumerate(arrays):
            labelled.append((f"{name}[{index}]" if multi else name, len(array)))
    first_name, count = labelled[0]
    for name, length in labelled[1:]:
        if length != count:
            raise ShapeError(f"{where}: {first_name} has {count} samples but {name} has "
                             f"{length}")
    return count


def _take(arrays, multi: bool, index):
    """Rows ``index`` (an int array or a slice) of one array or of each array in a list."""
    picked = [array[index] for array in arrays]
    return picked if multi else picked[0]


def _resolve_rng(rng, where: str) -> np.random.Generator:
    if rng is None:
        return make_rng()
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise ConvkitError(f"{where}: rng must be None, an int seed or a numpy.random.Generator, "
                       f"got {type(rng).__name__}")


class BatchIterator:
    """Iterate over ``(x_batch, y_batch)`` mini-batches, one pass over the data per ``iter()``.

    Args:
        x: array ``(N, ...)`` or a list of such arrays (several model inputs).
        y: ``None``, an array ``(N, ...)`` or a list of arrays. With ``y=None`` the batches are
            ``(x_batch, None)``.
        batch_size: samples per batch; the last batch is smaller unless ``drop_last``.
        shuffle: draw a new permutation from ``rng`` at the start of every epoch.
        rng: ``numpy.random.Generator``, an int seed, or ``None`` (a generator drawn from
            convkit's root, see ``convkit.set_seed``).
        drop_last: drop the final incomplete batch.
        sample_weight: optional ``(N,)`` weights; batches are then
            ``(x_batch, y_batch, w_batch)``.

    ``len(it)`` is the number of batches per epoch: ``ceil(N / batch_size)``, or
    ``floor(N / batch_size)`` with ``drop_last``. Each batch is gathered with fancy indexing
    from the permutation (a copy of that batch only); without shuffling batches are views.

    Example::

        >>> it = BatchIterator(np.zeros((10, 28, 28, 1)), np.arange(10), batch_size=4, rng=0)
        >>> len(it), [xb.shape[0] for xb, yb in it]
        (3, [4, 4, 2])
    """

    def __init__(self, x, y=None, batch_size: int = 32, shuffle: bool = True, rng=None,
                 drop_last: bool = False, sample_weight=None):
        where = "BatchIterator"
        if (not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool)
                or batch_size < 1):
            raise ConvkitError(f"{where}: batch_size must be a positive int, got {batch_size!r}")
        self._x, self._x_multi = _as_arrays(x, where, "x")
        groups = [("x", self._x, self._x_multi)]
        if y is None:
            self._y, self._y_multi = None, False
        else:
            self._y, self._y_multi = _as_arrays(y, where, "y")
            groups.append(("y", self._y, self._y_multi))
        if sample_weight is None:
            self._w = None
        else:
            self._w = np.asarray(sample_weight)
            if self._w.ndim != 1:
                raise ShapeError(f"{where}: sample_weight must be 1-D (N,), got shape "
                                 f"{self._w.shape}")
            groups.append(("sample_weight", [self._w], False))
        self.num_samples = _check_lengths(where, groups)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.rng = _resolve_rng(rng, where)
        self.epoch = 0

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def __iter__(self):
        self.epoch += 1
        order = self.rng.permutation(self.num_samples) if self.shuffle else None
        for batch in range(len(self)):
            start = batch * self.batch_size
            stop = min(start + self.batch_size, self.num_samples)
            index = order[start:stop] if order is not None else slice(start, stop)
            x_batch = _take(self._x, self._x_multi, index)
            y_batch = None if self._y is None else _take(self._y, self._y_multi, index)
            if self._w is None:
                yield x_batch, y_batch
            else:
                yield x_batch, y_batch, self._w[index]

    def __repr__(self) -> str:
        return (f"BatchIterator(num_samples={self.num_samples}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last}, batches={len(self)})")


def _test_count(test_size, n: int, where: str) -> int:
    if isinstance(test_size, (bool, np.bool_)):
        raise ConvkitError(f"{where}: test_size must be a fraction or a count, got {test_size}")
    if isinstance(test_size, (int, np.integer)):
        if not 0 <= test_size <= n:
            raise ConvkitError(f"{where}: test_size={test_size} is not between 0 and the "
                               f"{n} samples")
        return int(test_size)
    if isinstance(test_size, (float, np.floating)) and 0.0 <= test_size < 1.0:
        # Like scikit-learn: the test set gets ceil(fraction * n) samples.
        return min(n, math.ceil(float(test_size) * n - 1e-9))
    raise ConvkitError(f"{where}: test_size must be a fraction in [0, 1) or a count in "
                       f"[0, {n}], got {test_size!r}")


def _class_labels(labels, n: int, where: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] > 1:  # one-hot / probabilities -> class index
        labels = labels.argmax(axis=1)
    elif labels.ndim == 2:
        labels = labels[:, 0]
    if labels.ndim != 1 or len(labels) != n:
        raise ShapeError(f"{where}: stratify labels must be ({n},) or one-hot ({n}, classes), "
                         f"got shape {np.shape(labels)}")
    return labels


def stratified_test_mask(labels, n_test: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask choosing ``n_test`` samples at random with every class represented in
    proportion to its size (largest-remainder rounding, ties broken at random)."""
    _, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
    codes = codes.reshape(-1)
    ideal = counts * (n_test / len(codes))
    per_class = np.floor(ideal).astype(np.int64)
    remaining = n_test - int(per_class.sum())
    if remaining > 0:
        fraction = ideal - per_class
        tie_break = rng.random(len(counts))
        winners = np.lexsort((tie_break, -fraction))[:remaining]
        per_class[winners] += 1
    # Random order, then grouped by class: the first per_class[c] of class c go to the test set.
    order = rng.permutation(len(codes))
    by_class = order[np.argsort(codes[order], kind="stable")]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(codes), dtype=np.int64)
    rank[by_class] = np.arange(len(codes)) - np.repeat(starts, counts)
    return rank < per_class[codes]


def train_test_split(x, y=None, test_size=0.2, seed=0, stratify=True, shuffle=True):
    """Split arrays into a training and a test part: ``(x_train, y_train), (x_test, y_test)``.

    Args:
        x: array ``(N, ...)`` or a list of arrays; ``y``: ``None``, an array or a list.
        test_size: a fraction in [0, 1) (the test set gets ``ceil(fraction * N)`` samples) or
            a number of samples.
        seed: int seed or ``numpy.random.Generator``; the split is fixed by it.
        stratify: ``True`` keeps every class of ``y`` in the same proportion in both parts
            (``y`` one-hot is read through ``argmax``; ignored when ``y`` is None); ``False``
            draws a plain random split; an array of labels stratifies on those.
        shuffle: ``False`` takes the last samples as the test set, in order (no stratifying).

    Both parts come out in random order (unless ``shuffle=False``). With ``y=None`` the
    returned ``y_train``/``y_test`` are ``None``.

    Example::

        >>> (xt, yt), (xv, yv) = train_test_split(np.zeros((10, 2)), np.arange(10) % 2, 0.4)
        >>> len(xt), len(xv), np.bincount(yv).tolist()
        (6, 4, [2, 2])
    """
    where = "train_test_split"
    xs, x_multi = _as_arrays(x, where, "x")
    groups = [("x", xs, x_multi)]
    ys, y_multi = (None, False) if y is None else _as_arrays(y, where, "y")
    if ys is not None:
        groups.append(("y", ys, y_multi))
    n = _check_lengths(where, groups)
    n_test = _test_count(test_size, n, where)
    rng = _resolve_rng(seed, where)

    if not shuffle:
        train_index, test_index = np.arange(n - n_test), np.arange(n - n_test, n)
    else:
        if stratify is True or stratify is False or stratify is None:
            labels = ys[0] if (stratify is True and ys is not None) else None
        else:
            labels = stratify
        if labels is None:
            order = rng.permutation(n)
            test_index, train_index = order[:n_test], order[n_test:]
        else:
            labels = _class_labels(labels, n, where)
            mask = stratified_test_mask(labels, n_test, rng)
            order = rng.permutation(n)  # final random order of both parts
            train_index, test_index = order[~mask[order]], order[mask[order]]

    def part(index):
        x_part = _take(xs, x_multi, index)
        y_part = None if ys is None else _take(ys, y_multi, index)
        return x_part, y_part

    return part(train_index), part(test_index)
