"""The ``convkit`` command line: a thin layer over the library.

    convkit shape --input 28 --kernel 5                  output size, pads and the formula
    convkit summary mnist_convnet --explain              a model's table and its arithmetic
    convkit filter sample:china --kernel sobel_x -o sobel.png
    convkit filter sample:china --gallery -o gallery.png
    convkit featuremaps model.ckz digit.png --layer conv2d -o maps.png
    convkit featuremaps --seed-example -o seed.png
    convkit train --epochs 3 -o model.ckz --curves curves.png
    convkit train --data photos/ --image-size 64 -o photos.ckz   one sub-folder per class
    convkit predict model.ckz digit.png --top 3 --show seen.png
    convkit explore model.ckz digit.png                  the model in the browser
    convkit explore lenet5 --export page.html            the same as one offline page
    convkit bench ...                                    the benchmarks, where checked out

Every command has ``--help``. Bad input ends with exit code 2 (a usage error) or 1 and a one-line
``convkit: error: ...`` message, without a traceback (``--debug`` shows one).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

from .errors import ConvkitError

PROG = "convkit"


class CommandError(ConvkitError):
    """A problem with the command's input, reported on one line."""


# ------------------------------------------------------------------------------ built-in models
def mnist_convnet():
    """Keras's "simple MNIST convnet": 34,826 parameters on (28, 28, 1) digits."""
    from .jobs import mnist_convnet as build
    return build()


def lenet5():
    """LeCun's LeNet-5 on (32, 32, 1) images, tanh and average pooling: 61,706 parameters."""
    from . import layers
    from .models import Sequential
    return Sequential([
        layers.Input((32, 32, 1)),
        layers.Conv2D(6, 5, activation="tanh", name="c1"),
        layers.AveragePooling2D(2, name="s2"),
        layers.Conv2D(16, 5, activation="tanh", name="c3"),
        layers.AveragePooling2D(2, name="s4"),
        layers.Flatten(name="flatten"),
        layers.Dense(120, activation="tanh", name="c5"),
        layers.Dense(84, activation="tanh", name="f6"),
        layers.Dense(10, activation="softmax", name="output"),
    ], name="lenet5")


BUILTIN_MODELS = {"mnist_convnet": mnist_convnet, "lenet5": lenet5}


def _load_model(spec: str, allow_builtin: bool = False):
    if allow_builtin and spec in BUILTIN_MODELS:
        return BUILTIN_MODELS[spec]()
    if not os.path.exists(spec):
        known = f" or a built-in name ({', '.join(BUILTIN_MODELS)})" if allow_builtin else ""
        raise CommandError(f"model file {spec!r} does not exist (give a saved model{known})")
    from .models import load_model
    return load_model(spec)


def _model_input_shape(model) -> tuple:
    shape = model.input_shape
    if isinstance(shape, list):
        raise CommandError(f"model {model.name!r} has {len(shape)} inputs; this command "
                           f"needs a single image input")
    if len(shape) != 4:
        raise CommandError(f"model {model.name!r} takes inputs of shape {tuple(shape)}, "
                           f"not images (None, height, width, channels)")
    return tuple(shape)


def _image_for_model(model, image_arg: str) -> np.ndarray:
    """Load ``image_arg`` resized and converted to the model's input: ``(H, W, C)``."""
    from .viz._images import load_image
    _, h, w, c = _model_input_shape(model)
    if c not in (1, 3):
        raise CommandError(f"model {model.name!r} takes {c}-channel images; only 1 (grey) and "
                           f"3 (RGB) are read from files")
    return load_image(image_arg, PROG, size=(h, w),
                      color_mode="grayscale" if c == 1 else "rgb")


# ------------------------------------------------------------------------------ commands
def _size_token(text: str) -> list[int]:
    """argparse type of a size token: ``"28"``, ``"28x28"``, ``"28x28x1"`` or ``"28,28"`` ->
    ``[28]``, ``[28, 28]``, ``[28, 28, 1]``."""
    parts = text.lower().replace("x", ",").split(",")
    if not all(part.strip().isdigit() for part in parts):
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: give whole numbers as N, "
                                         f"HxW or HxWxC (e.g. 28, 28x28, 28x28x1)")
    return [int(part) for part in parts]


