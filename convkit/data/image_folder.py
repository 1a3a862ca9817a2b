"""Load a directory of images, one sub-folder per class, into arrays (Keras's
``image_dataset_from_directory``, returning NumPy arrays instead of a tf.data pipeline)."""
from __future__ import annotations

import os
import warnings

import numpy as np

from ..errors import ConvkitError, FileFormatError
from .images import (IMAGE_EXTENSIONS, check_color_mode, check_size, read_image,
                     require_pillow)

_LABEL_MODES = ("int", "categorical", "binary")
_SUBSETS = ("training", "validation", "both")


def _list_class_files(root: str, class_dir: str, follow_links: bool) -> list[str]:
    """Image files under ``root/class_dir`` (recursively), sorted, relative to ``root``."""
    found = []
    top = os.path.join(root, class_dir)
    for current, dirs, files in os.walk(top, followlinks=follow_links):
        dirs.sort()
        for name in sorted(files):
            if name.startswith(".") or not name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            found.append(os.path.relpath(os.path.join(current, name), root))
    return found


def _encode_labels(labels: np.ndarray, num_classes: int, label_mode: str) -> np.ndarray:
    if label_mode == "int":
        return labels.astype(np.int64)
    if label_mode == "binary":
        return labels.astype(np.float32)[:, None]  # (N,) -> (N, 1)
    one_hot = np.zeros((len(labels), num_classes), dtype=np.float32)
    one_hot[np.arange(len(labels)), labels] = 1.0
    return one_hot


