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

The MNIST pictures come from a short training run of Keras's simple MNIST convnet on the
bundled digits (``--model`` uses a saved model for the filters and feature maps instead).
"""
from __future__ import annotations

import argparse
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

    t = time.perf_counter()
    viz.seed_example_figure(os.path.join(out, "seed_example.png"))
    done("seed_example.png", t)

    t = time.perf_counter()
    china = ck.data.load_sample_images()[0]                       # (427, 640, 3)
    # A teaching order; 5x5 where a filter has a size, so blurs and lines show at this scale.
    order = [("identity", 3), ("box_blur", 5), ("gaussian_blur", 5), "sharpen",
             ("vertical_line", 5), ("horizontal_line", 5), "sobel_x", "sobel_y", "prewitt_x",
             "prewitt_y", "laplacian", "emboss"]
    listed = {entry if isinstance(entry, str) else entry[0] for entry in order}
    order += [name for name in ck.filters.names() if name not in listed]
    viz.plot_filter_gallery(resize(china, (180, 270)), names=order, panel_size=2.0,
                            path=os.path.join(out, "filter_gallery.png"))
    done("filter_gallery.png", t)

    t = time.perf_counter()
    viz.plot_border_effect(5, 3, compare=["same"], path=os.path.join(out, "border_effect.png"))
    done("border_effect.png", t)
    t = time.perf_counter()
    viz.plot_border_effect(6, 3, strides=2, compare=["same"],
                           path=os.path.join(out, "border_effect_stride2.png"))
    done("border_effect_stride2.png", t)

    t = time.perf_counter()
    model, history, x_test, y_test = train_short(args.epochs, args.seed)
    viz.plot_history(history, path=os.path.join(out, "training_curves.png"),
                     title=f"Simple MNIST convnet, {args.epochs} epochs on 4,000 digits "
                           f"(validation: 1,000 held-out digits)\nsolid = training, "
                           f"dashed = validation")
    done("training_curves.png", t)
    if args.model:
        model = ck.load_model(args.model)

    t = time.perf_counter()
    first_conv = next(layer for layer in model.layers if type(layer).__name__ == "Conv2D")
    viz.plot_filters(first_conv, path=os.path.join(out, "mnist_filters.png"), cols=8)
    done("mnist_filters.png", t)
    t = time.perf_counter()
    digit = x_test[int(np.flatnonzero(y_test == 7)[0])]           # a 7: strokes in two directions
    viz.plot_feature_maps(model, digit, layer=first_conv.name, cols=8,
                          path=os.path.join(out, "mnist_feature_maps.png"))
    done("mnist_feature_maps.png", t)

    t = time.perf_counter()
    save_digit(digit, os.path.join(out, "digit_7.png"), scale=4)
    done("digit_7.png", t)
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