def _numbers(values, name: str) -> list[int]:
    """The tokens of an option taking sizes (``--input 28 28 1``, ``--input 28x28x1``), each
    already split by :func:`_size_token` (strings are split here), as one list of ints."""
    numbers = []
    for value in values:                       # a default such as ["1"] is not split yet
        numbers += value if isinstance(value, list) else _size_token(str(value))
    if not numbers:
        raise CommandError(f"--{name} needs a number")
    return numbers


def _pair(values, name: str):
    """One or two numbers (``3``, ``3x3``, ``3 5``) as an int or a pair."""
    numbers = _numbers(values, name)
    if len(numbers) > 2:
        raise CommandError(f"--{name} takes one or two numbers (N or HxW), got {len(numbers)}")
    return numbers[0] if len(numbers) == 1 else tuple(numbers)


def _input_size(values):
    """``--input``: ``N``, ``HxW`` or ``HxWxC`` (also ``H W C``) -> ``(size, channels)``,
    channels ``None`` when not given."""
    numbers = _numbers(values, "input")
    if len(numbers) > 3:
        raise CommandError(f"--input takes N, HxW or HxWxC (e.g. 28, 28x28, 28x28x1), got "
                           f"{len(numbers)} numbers")
    size = numbers[0] if len(numbers) == 1 else tuple(numbers[:2])
    return size, (numbers[2] if len(numbers) == 3 else None)


def _parse_padding(text: str):
    mode = text.lower()
    if mode in ("same", "valid"):
        return mode
    try:
        numbers = [int(v) for v in text.replace(" ", "").split(",")]
    except ValueError:
        raise CommandError(f"--padding must be same, valid, N, 'PH,PW' or 'TOP,BOTTOM,LEFT,"
                           f"RIGHT', got {text!r}") from None
    if len(numbers) == 1:
        return numbers[0]
    if len(numbers) == 2:
        return tuple(numbers)
    if len(numbers) == 4:
        return ((numbers[0], numbers[1]), (numbers[2], numbers[3]))
    raise CommandError(f"--padding takes 1, 2 or 4 numbers, got {text!r}")


def cmd_shape(args) -> int:
    from .explain import explain_conv, explain_pool, format_window
    size, channels = _input_size(args.input)
    if args.channels is not None:
        if channels is not None and channels != args.channels:
            raise CommandError(f"--input gives {channels} channels but --channels {args.channels}")
        channels = args.channels
    kernel = _pair(args.kernel, "kernel")
    stride = None if args.stride is None else _pair(args.stride, "stride")
    padding = _parse_padding(args.padding)
    if args.pool:
        if _pair(args.dilation, "dilation") != 1:
            raise CommandError("--dilation applies to convolutions, not to --pool")
        if args.filters is not None:
            raise CommandError("--filters applies to convolutions; pooling keeps the channels")
        info = explain_pool(size, kernel, stride, padding, args.ceil_mode, args.pool)
        if channels is not None:
            info["channels"] = channels
    else:
        if args.ceil_mode:
            raise CommandError("--ceil-mode applies to pooling; add --pool max or --pool avg")
        info = explain_conv(size, kernel, 1 if stride is None else stride, padding,
                            _pair(args.dilation, "dilation"))
        if args.filters is not None:
            info.update(_conv_counts(info, channels, args.filters))
    text = format_window(info)
    if "params_formula" in info:
        text += (f"\n  {'channels':<13} {info['channels']} in -> {info['filters']} out"
                 f"{'' if info['channels_given'] else ' (1 assumed; give --input HxWxC)'}"
                 f"\n  {'params':<13} {info['params_formula']}"
                 f"\n  {'MACs':<13} {info['macs_formula']}")
    print(json.dumps(info, indent=2) if args.json else text)
    return 0


def _conv_counts(info: dict, channels, filters: int) -> dict:
    """Parameter count and multiply-accumulates of a convolution with ``channels`` inputs
    (1 when not given) and ``filters`` outputs: ``kh*kw*C*F + F`` and ``oh*ow*kh*kw*C*F``."""
    from .shapes import conv_param_count
    if filters < 1:
        raise CommandError(f"--filters must be >= 1, got {filters}")
    given = channels is not None
    channels = channels if given else 1
    if channels < 1:
        raise CommandError(f"--input channels must be >= 1, got {channels}")
    (kh, kw), (oh, ow) = info["kernel"], info["output"]
    params = conv_param_count((kh, kw), channels, filters)
    macs = oh * ow * kh * kw * channels * filters
    return {"channels": channels, "channels_given": given, "filters": filters,
            "params": params, "params_formula": f"{kh}*{kw}*{channels}*{filters} + {filters} "
                                                f"= {params:,}",
            "macs": macs, "macs_formula": f"{oh}*{ow} * {kh}*{kw}*{channels}*{filters} "
                                          f"= {macs:,}"}