def load_image_folder(directory, image_size=(64, 64), color_mode: str = "rgb",
                      validation_split: float | None = None, subset: str | None = None,
                      seed: int | None = 0, class_names=None, label_mode: str = "int",
                      shuffle: bool = True, interpolation: str = "bilinear",
                      on_error: str = "warn", follow_links: bool = False):
    """Read ``directory/<class>/<image>`` into arrays, one sub-folder per class.

    Layout::

        directory/
            cats/   a.png b.jpg ...
            dogs/   c.bmp d.webp ...

    Classes are the sub-folder names in sorted order (label 0 is the first), or
    ``class_names`` to choose the order (it must name exactly the sub-folders). Images are
    found recursively in each class folder, by extension (png, jpg/jpeg, bmp, gif, tif/tiff,
    webp); other files and files in ``directory`` itself are ignored. Every image is resized to
    ``image_size=(height, width)`` with Pillow (``interpolation``) and converted by
    ``color_mode``: "rgb" (3 channels), "grayscale" (1) or "rgba" (4); alpha is dropped for rgb
    and grayscale.

    Returns ``(x, y, class_names)``: ``x`` float32 ``(N, height, width, channels)`` in [0, 1],
    ``y`` int64 ``(N,)`` (``label_mode="int"``), float32 one-hot ``(N, classes)``
    ("categorical") or float32 ``(N, 1)`` ("binary", exactly two classes). Samples are in
    random order fixed by ``seed`` (``shuffle=False``: sorted by class, then file name).

    ``validation_split`` (a fraction in (0, 1)) with ``subset``: as in Keras the shuffled
    files are cut so that the last ``int(validation_split * N)`` form the validation set;
    ``subset="training"`` or ``"validation"`` returns ``(x, y, class_names)`` for that part,
    ``subset="both"`` returns ``((x_train, y_train), (x_val, y_val), class_names)``.

    Unreadable image files are skipped with one warning naming them (``on_error="warn"``) or
    raise ``FileFormatError`` (``on_error="raise"``). A missing directory raises
    ``FileNotFoundError``; no class folders or no images raise ``ConvkitError``.

    Example::

        >>> x, y, names = load_image_folder("flowers/", image_size=(32, 32))
        >>> x.shape, y.dtype, names
        ((120, 32, 32, 3), dtype('int64'), ['daisy', 'rose', 'tulip'])
    """
    where = "load_image_folder"
    require_pillow(where)
    size = check_size(image_size, where, "image_size")
    if size is None:
        raise ConvkitError(f"{where}: image_size=(height, width) is required, got None")
    channels = check_color_mode(color_mode, where)
    if label_mode not in _LABEL_MODES:
        raise ConvkitError(f"{where}: label_mode must be one of {list(_LABEL_MODES)}, got "
                           f"{label_mode!r}")
    if on_error not in ("warn", "raise"):
        raise ConvkitError(f"{where}: on_error must be 'warn' or 'raise', got {on_error!r}")
    if validation_split is not None:
        if not isinstance(validation_split, (float, int)) or not 0 < validation_split < 1:
            raise ConvkitError(f"{where}: validation_split must be a fraction in (0, 1), got "
                               f"{validation_split!r}")
        if subset not in _SUBSETS:
            raise ConvkitError(f"{where}: with validation_split, subset must be one of "
                               f"{list(_SUBSETS)}, got {subset!r}")
    elif subset is not None:
        raise ConvkitError(f"{where}: subset={subset!r} needs validation_split")

    root = os.path.expanduser(os.fspath(directory))
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{where}: {root!r} is not a directory; create it with one "
                                f"sub-folder of images per class, e.g. "
                                f"{os.path.join(root, 'cats', 'img001.png')!r}")
    folders = sorted(entry.name for entry in os.scandir(root)
                     if entry.is_dir() and not entry.name.startswith("."))
    if class_names is None:
        names = folders
    else:
        names = [str(name) for name in class_names]
        if sorted(names) != folders:
            raise ConvkitError(f"{where}: class_names {names} must name exactly the "
                               f"sub-folders of {root!r}, which are {folders}")
    if not names:
        raise ConvkitError(f"{where}: {root!r} has no class sub-folders; expected one "
                           "sub-folder per class, e.g. "
                           f"{os.path.join(root, 'cats', 'img001.png')!r}")
    if label_mode == "binary" and len(names) != 2:
        raise ConvkitError(f"{where}: label_mode='binary' needs exactly 2 classes, found "
                           f"{len(names)}: {names}")

    files, labels = [], []
    for label, name in enumerate(names):
        class_files = _list_class_files(root, name, follow_links)
        files.extend(class_files)
        labels.extend([label] * len(class_files))
    if not files:
        raise ConvkitError(f"{where}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in the "
                           f"class folders {names} of {root!r}")
    labels = np.asarray(labels, dtype=np.int64)

    order = np.arange(len(files))
    if shuffle:
        order = np.random.default_rng(seed).permutation(len(files))
    if validation_split is not None:
        n_val = int(validation_split * len(files))
        parts = {"training": order[:len(order) - n_val], "validation": order[len(order) - n_val:]}
    else:
        parts = {"all": order}
    wanted = ["training", "validation"] if subset == "both" else [subset or "all"]

    failures = []  # (relative file name, error message)

    def load(indices):
        x = np.empty((len(indices), size[0], size[1], channels), dtype=np.float32)
        keep = np.ones(len(indices), dtype=bool)
        for row, index in enumerate(indices):
            try:
                x[row] = read_image(os.path.join(root, files[index]), size=size,
                                    color_mode=color_mode, interpolation=interpolation)
            except FileFormatError as exc:
                if on_error == "raise":
                    raise
                keep[row] = False
                failures.append((files[index], str(exc)))
        if not keep.all():
            x = x[keep]  # copies, so only when something was skipped
        y = _encode_labels(labels[np.asarray(indices, dtype=np.int64)[keep]], len(names),
                           label_mode)
        return x, y

    loaded = [load(parts[name]) for name in wanted]
    attempted = sum(len(parts[name]) for name in wanted)
    if failures and len(failures) == attempted:
        raise ConvkitError(f"{where}: none of the {attempted} image files in {root!r} could "
                           f"be read; first error: {failures[0][1]}")
    if failures:
        listed = ", ".join(name for name, _ in failures[:10])
        more = f" and {len(failures) - 10} more" if len(failures) > 10 else ""
        warnings.warn(f"{where}: skipped {len(failures)} unreadable file(s) in {root!r}: "
                      f"{listed}{more} (first error: {failures[0][1]})", stacklevel=2)
    if subset == "both":
        return loaded[0], loaded[1], list(names)
    x, y = loaded[0]
    return x, y, list(names)
