"""Keras's ``keras.utils`` helpers, on NumPy arrays.

- ``to_categorical(y, num_classes)``: integer labels -> one-hot float32 rows.
- ``normalize(x, axis, order)``: rows scaled to unit norm.
- ``set_random_seed(seed)``: seeds convkit (:func:`convkit.set_seed`), Python's ``random``
  and NumPy's legacy global state, as Keras seeds every generator it knows.
- ``PyDataset``: Keras's batch-sequence base class (``__len__`` batches, ``__getitem__(i)``
  returns batch ``i`` as ``(x, y)`` or ``(x, y, sample_weight)``, ``on_epoch_end()``);
  ``fit``/``evaluate``/``predict`` take one directly.
- ``image_dataset_from_directory``: one sub-folder per class -> a batched
  :class:`ArrayDataset` of ``(images, labels)`` (images float32 in 0..255, as Keras gives
  them), over :func:`convkit.data.load_image_folder`.
- ``split_dataset``: arrays (or a tuple of arrays) cut in two by size or fraction.
- ``plot_model``: the model's graph drawn with matplotlib, one box per layer, saved to
  ``to_file`` (no graphviz needed).
- ``load_img`` / ``img_to_array`` / ``array_to_img`` / ``save_img``: one picture between a
  file, a Pillow image and a float32 ``(height, width, channels)`` array, as in Keras.

    >>> to_categorical([0, 2, 1], num_classes=3)
    array([[1., 0., 0.],
           [0., 0., 1.],
           [0., 1., 0.]], dtype=float32)
"""
from __future__ import annotations

import math

import numpy as np

from .errors import ConvkitError, ShapeError

__all__ = ["to_categorical", "normalize", "set_random_seed", "PyDataset", "Sequence",
           "ArrayDataset", "image_dataset_from_directory", "split_dataset", "plot_model",
           "load_img", "img_to_array", "array_to_img", "save_img"]


# --------------------------------------------------------------------------- arrays
def to_categorical(x, num_classes: int | None = None) -> np.ndarray:
    """Integer class labels of shape ``(N,)`` (or ``(N, 1)``) -> float32 one-hot
    ``(N, num_classes)``; ``num_classes`` defaults to ``max(x) + 1``. Any leading shape
    works: ``(..., )`` -> ``(..., num_classes)``."""
    labels = np.asarray(x)
    where = "to_categorical"
    if labels.size and (not np.issubdtype(labels.dtype, np.number) or
                        np.any(np.mod(labels, 1) != 0) or labels.min() < 0):
        raise ShapeError(f"{where}: expects non-negative integer class labels, got dtype "
                         f"{labels.dtype} with values from {labels.min()} to {labels.max()}")
    labels = labels.astype(np.int64)
    if labels.ndim > 1 and labels.shape[-1] == 1:
        labels = labels[..., 0]                              # (N, 1) -> (N,)
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if labels.size else 0
    if labels.size and labels.max() >= num_classes:
        raise ShapeError(f"{where}: label {int(labels.max())} does not fit num_classes="
                         f"{num_classes}")
    return np.eye(num_classes, dtype=np.float32)[labels]     # (..., num_classes)


def normalize(x, axis: int = -1, order: int = 2) -> np.ndarray:
    """``x`` divided by its ``order``-norm along ``axis`` (zero vectors stay zero)."""
    x = np.asarray(x, dtype=np.result_type(np.asarray(x).dtype, np.float32))
    norm = np.linalg.norm(x, ord=order, axis=axis, keepdims=True)
    return x / np.where(norm == 0, 1, norm)


def set_random_seed(seed: int) -> None:
    """Seed convkit's generators (weights, dropout, shuffling; :func:`convkit.set_seed`),
    Python's ``random`` and NumPy's legacy global generator."""
    import random

    from .random import set_seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConvkitError(f"set_random_seed: seed must be an int, got {seed!r}")
    set_seed(int(seed))
    random.seed(int(seed))
    np.random.seed(int(seed) % (2 ** 32))


