"""The explorer: your own model and your own images in the browser, every layer, every number.

    convkit explore out/mnist_convnet.convkit digit.png        # a local page, opened for you
    convkit explore lenet5 --export page.html                  # one offline HTML file

From Python::

    from convkit.explore import open_model, serve, export_html
    explorer = open_model("mnist_convnet")
    export_html(explorer, "page.html", ["digit:7"])

The page is plain HTML, CSS and JavaScript served by the standard library's
``ThreadingHTTPServer`` (no build step, nothing to install beyond Pillow for images).
Every number it shows for a layer or a cell is computed here, in Python, from the model's own
activations (:mod:`convkit.explore.trace`); only the what-if panel's sizes are computed in
the page (``static/whatif.js``, tested against :mod:`convkit.shapes`).
"""
from __future__ import annotations

import json
import os
import threading
import webbrowser

from ..errors import ConvkitError
from .images import UploadError
from .server import STATIC_DIR, ExplorerState, make_server
from .trace import Explorer

__all__ = ["Explorer", "ExplorerState", "UploadError", "open_model", "serve", "export_html",
           "default_images", "seed_example_model", "BUILTIN_NAMES"]

BUILTIN_NAMES = ("mnist_convnet", "lenet5", "seed-example")


def seed_example_model():
    """The notes' seed example as a model: the two 427x640 photographs through
    ``Conv2D(2, 7, padding="same", activation="relu")`` whose filters are a vertical and a
    horizontal white line (:func:`convkit.viz.seed_example_layer`)."""
    from ..layers import Conv2D, Input
    from ..models import Sequential
    from ..viz.seed import seed_example_layer
    hand_made = seed_example_layer(3)
    layer = Conv2D(2, 7, padding="same", activation="relu", name=hand_made.name)
    model = Sequential([Input((427, 640, 3)), layer], name="seed_example")
    layer.set_weights(hand_made.get_weights())
    return model


def open_model(spec: str) -> Explorer:
    """An :class:`Explorer` for a saved model file or a built-in name
    (``mnist_convnet``, ``lenet5``: freshly initialised, untrained; ``seed-example``)."""
    notes, class_names = [], None
    if spec == "seed-example":
        model = seed_example_model()
        notes.append("filter 0 = vertical white line, filter 1 = horizontal white line, "
                     "on R, G and B; try the images sample:china and sample:flower")
    elif spec in BUILTIN_NAMES:
        from ..cli import BUILTIN_MODELS
        from ..random import set_seed
        set_seed(0)
        model = BUILTIN_MODELS[spec]()
        notes.append("untrained weights (seed 0): give a trained model file, e.g. "
                     "convkit train, then convkit explore out/mnist_convnet.convkit")
    else:
        if not os.path.exists(spec):
            raise ConvkitError(f"explore: model file {spec!r} does not exist (give a saved "
                               f"model or a built-in name: {', '.join(BUILTIN_NAMES)})")
        from .. import load_model
        model = load_model(spec)
        try:
            from ..jobs import class_names_of
            class_names = class_names_of(spec)
        except Exception:  # noqa: BLE001 - names are optional metadata
            class_names = None
    title = f"{model.name} ({os.path.basename(spec)})" if os.path.exists(spec) else model.name
    return Explorer(model, title=title, notes=notes, class_names=class_names)


def default_images(explorer: Explorer) -> list[str]:
    """The sample exported when no image is given (:func:`images.default_sample`)."""
    from .images import default_sample
    return [default_sample(explorer.input_shape)]


def serve(explorer: Explorer, images=(), host: str = "127.0.0.1", port: int = 0,
          open_browser: bool = True, quiet: bool = True) -> None:
    """Serve the explorer until interrupted (Ctrl-C). Prints the URL; opens it in the
    browser unless ``open_browser=False``."""
    state = ExplorerState(explorer, images)
    server = make_server(state, host, port, quiet)
    url = f"http://{host if ':' not in host else '[' + host + ']'}:{server.server_address[1]}/"
    print(f"convkit explore: {explorer.title} at {url}  (Ctrl-C stops)", flush=True)
    # run the first image now, while the browser starts: the first run of a model pays for
    # loading (or compiling) its kernels
    first = state.model_json()["default_image"]
    threading.Thread(target=state.trace, args=(first, False), daemon=True).start()
    if open_browser:
        threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _inline(html: str) -> str:
    """The page with its style and scripts written into it (no file or network fetches)."""
    def read(name):
        with open(os.path.join(STATIC_DIR, name), encoding="utf-8") as handle:
            return handle.read()
    html = html.replace('<link rel="stylesheet" href="/static/explore.css">',
                        f"<style>\n{read('explore.css')}</style>")
    for name in ("whatif.js", "explore.js"):
        script = read(name).replace("</script", "<\\/script")
        html = html.replace(f'<script src="/static/{name}"></script>',
                            f"<script>\n{script}</script>")
    return html


def export_html(explorer: Explorer, path, images=()) -> dict:
    """Write the explorer for ``images`` (file paths or sample names; default: a sample) as
    one self-contained HTML file that works offline: style, scripts and data (JSON) inside.

    Each image carries its whole trace and the cell arithmetic of the strongest cell of
    every channel of every convolution and pooling layer. Written atomically. Returns
    ``{"path", "bytes", "images", "cells"}``.
    """
    from ..io.archive import atomic_write_bytes
    state = ExplorerState(explorer, images)
    ids = [choice["id"] for choice in state.choices if choice["id"].startswith("cli:")] or \
        default_images(explorer)
    traces, cells = {}, {}
    for image_id in ids:
        key = f"{image_id}|0"
        traces[key] = state.trace_json(image_id, False)
        trace = state.trace(image_id, False)
        cells[key] = {f"{level}:{row}:{col}:{channel}":
                      explorer.cell_json(trace, level, row, col, channel)
                      for level, row, col, channel in explorer.argmax_cells(trace)}
    model = state.model_json()
    model["images"] = [choice for choice in state.choices if choice["id"] in ids]
    data = json.dumps({"model": model, "traces": traces, "cells": cells}, allow_nan=False)
    data = data.replace("<", "\\u003c")      # no "</script" or "<!--" inside the element
    with open(os.path.join(STATIC_DIR, "index.html"), encoding="utf-8") as handle:
        page = _inline(handle.read())
    page = page.replace("<script>", f'<script type="application/json" id="explore-data">{data}'
                        f"</script>\n<script>", 1)
    body = page.encode("utf-8")
    atomic_write_bytes(os.fspath(path), body)
    return {"path": os.fspath(path), "bytes": len(body), "images": ids,
            "cells": sum(len(c) for c in cells.values())}
