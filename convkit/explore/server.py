"""The explorer's local web server: the standard library's ``ThreadingHTTPServer``.

Routes (all answers JSON except the page and its static files)::

    GET  /                       the page
    GET  /static/NAME            the page's script and style (a fixed list; nothing else)
    GET  /api/model              the model: layers, explain cards, windows, receptive maps,
                                 and the images to choose from
    POST /api/select             {"image": ID, "invert": bool} -> {"id", "trace"}
    POST /api/upload?name=N&invert=0|1   raw image bytes -> {"id", "trace"}
    GET  /api/cell?image=ID&invert=0|1&level=L&row=R&col=C&channel=K   one cell's arithmetic

A bad request answers ``{"error": message}`` with a 4xx status and the server keeps serving.
The server binds 127.0.0.1 unless told otherwise.
"""
from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from ..errors import ConvkitError
from . import images as images_module
from .images import MAX_UPLOAD_BYTES, UploadError
from .trace import Explorer

__all__ = ["ExplorerState", "make_server", "STATIC_DIR", "STATIC_FILES"]

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
#: The only files the server sends: name -> content type.
STATIC_FILES = {"explore.js": "text/javascript; charset=utf-8",
                "whatif.js": "text/javascript; charset=utf-8",
                "explore.css": "text/css; charset=utf-8"}
#: Uploads above MAX_UPLOAD_BYTES but below this are read and thrown away before the error
#: answer (a browser still sending its body would otherwise see a reset connection).
_DRAIN_UP_TO = 128 * 1024 * 1024
_KEPT_TRACES = 32


class ExplorerState:
    """The images and traces one explorer serves, shared by the request threads.

    ``cli_images`` are the images given on the command line (file paths or sample names).
    Images are keyed by id: ``cli:N``, ``digit:D``, ``sample:NAME``, ``upload:N``.
    """

    def __init__(self, explorer: Explorer, cli_images=()):
        self.explorer = explorer
        self._lock = threading.Lock()              # layers keep caches: one forward at a time
        self._images: dict[str, images_module.ModelImage] = {}
        self._traces: OrderedDict = OrderedDict()
        self._uploads = 0
        self.choices = []
        shape = explorer.input_shape
        for index, path in enumerate(cli_images):
            image = images_module.file_image(path, shape)
            self._images[f"cli:{index}"] = image
            self.choices.append({"id": f"cli:{index}", "label": image.name})
        for name in images_module.sample_names(shape):
            self.choices.append({"id": name, "label": name})

    def image(self, image_id: str) -> images_module.ModelImage:
        if image_id not in self._images:
            if image_id.startswith(("digit:", "sample:")):
                self._images[image_id] = images_module.sample_image(image_id,
                                                                    self.explorer.input_shape)
            else:
                raise ConvkitError(f"explore: unknown image {image_id!r}")
        return self._images[image_id]

    def add_upload(self, data: bytes, name: str) -> str:
        image = images_module.upload_image(data, name, self.explorer.input_shape)
        with self._lock:
            self._uploads += 1
            image_id = f"upload:{self._uploads}"
            self._images[image_id] = image
            uploads = [key for key in self._images if key.startswith("upload:")]
            for old in uploads[:-_KEPT_TRACES]:
                del self._images[old]
        return image_id

    def trace(self, image_id: str, invert: bool):
        key = (image_id, bool(invert))
        with self._lock:
            if key in self._traces:
                self._traces.move_to_end(key)
                return self._traces[key]
            image = self.image(image_id)
            if invert:
                image = images_module.inverted(image)
            trace = self.explorer.run(image)
            self._traces[key] = trace
            while len(self._traces) > _KEPT_TRACES:
                self._traces.popitem(last=False)
            return trace

    def cell_json(self, image_id: str, invert: bool, level: int, row: int, col: int,
                  channel: int) -> dict:
        """One cell's arithmetic (:meth:`Explorer.cell_json`) for an image's trace."""
        trace = self.trace(image_id, invert)
        with self._lock:
            return self.explorer.cell_json(trace, level, row, col, channel)

    def trace_json(self, image_id: str, invert: bool) -> dict:
        trace = self.trace(image_id, invert)
        return {"id": image_id, "invert": bool(invert), "trace": self.explorer.trace_json(trace)}

    def model_json(self) -> dict:
        default = self.choices[0]["id"] if self.choices[0]["id"].startswith("cli:") else \
            images_module.default_sample(self.explorer.input_shape)
        return {**self.explorer.model_json(), "images": self.choices, "default_image": default,
                "max_upload_bytes": MAX_UPLOAD_BYTES}


def _page() -> str:
    with open(os.path.join(STATIC_DIR, "index.html"), encoding="utf-8") as handle:
        return handle.read()


