"""The explorer in real headless Chromium (Playwright): upload, click a cell, read the numbers
the page shows and compare them with the model's own activation; the what-if panel; a bad
upload; the exported page opened from disk with the network cut off.

Set CONVKIT_EXPLORE_MODEL to a trained model file and CONVKIT_README_SCREENSHOT to a PNG
path to have the first test also write the README's screenshot (see README, "Explore in the
browser")."""
import os
import re
import shutil

import numpy as np
import pytest

from convkit.explore import export_html, open_model
from convkit.explore.images import upload_image
from convkit.viz import layer_output

from .helpers import png_bytes, running_server

CHROMIUM = os.environ.get("CONVKIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
MODEL = os.environ.get("CONVKIT_EXPLORE_MODEL", "mnist_convnet")


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="requires playwright")
    if not os.path.exists(CHROMIUM) and shutil.which("chromium") is None:
        pytest.skip("requires chromium (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium"),
            args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def explorer():
    return open_model(MODEL)


@pytest.fixture(scope="module")
def page(browser, explorer):
    with running_server(explorer) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(url + "/")
        page.wait_for_selector("body[data-ready='1']", timeout=60_000)
        yield page
        page.close()
        assert errors == [], errors


def renders(page) -> int:
    return int(page.get_attribute("body", "data-renders") or 0)


def number(page, selector) -> float:
    return float(page.inner_text(selector))


def dark_on_light_seven() -> np.ndarray:
    """A hand-drawn-looking 7 in dark ink on a light 84x84 RGB picture."""
    picture = np.full((84, 84, 3), 235, np.uint8)
    picture[16:24, 18:66] = (30, 30, 90)                  # the bar
    for row in range(24, 72):                             # the slanted stroke
        col = 62 - (row - 24) // 2
        picture[row, col - 4:col + 4] = (30, 30, 90)
    return picture


def test_upload_click_a_cell_and_read_the_arithmetic(page, explorer, tmp_path):
    data = png_bytes(dark_on_light_seven())
    path = tmp_path / "my_seven.png"
    path.write_bytes(data)
    before = renders(page)
    page.check("#invert")                                 # dark on light: invert
    page.wait_for_function(f"Number(document.body.dataset.renders) > {before}")
    before = renders(page)
    page.set_input_files("#upload", str(path))
    page.wait_for_function(f"Number(document.body.dataset.renders) > {before}")
    assert page.get_attribute("body", "data-image").startswith("upload:")
    assert "inverted" in page.inner_text("#layer-0")
    layer = next(lay for lay in explorer.layers[2:] if type(lay).__name__ == "Conv2D")
    level = explorer.layers.index(layer) + 1
    # the model's own activations for the image as the server prepared it
    image = upload_image(data, "my_seven.png", explorer.input_shape)
    x = (1.0 - image.pixels)[None]                                   # inverted, (1, 28, 28, 1)
    maps = layer_output(explorer.model, x, layer.name)[0]            # (H, W, C)
    # click the strongest cell of channel 5 (where the ReLU passes the sum through)
    target_row, target_col = np.unravel_index(int(np.argmax(maps[:, :, 5])), maps.shape[:2])
    canvas = page.locator(f"canvas.map[data-level='{level}'][data-channel='5']")
    box = canvas.bounding_box()
    canvas.click(position={"x": (target_col + 0.5) * box["width"] / maps.shape[1],
                           "y": (target_row + 0.5) * box["height"] / maps.shape[0]})
    page.wait_for_selector("#detail-activation")
    title = page.inner_text("#detail-title")
    row, col, channel = map(int, re.search(r"row (\d+), column (\d+), channel (\d+)",
                                           title).groups())
    assert (row, col, channel) == (target_row, target_col, 5)
    products = [float(t) for t in page.locator("td.product").all_inner_texts()]
    shown_sum, bias = number(page, "#detail-sum"), number(page, "#detail-bias")
    shown_activation = number(page, "#detail-activation")
    expected = float(maps[row, col, channel])
    assert len(products) == 3 * 3 * layer.get_weights()[0].shape[2]
    assert abs(sum(products) - shown_sum) <= 1e-5
    assert abs(max(sum(products) + bias, 0.0) - expected) <= 1e-5
    assert abs(shown_activation - expected) <= 1e-5
    assert abs(number(page, "#detail-model") - expected) <= 1e-5
    # the receptive field is drawn on the input and on every earlier map
    for earlier in range(level):
        assert page.locator(f".map-wrap[data-level='{earlier}'] .rf").count() >= 1, earlier
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(tmp_path / "explorer.png"))
    target = os.environ.get("CONVKIT_README_SCREENSHOT")
    if target:
        shutil.copyfile(tmp_path / "explorer.png", target)


