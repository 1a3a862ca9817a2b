"""Draw the pictures of the README into docs/images/.

    python examples/make_readme_pictures.py                 # a minute or two on two cores
    python examples/make_readme_pictures.py --model out/mnist_convnet.convkit --epochs 3

Pictures:
    seed_example.png         the two sample photographs through vertical / horizontal line filters
    filter_gallery.png       one photograph through every classic filter of convkit.filters
    border_effect.png        how often a 3x3 window reads each pixel of a 5x5 input, valid vs same
    border_effect_stride2.png  stride 2 on 6x6: valid never reads the last row and column
    mnist_filters.png        the 32 learned 3x3 kernels of the MNIST convnet's first layer
    mnist_feature_maps.png   a test digit through that first layer
    training_curves.png      loss and accuracy per epoch, training and validation
    digit_7.png              that test digit as an image file (4x enlarged), the input of the
                             README's `convkit predict` and `convkit featuremaps` examples
    readme_pictures.json     the data behind the MNIST pictures (first-layer weights, history),
                             from which tests/test_readme_pictures.py redraws them

The MNIST pictures come from a short training run of Keras's simple MNIST convnet on the
bundled digits (``--model`` uses a saved model for the filters and feature maps instead).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time

import numpy as np

import convkit as ck
from convkit import viz
from convkit.viz._images import resize


def train_short(epochs: int, seed: int):
    """Keras's simple MNIST convnet, trained for a few epochs with a validation set."""
    from convkit.data import load_mnist
    from convkit.jobs import mnist_convnet
    (x_train, y_train), (x_test, y_test) = load_mnist(seed=seed)
    ck.set_seed(seed)
    model = mnist_convnet()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x_train, y_train, batch_size=64, epochs=epochs, verbose=0,
                        validation_data=(x_test, y_test), shuffle=True)
    return model, history, x_test, y_test


#: The data behind the MNIST pictures (the trained first layer and the training history),
#: written beside them so tests/test_readme_pictures.py can redraw every picture with the
#: code as it is and compare it with the committed one.
DATA_FILE = "readme_pictures.json"
STATIC_PICTURES = ("seed_example.png", "filter_gallery.png", "border_effect.png",
                   "border_effect_stride2.png", "digit_7.png")
MNIST_PICTURES = ("training_curves.png", "mnist_filters.png", "mnist_feature_maps.png")


@functools.lru_cache(maxsize=1)
def test_digit():
    """The first 7 of the held-out MNIST digits (strokes in two directions), (28, 28, 1)."""
    from convkit.data import load_mnist
    _, (x_test, y_test) = load_mnist(seed=0)
    return x_test[int(np.flatnonzero(y_test == 7)[0])]


def draw_static(out: str, names=STATIC_PICTURES, report=None) -> None:
    """The pictures that need no training: the seed example, the filter gallery, the two
    border-effect maps and the test digit as a file."""
    report = report or (lambda name, start: None)
    drawers = {
        "seed_example.png": lambda path: viz.seed_example_figure(path),
        "filter_gallery.png": lambda path: draw_gallery(path),
        "border_effect.png": lambda path: viz.plot_border_effect(5, 3, compare=["same"],
                                                                 path=path),
        "border_effect_stride2.png": lambda path: viz.plot_border_effect(
            6, 3, strides=2, compare=["same"], path=path),
        "digit_7.png": lambda path: save_digit(test_digit(), path, scale=4),
    }
    for name in names:
        start = time.perf_counter()
        drawers[name](os.path.join(out, name))
        report(name, start)


def draw_gallery(path) -> None:
    china = ck.data.load_sample_images()[0]                       # (427, 640, 3)
    # A teaching order; 5x5 where a filter has a size, so blurs and lines show at this scale.
    order = [("identity", 3), ("box_blur", 5), ("gaussian_blur", 5), "sharpen",
             ("vertical_line", 5), ("horizontal_line", 5), "sobel_x", "sobel_y", "prewitt_x",
             "prewitt_y", "laplacian", "emboss"]
    listed = {entry if isinstance(entry, str) else entry[0] for entry in order}
    order += [name for name in ck.filters.names() if name not in listed]
    viz.plot_filter_gallery(resize(china, (180, 270)), names=order, panel_size=2.0, path=path)