class _Handler(BaseHTTPRequestHandler):
    server_version = "convkit-explore"
    state: ExplorerState = None          # set on the subclass made by make_server
    quiet = True
    #: Host names a request may name (None: any). A server on 127.0.0.1 answers only requests
    #: addressed to it, so a web page elsewhere cannot reach it by re-pointing its own name
    #: at 127.0.0.1 (DNS rebinding).
    allowed_hosts = None

    def _host_allowed(self) -> bool:
        if self.allowed_hosts is None:
            return True
        host = self.headers.get("Host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name.strip("[]").lower() in self.allowed_hosts

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        if not self.quiet:
            super().log_message(format, *args)

    # -- answers
    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, payload, status: int = 200) -> None:
        body = json.dumps(payload, allow_nan=False).encode("utf-8")
        self._send(status, body, "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json({"error": message}, status)

    # -- requests
    def do_GET(self):  # noqa: N802 - the base class's name
        if not self._host_allowed():
            self._error(403, "this explorer answers requests to its own address only")
            return
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        try:
            if url.path in ("/", "/index.html"):
                self._send(200, _page().encode("utf-8"), "text/html; charset=utf-8")
            elif url.path.startswith("/static/"):
                self._static(url.path[len("/static/"):])
            elif url.path == "/api/model":
                self._json(self.state.model_json())
            elif url.path == "/api/cell":
                self._cell(query)
            else:
                self._error(404, f"no such page {url.path!r}")
        except ConvkitError as exc:
            self._error(400, str(exc))
        except Exception as exc:  # noqa: BLE001 - the server keeps serving
            self._error(500, f"{type(exc).__name__}: {exc}")

    def do_POST(self):  # noqa: N802
        if not self._host_allowed():
            self.close_connection = True
            self._error(403, "this explorer answers requests to its own address only")
            return
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        try:
            if url.path == "/api/select":
                body = self._body(64 * 1024)
                request = json.loads(body or b"{}")
                self._json(self.state.trace_json(str(request.get("image", "")),
                                                 bool(request.get("invert", False))))
            elif url.path == "/api/upload":
                name = os.path.basename(query.get("name", ["upload"])[0])[:120] or "upload"
                data = self._body(MAX_UPLOAD_BYTES, name)
                if data is None:
                    return
                image_id = self.state.add_upload(data, name)
                invert = query.get("invert", ["0"])[0] == "1"
                self._json(self.state.trace_json(image_id, invert))
            else:
                self._error(404, f"no such action {url.path!r}")
        except (UploadError, ConvkitError, ValueError) as exc:
            self._error(400, str(exc))
        except Exception as exc:  # noqa: BLE001
            self._error(500, f"{type(exc).__name__}: {exc}")

    def _body(self, limit: int, name: str = "request"):
        """The request body, or ``None`` after answering 413 when it exceeds ``limit``."""
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise ConvkitError("bad Content-Length") from None
        if length > limit:
            if length <= _DRAIN_UP_TO:
                remaining = length
                while remaining > 0:
                    chunk = self.rfile.read(min(remaining, 1 << 20))
                    if not chunk:
                        break
                    remaining -= len(chunk)
            else:
                self.close_connection = True
            self._error(413, f"{name}: the file is {length / 2**20:.1f} MB; the explorer takes "
                             f"images up to {limit // 2**20} MB")
            return None
        return self.rfile.read(length) if length else b""

    def _static(self, name: str) -> None:
        # Only the listed file names: no folders, no '..', no encoded tricks.
        if name not in STATIC_FILES:
            self._error(404, "no such file")
            return
        with open(os.path.join(STATIC_DIR, name), "rb") as handle:
            self._send(200, handle.read(), STATIC_FILES[name])

    def _cell(self, query) -> None:
        def number(key):
            try:
                return int(query[key][0])
            except (KeyError, ValueError, IndexError):
                raise ConvkitError(f"explore: the cell request needs an integer {key!r}") \
                    from None
        self._json(self.state.cell_json(query.get("image", [""])[0],
                                        query.get("invert", ["0"])[0] == "1", number("level"),
                                        number("row"), number("col"), number("channel")))


def make_server(state: ExplorerState, host: str = "127.0.0.1", port: int = 0,
                quiet: bool = True) -> ThreadingHTTPServer:
    """A server for ``state`` bound to ``host:port`` (port 0: a free one); call
    ``serve_forever()`` on it, ``shutdown()`` and ``server_close()`` to stop."""
    loopback = host in ("127.0.0.1", "localhost", "::1")
    allowed = {"127.0.0.1", "localhost", "::1", host.lower()} if loopback else None
    handler = type("ExplorerHandler", (_Handler,), {"state": state, "quiet": quiet,
                                                    "allowed_hosts": allowed})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