# --------------------------------------------------------------------------- datasets
class PyDataset:
    """Base class for data that comes in batches: subclass it and define ``__len__`` (the
    number of batches per epoch) and ``__getitem__(index)`` (batch ``index`` as ``(x, y)``,
    ``(x, y, sample_weight)``, or ``x`` alone for ``predict``). ``on_epoch_end`` runs after
    every epoch of ``fit`` (reshuffle there).

    ``workers``, ``use_multiprocessing`` and ``max_queue_size`` are accepted for Keras
    compatibility; batches are read one at a time in the calling thread.

        class Digits(convkit.utils.PyDataset):
            def __init__(self, x, y, batch_size, **kwargs):
                super().__init__(**kwargs)
                self.x, self.y, self.batch_size = x, y, batch_size
            def __len__(self):
                return math.ceil(len(self.x) / self.batch_size)
            def __getitem__(self, i):
                part = slice(i * self.batch_size, (i + 1) * self.batch_size)
                return self.x[part], self.y[part]
    """

    def __init__(self, workers: int = 1, use_multiprocessing: bool = False,
                 max_queue_size: int = 10):
        self.workers = workers
        self.use_multiprocessing = use_multiprocessing
        self.max_queue_size = max_queue_size

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__}: define __len__ (batches per epoch)")

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__}: define __getitem__(index)")

    @property
    def num_batches(self) -> int:
        return len(self)

    def on_epoch_end(self) -> None:
        """Called after each epoch of ``fit``; does nothing unless overridden."""

    def __iter__(self):
        for index in range(len(self)):
            yield self[index]


#: Keras 2's name for the same idea
Sequence = PyDataset


class ArrayDataset(PyDataset):
    """Arrays served in batches: ``len(ds)`` batches of ``batch_size``, each ``(x, y)``
    (``x`` alone when ``y`` is None). Also a little of ``tf.data``'s interface that Keras
    example scripts call: ``take(n)``, ``map(fn)``, and ``prefetch``/``cache`` (no-ops; the
    data is already in memory). ``class_names`` is set by
    :func:`image_dataset_from_directory`."""

    def __init__(self, x, y=None, batch_size: int | None = 32, shuffle: bool = False,
                 seed: int | None = None, class_names=None, transform=None, limit=None):
        super().__init__()
        self.x, self.y = x, y
        self.batch_size = len(x) if batch_size is None else int(batch_size)
        if self.batch_size < 1:
            raise ConvkitError(f"ArrayDataset: batch_size must be >= 1, got {batch_size!r}")
        self.shuffle = shuffle
        self._rng = np.random.default_rng(seed)
        self._order = self._rng.permutation(len(x)) if shuffle else None
        self.class_names = class_names
        self._transform = transform
        self._limit = limit

    def __len__(self) -> int:
        batches = math.ceil(len(self.x) / self.batch_size)
        return batches if self._limit is None else min(batches, self._limit)

    def __getitem__(self, index):
        if not -len(self) <= index < len(self):
            raise IndexError(f"ArrayDataset: batch {index} out of range for {len(self)} "
                             f"batches")
        index %= len(self)
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        rows = self._order[rows] if self._order is not None else rows
        batch = self.x[rows] if self.y is None else (self.x[rows], self.y[rows])
        if self._transform is not None:
            batch = self._transform(*batch) if isinstance(batch, tuple) else \
                self._transform(batch)
        return batch

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self._order = self._rng.permutation(len(self.x))

    def _copy(self, **changes) -> "ArrayDataset":
        new = ArrayDataset.__new__(ArrayDataset)
        new.__dict__.update(self.__dict__)
        new.__dict__.update(changes)
        return new

    def take(self, count: int) -> "ArrayDataset":
        """The first ``count`` batches."""
        limit = count if self._limit is None else min(count, self._limit)
        return self._copy(_limit=int(limit))

    def map(self, fn, num_parallel_calls=None) -> "ArrayDataset":
        """Apply ``fn(x, y)`` (or ``fn(x)``) to every batch as it is read."""
        previous = self._transform
        if previous is None:
            return self._copy(_transform=fn)

        def chained(*batch):
            out = previous(*batch)
            return fn(*out) if isinstance(out, tuple) else fn(out)
        return self._copy(_transform=chained)

    def prefetch(self, buffer_size=None) -> "ArrayDataset":
        return self

    def cache(self, filename=None) -> "ArrayDataset":
        return self

    def __repr__(self):
        return (f"<ArrayDataset: {len(self)} batches of {self.batch_size}, x "
                f"{tuple(np.shape(self.x))}>")