def cmd_summary(args) -> int:
    from .explain import explanation_dict, format_explanation
    model = _load_model(args.model, allow_builtin=True)
    if args.json:
        data = explanation_dict(model)
        print(json.dumps({"model": model.name, **data}, indent=2))
        return 0
    model.summary()
    if args.explain:
        from .explain import explain_model
        print()
        print(format_explanation(explain_model(model)))
    return 0


def cmd_filter(args) -> int:
    from .viz import plot_filter_gallery
    if args.gallery == (args.kernel is not None):
        raise CommandError("give either --kernel NAME or --gallery")
    names = None if args.gallery else [args.kernel]
    plot_filter_gallery(args.image, names=names, size=args.size, path=args.output)
    print(f"wrote {args.output}")
    return 0


def cmd_featuremaps(args) -> int:
    from .viz import plot_feature_maps, seed_example_figure
    if args.seed_example:
        if args.model is not None:
            raise CommandError("--seed-example uses the bundled photographs; give no model")
        seed_example_figure(path=args.output)
        print(f"wrote {args.output}")
        return 0
    if args.model is None or args.image is None:
        raise CommandError("featuremaps needs MODEL and IMAGE (or --seed-example)")
    model = _load_model(args.model, allow_builtin=True)
    image = _image_for_model(model, args.image)
    plot_feature_maps(model, image, layer=args.layer, path=args.output, cols=args.cols,
                      shared_scale=args.shared_scale)
    print(f"wrote {args.output}")
    return 0


def cmd_train(args) -> int:
    try:
        from .jobs import train_default
    except ImportError:
        raise CommandError("training is not available in this installation "
                           "(convkit.jobs is missing)") from None
    if args.batch_size is not None and args.batch_size <= 0:
        raise CommandError(f"--batch-size must be a positive number, got {args.batch_size}")
    if args.learning_rate is not None and not 0 < args.learning_rate < float("inf"):
        raise CommandError(f"--learning-rate must be a positive finite number, got "
                           f"{args.learning_rate}")
    options = dict(dataset=args.dataset, epochs=args.epochs, batch_size=args.batch_size,
                   learning_rate=args.learning_rate, seed=args.seed,
                   verbose=0 if args.quiet else 1, data_dir=args.data)
    if args.data is None and (args.image_size is not None or args.grayscale):
        raise CommandError("--image-size and --grayscale apply to an image folder (--data DIR)")
    if args.data is not None and not os.path.isdir(args.data):
        raise CommandError(f"--data {args.data!r} is not a directory; give a folder with one "
                           f"sub-folder of images per class, e.g. {args.data}/cats/001.png")
    if args.image_size is not None:
        options["image_size"] = _pair(args.image_size, "image-size")
    if args.grayscale:
        options["color_mode"] = "grayscale"
    if args.output is not None:
        options["output"] = args.output
    result = train_default(**options)
    if args.quiet and isinstance(result, dict) and "test_accuracy" in result:
        # the one line a quiet run still owes: how good the model is and where it went
        accuracy, count = result["test_accuracy"], result.get("test_samples")
        counted = f" ({round(accuracy * count)}/{count})" if count else ""
        where = f", saved to {result['model_path']}" if result.get("model_path") else ""
        print(f"Test accuracy: {accuracy:.4f}{counted}{where}")
    if args.curves:
        from .viz import plot_history
        history = result.get("history") if isinstance(result, dict) else None
        if history is None:
            raise CommandError("training returned no history to draw curves from")
        plot_history(history, path=args.curves)
        if not args.quiet:
            print(f"wrote {args.curves}")
    return 0


