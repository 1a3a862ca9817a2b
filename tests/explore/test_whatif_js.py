"""The what-if panel's JavaScript (static/whatif.js) against convkit.shapes and
convkit.viz.usage_counts on random cases, run by node (or headless Chromium)."""
import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from convkit import shapes
from convkit.errors import ShapeError
from convkit.explore.server import STATIC_DIR
from convkit.viz.border import usage_counts

NODE = shutil.which("node") or ("/usr/bin/node" if os.path.exists("/usr/bin/node") else None)

_RUNNER = """
const WhatIf = require(process.argv[1]);   // node -e: argv[1] is the first argument
const cases = JSON.parse(require("fs").readFileSync(0, "utf8"));
const out = cases.map((settings) => {
  const geo = WhatIf.geometry(settings);
  if (geo.error) return {error: geo.error};
  return {...geo, counts: WhatIf.usageCounts(settings, geo)};
});
process.stdout.write(JSON.stringify(out));
"""


def random_case(rng) -> dict:
    pool = bool(rng.random() < 0.4)
    kernel = [int(v) for v in rng.integers(1, 6, 2)]
    padding = ["valid", "same", "explicit"][rng.integers(0, 3)]
    if padding == "explicit":
        limit = [k // 2 for k in kernel] if pool else [3, 3]
        padding = [[int(rng.integers(0, limit[a] + 1 + (rng.random() < 0.1))) for _ in range(2)]
                   for a in range(2)]
    return {"input": [int(v) for v in rng.integers(1, 16, 2)], "kernel": kernel,
            "strides": [int(v) for v in rng.integers(1, 5, 2)],
            "dilation": [int(v) for v in rng.integers(1, 4, 2)] if rng.random() < 0.4 else [1, 1],
            "padding": padding, "ceilMode": bool(pool and rng.random() < 0.5), "pool": pool}


def python_answer(case):
    padding = case["padding"] if isinstance(case["padding"], str) else \
        tuple(tuple(p) for p in case["padding"])
    try:
        geometry = shapes.window_geometry(tuple(case["input"]), tuple(case["kernel"]),
                                          tuple(case["strides"]), padding,
                                          tuple(case["dilation"]), case["ceilMode"],
                                          max_pad_half_window=case["pool"])
    except ShapeError:
        return None
    return geometry


def run_whatif(cases) -> list:
    """The JS answers for ``cases``: with node where it is installed, else in headless
    Chromium through Playwright."""
    script = os.path.join(STATIC_DIR, "whatif.js")
    if NODE is not None:
        result = subprocess.run([NODE, "-e", _RUNNER, script], input=json.dumps(cases),
                                capture_output=True, text=True, timeout=60, check=True)
        return json.loads(result.stdout)
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="requires node or playwright with chromium")
    if not os.path.exists("/usr/bin/chromium"):
        pytest.skip("requires node or chromium")
    with open(script, encoding="utf-8") as handle:
        source = handle.read()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                             args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.add_script_tag(content=source)
        answers = page.evaluate("""(cases) => cases.map((settings) => {
            const geo = WhatIf.geometry(settings);
            return geo.error ? {error: geo.error}
                             : {...geo, counts: WhatIf.usageCounts(settings, geo)};
        })""", cases)
        browser.close()
    return answers


def test_whatif_formulas_match_shapes_on_random_cases():
    rng = np.random.default_rng(22)
    cases = [random_case(rng) for _ in range(400)]
    cases.append({"input": [6, 6], "kernel": [3, 3], "strides": [2, 2], "dilation": [1, 1],
                  "padding": "valid", "ceilMode": False, "pool": False})
    answers = run_whatif(cases)
    errors = 0
    for case, js in zip(cases, answers):
        geometry = python_answer(case)
        if geometry is None:
            assert "error" in js, case
            errors += 1
            continue
        assert "error" not in js, (case, js)
        assert js["output"] == list(geometry.out_hw), case
        assert js["pads"] == [list(p) for p in geometry.pads], case
        assert js["extra"] == list(geometry.extra), case
        counts, _ = usage_counts_with_extra(case, geometry)
        assert np.array_equal(np.asarray(js["counts"]), counts), case
    assert 10 < errors < len(cases) // 2          # both kinds of answer were exercised
    assert answers[-1]["output"] == [2, 2] and answers[-1]["formulas"][0] == \
        "floor((6 + 0 + 0 - 3) / 2) + 1 = 2"


def usage_counts_with_extra(case, geometry):
    """convkit's own count of window reads over the padded grid, ceil-mode extra included."""
    if not any(geometry.extra):
        return usage_counts(tuple(case["input"]), tuple(case["kernel"]), tuple(case["strides"]),
                            geometry.padding, tuple(case["dilation"]), include_padding=True)
    # usage_counts has no ceil_mode: scatter the windows onto the grid it spans directly
    from convkit.ops.windows import scatter_windows
    shape = (1, *geometry.padded_hw, 1)
    ones = np.ones((1, *geometry.out_hw, 1), np.int64)
    return scatter_windows(lambda a, b: ones, geometry, shape, np.int64)[0, :, :, 0], geometry