def image_dataset_from_directory(directory, labels="inferred", label_mode="int",
                                 class_names=None, color_mode="rgb", batch_size=32,
                                 image_size=(256, 256), shuffle=True, seed=None,
                                 validation_split=None, subset=None, interpolation="bilinear",
                                 follow_links=False, crop_to_aspect_ratio=False,
                                 verbose=True):
    """Keras's loader for ``directory/<class>/<image files>``: a batched dataset of
    ``(images, labels)``, images float32 ``(batch, height, width, channels)`` with values
    0..255 (as Keras: rescale in the model, e.g. ``layers.Rescaling(1/255)``), labels int
    ``(batch,)`` (``label_mode="int"``), one-hot (``"categorical"``) or ``(batch, 1)``
    float (``"binary"``); ``label_mode=None`` gives images only.

    ``validation_split`` with ``subset="training"``/``"validation"`` gives that part and
    ``subset="both"`` a pair ``(train_ds, val_ds)``; use the same ``seed`` for both calls.
    The class names (sorted folder names) are in ``ds.class_names``. ``labels`` other than
    ``"inferred"`` and ``crop_to_aspect_ratio=True`` are not supported. All images are read
    when the dataset is made (the data is in memory afterwards).
    """
    from .data import load_image_folder
    where = "image_dataset_from_directory"
    if labels != "inferred":
        raise ConvkitError(f"{where}: only labels='inferred' (one sub-folder per class) is "
                           f"supported, got {labels!r}")
    if crop_to_aspect_ratio:
        raise ConvkitError(f"{where}: crop_to_aspect_ratio=True is not supported")
    mode = label_mode or "int"
    if seed is None and shuffle:
        if validation_split and subset != "both":
            raise ConvkitError(f"{where}: with validation_split and shuffle, give a seed (the "
                               f"same for the training and the validation call) so that the "
                               f"two subsets do not overlap")
        from .random import make_rng
        seed = int(make_rng().integers(2 ** 31))     # follows set_random_seed
    loaded = load_image_folder(directory, image_size=image_size, color_mode=color_mode,
                               validation_split=validation_split, subset=subset, seed=seed,
                               class_names=class_names, label_mode=mode, shuffle=shuffle,
                               interpolation=interpolation, follow_links=follow_links)

    def dataset(x, y, names, part_seed):
        x *= 255.0                                           # Keras's 0..255 pixel values
        if verbose:
            print(f"Found {len(x)} files belonging to {len(names)} classes.")
        return ArrayDataset(x, None if label_mode is None else y, batch_size=batch_size,
                            shuffle=shuffle, seed=part_seed, class_names=list(names))

    if subset == "both":
        (x_train, y_train), (x_val, y_val), names = loaded
        return (dataset(x_train, y_train, names, seed),
                dataset(x_val, y_val, names, None if seed is None else seed + 1))
    x, y, names = loaded
    return dataset(x, y, names, seed)