def test_whatif_stride_changes_the_size(page, tmp_path):
    page.select_option("#whatif-op", "conv")
    page.select_option("#whatif-padding", "valid")
    for name, value in (("h", 28), ("w", 28), ("kh", 3), ("kw", 3), ("dh", 1), ("dw", 1),
                        ("sh", 1), ("sw", 1)):
        page.fill(f"#whatif-{name}", str(value))
    assert page.inner_text("#whatif-output") == "26x26"
    page.fill("#whatif-sh", "2")
    page.fill("#whatif-sw", "2")
    assert page.inner_text("#whatif-output") == "13x13"
    assert "floor((28 + 0 + 0 - 3) / 2) + 1 = 13" in page.inner_text("#whatif-formulas")
    page.select_option("#whatif-padding", "same")
    assert page.inner_text("#whatif-output") == "14x14"
    assert page.inner_text("#whatif-pads") == "top 0, bottom 1, left 0, right 1"
    assert page.locator("#whatif-counts td").count() == 29 * 29
    page.screenshot(path=str(tmp_path / "whatif.png"))


def test_bad_upload_shows_a_message_and_the_page_keeps_working(page, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image at all")
    page.set_input_files("#upload", str(bad))
    page.wait_for_selector("#message:not([hidden])")
    assert "not an image" in page.inner_text("#message")
    before = renders(page)
    page.select_option("#image-select", "digit:1")
    page.wait_for_function(f"Number(document.body.dataset.renders) > {before}")
    assert page.is_hidden("#message")


def test_exported_page_works_offline(browser, explorer, tmp_path):
    path = tmp_path / "page.html"
    result = export_html(explorer, path, ["digit:2"])
    context = browser.new_context(offline=True, viewport={"width": 1400, "height": 1000})
    requests = []

    def only_the_file(route):
        requests.append(route.request.url)
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            route.abort()
    context.route("**/*", only_the_file)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    assert errors == [] and all(url.startswith("file://") for url in requests)
    for level, layer in enumerate(explorer.layers, start=1):
        content = page.locator(f"#layer-{level} .content")
        shape = layer.output_shape
        if len(shape) == 4:
            assert content.locator("canvas.map").count() == shape[3], layer.name
        else:
            assert content.inner_text().strip() or content.locator("canvas").count(), layer.name
    # the strongest cell of a channel carries its arithmetic offline
    assert result["cells"] > 0
    assert page.locator(".carried").count() == result["cells"]     # outlined on the maps
    from convkit.explore.images import sample_image
    trace = explorer.run(sample_image("digit:2", explorer.input_shape))
    level, row, col, channel = next(c for c in explorer.argmax_cells(trace)
                                    if c[0] > 1 and c[3] == 3)
    cell = explorer.cell_json(trace, level, row, col, channel)
    canvas = page.locator(f"canvas.map[data-level='{cell['level']}'][data-channel='{cell['channel']}']")
    box = canvas.bounding_box()
    rows, cols = explorer.layers[cell["level"] - 1].output_shape[1:3]
    canvas.click(position={"x": (cell["col"] + 0.5) * box["width"] / cols,
                           "y": (cell["row"] + 0.5) * box["height"] / rows})
    page.wait_for_selector("#detail-activation")
    assert abs(number(page, "#detail-activation") - cell["model_value"]) <= 1e-5
    page.screenshot(path=str(tmp_path / "exported.png"), full_page=True)
    context.close()