def mnist_data(model, history, epochs: int) -> dict:
    """What the MNIST pictures are drawn from: the first convolution's name, kernel and bias,
    and the history (JSON-ready)."""
    first_conv = next(layer for layer in model.layers if type(layer).__name__ == "Conv2D")
    kernel, bias = first_conv.get_weights()
    return {"epochs": epochs, "layer": first_conv.name,
            "kernel_shape": list(kernel.shape), "kernel": [float(v) for v in kernel.ravel()],
            "bias": [float(v) for v in bias],
            "history": {key: [float(v) for v in values]
                        for key, values in history.history.items()}}


def draw_mnist(out: str, data: dict, names=MNIST_PICTURES, report=None) -> None:
    """The MNIST pictures from :func:`mnist_data`'s record: curves, filters, feature maps."""
    report = report or (lambda name, start: None)
    kernel = np.asarray(data["kernel"], np.float32).reshape(data["kernel_shape"])
    layer = ck.layers.Conv2D(kernel.shape[3], kernel.shape[:2], activation="relu",
                             name=data["layer"])
    layer.build((None, 28, 28, kernel.shape[2]))
    layer.set_weights([kernel, np.asarray(data["bias"], np.float32)])
    epochs = data["epochs"]
    drawers = {
        "training_curves.png": lambda path: viz.plot_history(
            data["history"], path=path,
            title=f"Simple MNIST convnet, {epochs} epochs on 4,000 digits (validation: 1,000 "
                  f"held-out digits)\nsolid = training, dashed = validation"),
        "mnist_filters.png": lambda path: viz.plot_filters(layer, path=path, cols=8),
        "mnist_feature_maps.png": lambda path: viz.plot_feature_maps(layer, test_digit(),
                                                                     cols=8, path=path),
    }
    for name in names:
        start = time.perf_counter()
        drawers[name](os.path.join(out, name))
        report(name, start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="docs/images", help="output folder")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the short training")
    parser.add_argument("--model", help="saved model for the filters and feature maps")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = args.out
    os.makedirs(out, exist_ok=True)

    def done(name, start):
        path = os.path.join(out, name)
        print(f"{path:45s} {os.path.getsize(path) / 1024:6.0f} KB  {time.perf_counter() - start:5.1f} s")

    draw_static(out, report=done)
    start = time.perf_counter()
    model, history, _, _ = train_short(args.epochs, args.seed)
    if args.model:
        model = ck.load_model(args.model)
    data = mnist_data(model, history, args.epochs)
    from convkit.io.archive import atomic_write_bytes
    atomic_write_bytes(os.path.join(out, DATA_FILE), json.dumps(data, indent=1).encode())
    print(f"trained {args.epochs} epochs in {time.perf_counter() - start:.1f} s")
    draw_mnist(out, data, report=done)
    return 0


def save_digit(digit, path, scale: int = 4) -> None:
    """Write a (28, 28, 1) digit in [0, 1] as a grey PNG, each pixel a scale x scale block
    (written atomically)."""
    import io

    from PIL import Image

    from convkit.io.archive import atomic_write_bytes
    pixels = np.round(np.asarray(digit)[:, :, 0] * 255).astype(np.uint8)      # (28, 28)
    big = np.repeat(np.repeat(pixels, scale, axis=0), scale, axis=1)           # (28s, 28s)
    buffer = io.BytesIO()
    Image.fromarray(big, mode="L").save(buffer, format="PNG", optimize=True)
    atomic_write_bytes(path, buffer.getvalue())


if __name__ == "__main__":
    sys.exit(main())