def split_dataset(dataset, left_size=None, right_size=None, shuffle: bool = False,
                  seed: int | None = None):
    """Cut an array, or a tuple/list of arrays with the same first axis (e.g. ``(x, y)``),
    into ``(left, right)`` of the same structure. Sizes are counts (int) or fractions
    (float); give one or both (default: half and half)."""
    where = "split_dataset"
    arrays = list(dataset) if isinstance(dataset, (tuple, list)) else [dataset]
    arrays = [np.asarray(a) if not hasattr(a, "shape") else a for a in arrays]
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ShapeError(f"{where}: all arrays need the same number of samples, got "
                         f"{[len(a) for a in arrays]}")

    def count(size, name):
        if size is None:
            return None
        if isinstance(size, float) and 0 < size < 1:
            return int(round(size * n))
        if isinstance(size, (int, np.integer)) and not isinstance(size, bool) and 0 < size <= n:
            return int(size)
        raise ConvkitError(f"{where}: {name} must be a fraction in (0, 1) or a count in "
                           f"[1, {n}], got {size!r}")
    left, right = count(left_size, "left_size"), count(right_size, "right_size")
    if left is None and right is None:
        left = n // 2
    if left is None:
        left = n - right
    if right is None:
        right = n - left
    if left + right > n:
        raise ConvkitError(f"{where}: left_size + right_size ({left} + {right}) exceeds the "
                           f"{n} samples")
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    parts = ([a[order[:left]] for a in arrays], [a[order[left:left + right]] for a in arrays])
    if not isinstance(dataset, (tuple, list)):
        return parts[0][0], parts[1][0]
    return tuple(type(dataset)(part) for part in parts)


# --------------------------------------------------------------------------- one image
def load_img(path, color_mode: str = "rgb", target_size=None, interpolation: str = "nearest",
             keep_aspect_ratio: bool = False):
    """A Pillow image of the file at ``path`` in ``color_mode`` ("rgb", "grayscale",
    "rgba"), resized to ``target_size=(height, width)`` if given (Keras's default
    ``interpolation="nearest"``). ``keep_aspect_ratio=True`` is not supported. Unreadable
    files raise :class:`~convkit.errors.FileFormatError`."""
    from .data.images import read_image
    if keep_aspect_ratio:
        raise ConvkitError("load_img: keep_aspect_ratio=True is not supported")
    pixels = read_image(path, size=target_size, color_mode=color_mode,
                        interpolation=interpolation, normalize=False)
    return array_to_img(pixels, scale=False)


def img_to_array(img, dtype=None) -> np.ndarray:
    """A Pillow image (or array) as ``(height, width, channels)`` in ``dtype`` (floatx)."""
    from . import config
    pixels = np.asarray(img, dtype=dtype or config.floatx())
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]                   # (H, W) -> (H, W, 1)
    if pixels.ndim != 3:
        raise ShapeError(f"img_to_array: expected an image of 2 or 3 dimensions, got shape "
                         f"{pixels.shape}")
    return pixels


def array_to_img(x, scale: bool = True):
    """A ``(height, width, channels)`` array (1, 3 or 4 channels) as a Pillow image; with
    ``scale`` the values are stretched to 0..255 first (``(x - min) / (max - min) * 255``)."""
    from .data.images import require_pillow
    Image = require_pillow("array_to_img")
    pixels = np.asarray(x, dtype=np.float64)
    if pixels.ndim != 3 or pixels.shape[-1] not in (1, 3, 4):
        raise ShapeError(f"array_to_img: expected (height, width, 1, 3 or 4 channels), got "
                         f"shape {pixels.shape}")
    if scale:
        low, high = float(pixels.min()), float(pixels.max())
        pixels = (pixels - low) / (high - low if high > low else 1.0) * 255.0
    pixels = np.clip(np.round(pixels), 0, 255).astype(np.uint8)
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[pixels.shape[-1]]
    return Image.fromarray(pixels[:, :, 0] if mode == "L" else pixels, mode=mode)


def save_img(path, x, file_format=None, scale: bool = True) -> None:
    """Write the array ``x`` as a picture (format from ``file_format`` or the extension),
    atomically."""
    import os
    from .io.archive import atomic_writer
    image = array_to_img(x, scale=scale)
    extension = os.path.splitext(os.fspath(path))[1].lstrip(".").lower()
    fmt = (file_format or {"jpg": "jpeg", "tif": "tiff"}.get(extension, extension) or "png")
    with atomic_writer(path, "wb") as handle:
        image.save(handle, format=fmt.upper())