def _softmax_if_needed(scores: np.ndarray) -> np.ndarray:
    """Probabilities from a model's output rows: kept if they already are, else softmax."""
    scores = scores.astype(np.float64)
    if scores.min() >= 0 and np.allclose(scores.sum(axis=1), 1.0, atol=1e-3):
        return scores
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def cmd_predict(args) -> int:
    if args.top < 1:
        raise CommandError(f"--top must be >= 1, got {args.top}")
    model = _load_model(args.model, allow_builtin=True)
    seen = [_image_for_model(model, image) for image in args.images]   # each (H, W, C)
    if args.invert:
        seen = [1.0 - image for image in seen]
    batch = np.stack(seen)                                              # (N, H, W, C)
    scores = np.asarray(model.predict(batch, verbose=0) if _accepts_verbose(model)
                        else model.predict(batch))
    if scores.ndim != 2:
        raise CommandError(f"model {model.name!r} outputs shape {scores.shape}; predict needs "
                           f"(batch, classes) scores")
    probabilities = _softmax_if_needed(scores)
    class_names = getattr(model, "class_names", None) or _stored_class_names(args.model)
    if class_names is not None and len(class_names) != probabilities.shape[1]:
        class_names = None          # names that do not fit the outputs are not used
    top = min(args.top, probabilities.shape[1])
    from .explore.images import inverted_warning
    _, h, w, c = _model_input_shape(model)
    for image, pixels, row in zip(args.images, seen, probabilities):
        print(image)
        for rank, index in enumerate(np.argsort(-row, kind="stable")[:top], start=1):
            print(f"  {rank}. {_class_label(class_names, index):<12} {row[index]:.4f}")
        if args.show:
            print(f"  the model saw {h}x{w}x{c}" + (" grey" if c == 1 else " RGB") +
                  (", inverted" if args.invert else "") + f" (drawn in {args.show})")
        for text in inverted_warning(pixels):     # stderr: stdout stays the answer alone
            print(f"{PROG}: warning: {image}: {text}", file=sys.stderr)
    if args.show:
        _show_seen(args.images, seen, probabilities, class_names, args.show)
    return 0


