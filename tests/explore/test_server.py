"""The explorer's HTTP server: its answers, bad uploads, static files and path traversal."""
import http.client
import json
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import numpy as np
import pytest

from convkit.explore import Explorer, open_model
from convkit.explore.images import MAX_UPLOAD_BYTES, UploadError, decode_upload, upload_image

from .helpers import png_bomb, png_bytes, running_server, window_model

pytest.importorskip("PIL")


@pytest.fixture(scope="module")
def mnist():
    return open_model("mnist_convnet")


@pytest.fixture(scope="module")
def url(mnist):
    with running_server(mnist) as base:
        yield base


def request(url, path, data=None, method=None, headers=None):
    """``(status, json answer)`` of one request."""
    req = urllib.request.Request(url + path, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            body, status = response.read(), response.status
    except urllib.error.HTTPError as error:
        body, status = error.read(), error.code
    return status, (json.loads(body) if body[:1] in (b"{", b"[") else body)


def test_model_select_and_cell(url):
    status, model = request(url, "/api/model")
    assert status == 200 and model["input_shape"] == [None, 28, 28, 1]
    assert model["default_image"] == "digit:7"
    assert {"digit:0", "sample:china"} <= {image["id"] for image in model["images"]}
    status, answer = request(url, "/api/select", json.dumps({"image": "digit:3"}).encode())
    assert status == 200 and answer["id"] == "digit:3"
    assert len(answer["trace"]["levels"]) == len(model["layers"])
    status, cell = request(url, "/api/cell?image=digit:3&level=1&row=12&col=12&channel=4")
    assert status == 200 and cell["difference"] <= 1e-5


def test_upload_a_colour_dark_on_light_digit(url):
    """An RGB, dark-on-light 60x40 upload is shown grey 28x28 with an inversion warning;
    with invert=1 the warning is gone."""
    picture = np.full((60, 40, 3), 240, np.uint8)
    picture[10:50, 18:22] = (200, 0, 0)                   # a red stroke on white
    status, answer = request(url, "/api/upload?name=seven.png&invert=0", png_bytes(picture))
    assert status == 200, answer
    image = answer["trace"]["image"]
    assert "decoded 60x40 RGB" in image["note"] and "resized from 60x40 to 28x28" in image["note"]
    assert image["warnings"] and "dark-on-light" in image["warnings"][0]
    status, answer = request(url, "/api/upload?name=seven.png&invert=1", png_bytes(picture))
    assert status == 200 and answer["trace"]["image"]["warnings"] == []


@pytest.mark.parametrize("case, fragment", [
    ("text", "not an image"),
    ("bomb", "too large"),
    ("truncated", "damaged or unsupported image"),
    ("empty", "empty"),
])
def test_bad_uploads_get_a_message_and_the_server_keeps_serving(url, case, fragment):
    good = png_bytes(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    data = {"text": b"GIF89a? no, just text", "bomb": png_bomb(),
            "truncated": good[:len(good) // 2], "empty": b""}[case]
    status, answer = request(url, "/api/upload?name=bad.png", data, method="POST")
    assert status == 400 and fragment in answer["error"]
    assert request(url, "/api/model")[0] == 200


def test_a_50_mb_upload_is_refused_and_drained(url):
    data = b"\0" * (50 * 1024 * 1024)
    status, answer = request(url, "/api/upload?name=huge.png", data)
    assert status == 413 and "50.0 MB" in answer["error"]
    assert request(url, "/api/model")[0] == 200


def test_wrong_channels():
    """A model reading 2-channel images cannot take a picture: a clear message."""
    explorer = Explorer(window_model())
    with pytest.raises(UploadError, match="2-channel images"):
        upload_image(png_bytes(np.zeros((5, 5, 3), np.uint8)), "rgb.png", explorer.input_shape)


def test_decode_keeps_modes_and_refuses_the_bomb_before_decoding():
    rgba = np.zeros((6, 6, 4), np.uint8)
    rgba[..., 3] = 255
    image = upload_image(png_bytes(rgba), "a.png", (None, 6, 6, 1))
    assert image.pixels.shape == (6, 6, 1) and "converted from RGBA to grayscale" in image.note
    sixteen = upload_image(png_bytes((np.arange(36).reshape(6, 6) * 1800).astype(np.uint16)),
                           "16.png", (None, 6, 6, 1))
    assert 0.0 <= sixteen.pixels.min() < sixteen.pixels.max() <= 1.0
    with pytest.raises(UploadError, match="up to"):
        decode_upload(b"\0" * (MAX_UPLOAD_BYTES + 1))
    # below Pillow's own bomb limit, above the explorer's: refused from the header alone
    with pytest.raises(UploadError, match="6000x6000 pixels, too large"):
        decode_upload(png_bomb(6000))


@pytest.mark.parametrize("path", [
    "/static/../server.py", "/static/%2e%2e/server.py", "/static/..%2fserver.py",
    "/static/static/explore.js", "/static//etc/passwd", "/static/%2fetc%2fpasswd",
    "/static/explore.js/../../__init__.py", "/../../etc/passwd", "/static/",
    "/static/index.html%00.js",
])
def test_path_traversal_fails(url, path):
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request("GET", path)                 # sent as written, no normalising
    response = connection.getresponse()
    body = response.read()
    connection.close()
    assert response.status == 404, path
    assert b"import" not in body and b"root:" not in body


def test_static_files_and_page(url):
    status, page = request(url, "/")
    assert status == 200 and b"/static/explore.js" in page
    for name in ("explore.js", "whatif.js", "explore.css"):
        assert request(url, f"/static/{name}")[0] == 200


def test_bad_requests(url):
    assert request(url, "/api/cell?image=digit:3&level=1&row=x&col=0&channel=0")[0] == 400
    assert request(url, "/api/cell?image=digit:3&level=5&row=0&col=0&channel=0")[0] == 400
    status, answer = request(url, "/api/select", json.dumps({"image": "../x"}).encode())
    assert status == 400 and "unknown image" in answer["error"]
    assert request(url, "/api/select", b"not json")[0] == 400
    assert request(url, "/api/nothing")[0] == 404


def test_requests_for_another_host_are_refused(url):
    """A page elsewhere that points its own name at 127.0.0.1 gets nothing."""
    parts = urlsplit(url)
    for method in ("GET", "POST"):
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        connection.request(method, "/api/model", headers={"Host": f"evil.example:{parts.port}"})
        response = connection.getresponse()
        response.read()
        connection.close()
        assert response.status == 403
    assert request(url, "/api/model")[0] == 200
    req = urllib.request.Request(url + "/api/model", headers={"Host": f"localhost:{parts.port}"})
    with urllib.request.urlopen(req, timeout=10) as response:
        assert response.status == 200


def test_binds_localhost_by_default(mnist):
    from convkit.explore import ExplorerState
    from convkit.explore.server import make_server
    server = make_server(ExplorerState(mnist))
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.server_close()