# --------------------------------------------------------------------------- plot_model
def plot_model(model, to_file: str = "model.png", show_shapes: bool = False,
               show_dtype: bool = False, show_layer_names: bool = True, rankdir: str = "TB",
               expand_nested: bool = False, dpi: int = 200, show_layer_activations=False,
               show_trainable: bool = False):
    """Draw the model's graph with matplotlib and save it to ``to_file`` (PNG, or any
    format matplotlib writes, by extension). One box per layer with its name and class
    (``show_shapes``: input and output shapes; ``show_dtype``, ``show_layer_activations``,
    ``show_trainable`` add those), arrows from each layer to the layers that read it,
    inputs at the top (``rankdir="TB"``) or left (``"LR"``). A model used as a layer is
    one box, or with ``expand_nested`` its own layers inside a dashed frame named after it.
    Returns the matplotlib ``Figure``."""
    from .viz import _mpl
    layers, edges, _, _ = _flatten_graph(model, expand_nested)
    boxes = [_box_lines(layer, show_shapes, show_dtype, show_layer_names,
                        show_layer_activations, show_trainable) for layer, _ in layers]
    depth = _layer_depths(boxes, edges)
    levels: dict[int, list[int]] = {}
    for index in range(len(boxes)):
        levels.setdefault(depth[index], []).append(index)
    widest = max(len(v) for v in levels.values())
    horizontal = str(rankdir).upper() == "LR"
    # box size in inches: monospace 8 pt is about 0.067 inch per character, 0.15 per line
    box_w = 0.4 + 0.067 * max(len(line) for lines in boxes for line in lines)
    box_h = 0.3 + 0.15 * max(len(lines) for lines in boxes)
    # distance between neighbouring boxes along the flow and across it
    step_along = (box_w if horizontal else box_h) + 0.6
    step_across = (box_h if horizontal else box_w) + 0.3
    span_across, span_along = widest * step_across, len(levels) * step_along
    fig = _mpl.new_figure(*((span_along, span_across) if horizontal
                            else (span_across, span_along)))
    ax = fig.add_subplot()
    ax.set_axis_off()
    centre = {}
    for level, members in levels.items():
        for slot, index in enumerate(members):
            across = (slot - (len(members) - 1) / 2) * step_across
            along = -level * step_along
            centre[index] = (-along, -across) if horizontal else (across, along)
    texts = []
    for index, lines in enumerate(boxes):
        x, y = centre[index]
        texts.append(ax.text(x, y, "\n".join(lines), ha="center", va="center", fontsize=8,
                             family="monospace",
                             bbox={"boxstyle": "round,pad=0.4", "facecolor": "#eef3fb",
                                   "edgecolor": "#3b5b92"}))
    for source, target in edges:
        # the arrow is clipped to the two boxes' outlines, so it runs edge to edge
        ax.annotate("", xy=centre[target], xytext=centre[source], annotation_clip=False,
                    arrowprops={"arrowstyle": "-|>", "color": "#555555",
                                "patchA": texts[source].get_bbox_patch(),
                                "patchB": texts[target].get_bbox_patch()})
    _draw_frames(ax, layers, centre, box_w, box_h)
    xs = [c[0] for c in centre.values()]
    ys = [c[1] for c in centre.values()]
    pad_x, pad_y = box_w / 1.6, box_h
    ax.set_xlim(min(xs) - pad_x, max(xs) + pad_x)
    ax.set_ylim(min(ys) - pad_y, max(ys) + pad_y)
    if to_file:
        import os
        from .io.archive import atomic_writer
        directory = os.path.dirname(os.fspath(to_file))
        if directory:
            os.makedirs(directory, exist_ok=True)
        extension = os.path.splitext(os.fspath(to_file))[1].lstrip(".").lower() or "png"
        with atomic_writer(to_file, "wb") as handle:
            fig.savefig(handle, format=extension, dpi=dpi)
    return fig