def _show_seen(names, seen, probabilities, class_names, path) -> None:
    """Draw each image as the model received it, titled with its top class."""
    from .viz import _mpl
    from .viz._images import display_image
    fig = _mpl.new_figure(2.4 * len(seen) + 0.4, 2.9)
    for index, (name, pixels, row) in enumerate(zip(names, seen, probabilities)):
        ax = fig.add_subplot(1, len(seen), index + 1)
        shown, cmap = display_image(pixels)
        ax.imshow(shown, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        best = int(np.argmax(row))
        ax.set_title(f"{os.path.basename(name)}\n{_class_label(class_names, best)} "
                     f"{row[best]:.3f}", fontsize=9)
        _mpl.hide_ticks(ax)
    fig.suptitle("what the model saw", fontsize=10)
    _mpl.finish(fig, path)


def _stored_class_names(path: str):
    """Class names saved in a model file's metadata (``convkit train`` stores them)."""
    from .jobs import class_names_of
    return class_names_of(path)


def _class_label(class_names, index: int) -> str:
    """``"cat"`` from the class names, or ``"class 3"`` when there are none or the name is
    just the index (the digits)."""
    if not class_names or class_names[index] == str(index):
        return f"class {index}"
    return class_names[index]


def _accepts_verbose(model) -> bool:
    import inspect
    try:
        return "verbose" in inspect.signature(model.predict).parameters
    except (TypeError, ValueError):
        return False


def _find_benchmarks() -> str | None:
    """The checkout holding this package and ``benchmarks/run.py`` (never the current
    directory: ``convkit bench`` run elsewhere must not execute someone else's file)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return root if os.path.isfile(os.path.join(root, "benchmarks", "run.py")) else None


def cmd_bench(args) -> int:
    root = _find_benchmarks()
    if root is None:
        raise CommandError("the benchmarks are not part of this installation; run "
                           "'convkit bench' from a checkout of the convkit repository "
                           "(it holds benchmarks/run.py)")
    forwarded = [a for a in args.bench_args if a != "--"]
    import importlib.util
    if importlib.util.find_spec("torch") is None and "--no-torch" not in forwarded:
        print("convkit bench: PyTorch is not installed, so there is nothing to compare "
              "against; showing convkit's own timings only (pip install torch, or make bench, "
              "adds the PyTorch and ratio columns)", flush=True)
        forwarded.append("--no-torch")
    return subprocess.call([sys.executable, "-m", "benchmarks.run", *forwarded], cwd=root)


# ------------------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="convkit: convolutional networks on NumPy, explained.",
        epilog="Run 'convkit COMMAND --help' for a command's options.")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback when a command fails")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parser.command_parsers = sub.choices      # name -> the command's own parser
    sub.required = True

    p = sub.add_parser("shape", help="output size, pads and formula of one conv or pool window",
                       description="Explain the output size of a convolution (or, with --pool, "
                                   "a pooling window): the pads applied and the formula with "
                                   "the numbers filled in.")
    p.add_argument("--input", type=_size_token, nargs="+", required=True, metavar="N",
                   help="input size: N, HxW or HxWxC (also 'H W' and 'H W C')")
    p.add_argument("--kernel", type=_size_token, nargs="+", required=True, metavar="K",
                   help="kernel (or pool window) size: K, KHxKW or KH KW")
    p.add_argument("--stride", type=_size_token, nargs="+", metavar="S",
                   help="stride: S or SH SW (default 1; for --pool the window size)")
    p.add_argument("--padding", default="valid",
                   help="same, valid, N, 'PH,PW' or 'TOP,BOTTOM,LEFT,RIGHT' (default valid)")
    p.add_argument("--dilation", type=_size_token, nargs="+", default=["1"], metavar="D",
                   help="dilation rate: D or DH DW (default 1)")
    p.add_argument("--channels", type=int, metavar="C",
                   help="input channels (or give --input HxWxC)")
    p.add_argument("--filters", type=int, metavar="F",
                   help="output channels of the convolution: adds parameters and MACs")
    p.add_argument("--pool", choices=("max", "avg"), help="a pooling window instead of a conv")
    p.add_argument("--ceil-mode", action="store_true",
                   help="round the pooling output size up (PyTorch's ceil_mode)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_shape)

    p = sub.add_parser("summary", help="a model's summary table, optionally explained",
                       description="Print a model's Keras-style summary. MODEL is a saved model "
                                   f"file or a built-in name ({', '.join(BUILTIN_MODELS)}).")
    p.add_argument("model", metavar="MODEL", help="model file or built-in name")
    p.add_argument("--explain", action="store_true",
                   help="add every layer's formulas, parameter breakdown, MACs and "
                        "receptive field")
    p.add_argument("--json", action="store_true", help="print the explanation as JSON")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("filter", help="run an image through a classic filter (or all of them)",
                       description="Convolve an image with a kernel from convkit.filters and "
                                   "draw the result (--gallery: every filter).")
    p.add_argument("image", metavar="IMAGE",
                   help="image file, or sample:china / sample:flower")
    p.add_argument("--kernel", metavar="NAME", help="filter name, e.g. sobel_x, gaussian_blur")
    p.add_argument("--gallery", action="store_true", help="draw every classic filter")
    p.add_argument("--size", type=int, help="kernel size for filters that have one (odd)")
    p.add_argument("-o", "--output", required=True, metavar="PNG", help="picture to write")
    p.set_defaults(func=cmd_filter)

    p = sub.add_parser("featuremaps", help="draw a layer's feature maps for one image",
                       description="Run a saved model on an image up to a layer and draw "
                                   "every channel of that layer's output. --seed-example "
                                   "draws the two sample photographs through vertical and "
                                   "horizontal line filters instead (no model needed).")
    p.add_argument("model", nargs="?", metavar="MODEL",
                   help=f"saved model or a built-in name ({', '.join(BUILTIN_MODELS)})")
    p.add_argument("image", nargs="?", metavar="IMAGE",
                   help="image file or sample:china / sample:flower (resized to the model's "
                        "input)")
    p.add_argument("--layer", metavar="NAME", help="layer name (default: the first conv layer)")
    p.add_argument("--cols", type=int, help="panels per row")
    p.add_argument("--shared-scale", action="store_true",
                   help="one colour scale for every channel")
    p.add_argument("--seed-example", action="store_true",
                   help="the sample photographs through Conv2D(2, 7, same, relu) line filters")
    p.add_argument("-o", "--output", required=True, metavar="PNG", help="picture to write")
    p.set_defaults(func=cmd_featuremaps)

    p = sub.add_parser("train", help="train the default CNN and save it",
                       description="Train the default convolutional network (convkit.jobs."
                                   "train_default) and optionally draw its training curves.")
    p.add_argument("--dataset", choices=("mnist", "digits"), default="mnist",
                   help="bundled data set (default mnist)")
    p.add_argument("--data", metavar="DIR", help="image folder (one sub-folder per class)")
    p.add_argument("--image-size", type=int, nargs="+", metavar="N",
                   help="with --data: resize the images to N x N or H x W (default 32)")
    p.add_argument("--grayscale", action="store_true",
                   help="with --data: read the images as grey (1 channel) instead of RGB")
    p.add_argument("--epochs", type=int, help="number of epochs")
    p.add_argument("--batch-size", type=int, help="mini-batch size")
    p.add_argument("--learning-rate", type=float, help="optimizer learning rate")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("-o", "--output", metavar="MODEL_PATH", help="where to save the model")
    p.add_argument("--curves", metavar="PNG", help="draw the training curves here")
    p.add_argument("--quiet", action="store_true",
                   help="no progress output; only the final accuracy line")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="top classes of a saved model for images",
                       description="Print the most likely classes with their probabilities. "
                                   "Images are resized and converted to the model's input.")
    p.add_argument("model", metavar="MODEL_FILE", help="saved model")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or sample:NAME")
    p.add_argument("--top", type=int, default=3, help="how many classes to print (default 3)")
    p.add_argument("--show", metavar="PNG",
                   help="draw each image as the model saw it (resized, grey or RGB)")
    p.add_argument("--invert", action="store_true",
                   help="use 1 - x: for dark-on-light digits given to an MNIST model")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("explore", help="explore a model layer by layer in the browser",
                       description="Serve a local page showing every layer of MODEL for an "
                                   "image: feature maps, the explain card of each layer, the "
                                   "arithmetic of any output cell, a what-if panel for "
                                   "window sizes, and your own images by upload. MODEL is a "
                                   "saved model file or a built-in name "
                                   "(mnist_convnet, lenet5, seed-example).")
    p.add_argument("model", metavar="MODEL", help="model file or built-in name")
    p.add_argument("images", nargs="*", metavar="IMAGE",
                   help="image files (or digit:7, sample:china) to offer first")
    p.add_argument("--port", type=int, help="port (default 8765; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    p.add_argument("--export", metavar="HTML",
                   help="write one self-contained offline page instead of serving")
    p.set_defaults(func=cmd_explore)

    p = sub.add_parser("bench", help="run the benchmarks (python -m benchmarks.run)",
                       description="Forward the remaining arguments to 'python -m "
                                   "benchmarks.run' in a convkit checkout.")
    p.add_argument("bench_args", nargs=argparse.REMAINDER, metavar="ARGS",
                   help="arguments for benchmarks.run")
    p.set_defaults(func=cmd_bench)
    return parser


def cmd_explore(args) -> int:
    from .explore import default_images, export_html, open_model, serve
    explorer = open_model(args.model)
    if args.export:
        if args.port is not None or args.host != "127.0.0.1" or args.no_browser:
            raise CommandError("--export writes a file; --port, --host and --no-browser are "
                               "for the live explorer")
        result = export_html(explorer, args.export, args.images or default_images(explorer))
        print(f"wrote {result['path']} ({result['bytes'] / 1024:.0f} KB, "
              f"{len(result['images'])} image(s), works offline)")
        return 0
    port = 8765 if args.port is None else args.port
    if not 0 <= port <= 65535:
        raise CommandError(f"--port must be 0..65535, got {port}")
    try:
        serve(explorer, args.images, host=args.host, port=port,
              open_browser=not args.no_browser)
    except OSError as exc:
        if args.port is None or port:
            raise CommandError(f"cannot listen on {args.host}:{port} ({exc.strerror or exc}); "
                               f"give another --port, or --port 0 for a free one") from None
        raise
    return 0


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    first = text.splitlines()[0]
    if isinstance(exc, (ConvkitError, OSError)):
        return first
    return f"{type(exc).__name__}: {first}"


def main(argv=None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv[:1] == ["bench"] and not set(argv[1:2]) & {"-h", "--help"}:
        # Everything after 'bench' belongs to benchmarks.run, options included.
        argv = ["bench", "--", *argv[1:]]
    try:
        args, unknown = parser.parse_known_args(argv)
        if unknown:
            # an unknown option belongs to the command's usage, not the top-level one
            command = parser.command_parsers.get(getattr(args, "command", ""))
            (command or parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    except SystemExit as exc:      # --help (0) or a usage error (2), already printed
        return int(exc.code or 0)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:        # e.g. `convkit summary lenet5 | head`: the reader left
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 0
    except Exception as exc:  # noqa: BLE001 - a command line reports, it does not crash
        if args.debug:
            raise
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