def _flatten_graph(model, expand: bool, frame: str | None = None):
    """The boxes to draw and the arrows between them.

    Returns ``(boxes, edges, input_boxes, output_box)``: ``boxes`` a list of ``(layer,
    frame)`` (``frame`` the name of the nested model a box is drawn inside, or None),
    ``edges`` pairs ``(producer box, reader box)``, and the boxes where this model's inputs
    enter and its output leaves (how an outer graph connects to an expanded model)."""
    from .models import Model
    boxes, edges = [], []

    def add(layer):
        """Box(es) for one layer: ``(input boxes or None, output box)``."""
        if expand and isinstance(layer, Model) and layer.layers:
            inner, inner_edges, ins, out = _flatten_graph(layer, expand, layer.name)
            offset = len(boxes)
            boxes.extend(inner)
            edges.extend((a + offset, b + offset) for a, b in inner_edges)
            return [i + offset for i in ins], out + offset
        boxes.append((layer, frame))
        return None, len(boxes) - 1

    def connect(source, target):
        if (source, target) not in edges:
            edges.append((source, target))

    if getattr(model, "_nodes", None) is None:             # Sequential: a chain
        chain = list(model.layers)
        if getattr(model, "_input_layer", None) is not None:
            chain.insert(0, model._input_layer)
        ends = [add(layer) for layer in chain]
        for (_, source), (ins, out) in zip(ends, ends[1:]):
            connect(source, ins[0] if ins else out)
        first_ins, first_out = ends[0]
        return boxes, edges, first_ins or [first_out], ends[-1][1]
    ends = {id(layer): add(layer) for layer in model.layers}
    for node in model._nodes:
        ins, out = ends[id(node.layer)]
        for position, tensor in enumerate(node.inputs):
            connect(ends[id(tensor.layer)][1], ins[position] if ins else out)
    inputs = [ends[id(t.layer)][1] for t in model._inputs]
    return boxes, edges, inputs, ends[id(model._outputs[0].layer)][1]


def _box_lines(layer, show_shapes, show_dtype, show_layer_names, show_activations,
               show_trainable) -> list[str]:
    """The text of one layer's box."""
    from .models.summary import _shape_text as shape_text
    kind = type(layer).__name__
    lines = [f"{layer.name} ({kind})" if show_layer_names else kind]
    if show_activations and getattr(layer, "activation", None) is not None:
        lines.append(f"Activation: {getattr(layer.activation, 'name', layer.activation)}")
    if show_shapes:
        lines.append(f"Input shape: {shape_text(getattr(layer, 'input_shape', None))}")
        lines.append(f"Output shape: {shape_text(getattr(layer, 'output_shape', None))}")
    if show_dtype:
        lines.append(f"dtype: {getattr(layer, 'dtype', '?')}")
    if show_trainable:
        lines.append(f"Trainable: {bool(getattr(layer, 'trainable', True))}")
    return lines


def _draw_frames(ax, boxes, centre, box_w: float, box_h: float) -> None:
    """A dashed frame, labelled with the model's name, around each expanded model's boxes."""
    from matplotlib.patches import Rectangle
    frames: dict[str, list[int]] = {}
    for index, (_, frame) in enumerate(boxes):
        if frame is not None:
            frames.setdefault(frame, []).append(index)
    for name, members in frames.items():
        xs = [centre[i][0] for i in members]
        ys = [centre[i][1] for i in members]
        left, bottom = min(xs) - box_w / 2 - 0.15, min(ys) - box_h / 2 - 0.15
        width, height = max(xs) - min(xs) + box_w + 0.3, max(ys) - min(ys) + box_h + 0.3
        ax.add_patch(Rectangle((left, bottom), width, height, fill=False, linestyle="--",
                               edgecolor="#888888"))
        ax.text(left + 0.05, bottom + height + 0.05, name, fontsize=8, color="#555555",
                ha="left", va="bottom")


def _layer_depths(boxes, edges) -> list[int]:
    """Longest-path depth of every box from the inputs (edges go producer -> reader)."""
    depth = [0] * len(boxes)
    for _ in range(len(boxes)):             # edges are few; relax until nothing changes
        changed = False
        for source, target in edges:
            if depth[target] < depth[source] + 1:
                depth[target] = depth[source] + 1
                changed = True
        if not changed:
            break
    return depth
