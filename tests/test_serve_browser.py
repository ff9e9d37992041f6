"""``gankit serve`` in a real headless browser: Debian's chromium driven by Selenium through
Debian's chromedriver (nothing is downloaded). Loads the page of a tiny trained run, changes the
class and the truncation, checks that the grid changes and decodes, runs an interpolation, reads
a training curve off its SVG, downloads the PNG and saves a screenshot; then the layout at
375 px, the controls' accessible names, runs of other shapes (answers patched in the page) and a
server that stops answering.

The screenshot goes to ``$GANKIT_TEST_ARTIFACTS/serve.png`` (default: the test's tmp folder).
Without chromium/chromedriver/selenium the test skips, except under ``CI=true``, where it fails:
``make test`` installs the Debian packages ``chromium`` and ``chromium-driver``.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from serve_fixtures import CLASS_NAMES, request, start_server, stop_server

from gankit.config import MAX_TRUNCATION
from gankit.run import RunDir

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    SELENIUM = None
except ImportError as err:  # the dev extra brings it
    SELENIUM = f"selenium is not installed ({err})"

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def _missing() -> str | None:
    if SELENIUM:
        return SELENIUM
    if not CHROMIUM or not CHROMEDRIVER:
        return "Debian packages chromium and chromium-driver are not installed"
    return None


@pytest.fixture(scope="session")  # session: set up (or skipped) before the run is trained
def browser(tmp_path_factory) -> Iterator[webdriver.Chrome]:
    missing = _missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser test cannot run in CI: {missing}; `make test` installs them")
        pytest.skip(missing)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1600", "--hide-scrollbars"):  # fmt: skip
        options.add_argument(arg)
    downloads = tmp_path_factory.mktemp("downloads")
    prefs = {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    options.add_experimental_option("prefs", prefs)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the page's console
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


def _wait(what: str, check: Callable[[], object], timeout: float = 60) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _png(data_url: str) -> bytes:
    assert data_url.startswith("data:image/png;base64,")
    return base64.b64decode(data_url.split(",", 1)[1])


def _grid_for(driver, **want) -> str:
    """Wait until the grid shows the request with ``want`` (page idle), return its data URL."""

    def ready():
        img = driver.find_element(By.ID, "grid")
        params = json.loads(img.get_attribute("data-params") or "{}")
        idle = driver.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "ready"
        return (
            idle and all(params.get(k) == v for k, v in want.items()) and img.get_attribute("src")
        )

    return _wait(f"grid with {want}", ready)


def _decodes(driver, element_id: str) -> tuple[int, int]:
    """``(naturalWidth, naturalHeight)`` once the browser has decoded the image."""
    return tuple(
        driver.execute_async_script(
            "const [id, done] = arguments; const img = document.getElementById(id);"
            "img.decode().then(() => done([img.naturalWidth, img.naturalHeight]),"
            " (e) => done([0, 0]));",
            element_id,
        )
    )


def test_page_end_to_end(browser, serve_url, serve_run, tmp_path):
    d = browser
    d.get(serve_url + "/")

    # Class picker: the data's class names (loaded in the background, the page polls).
    picker = Select(d.find_element(By.ID, "class"))
    _wait("class names", lambda: [o.text for o in picker.options] == ["All classes", *CLASS_NAMES])
    first = _grid_for(d, classes=None, seed=0, truncation=0)
    assert _decodes(d, "grid") == Image.open(io.BytesIO(_png(first))).size

    # Change the class: a new 4×4 grid of "dog" only, the same PNG the API gives.
    picker.select_by_visible_text("dog")
    dog = _grid_for(d, classes=[1], truncation=0)
    assert dog != first and _decodes(d, "grid") == (4 * 34 + 2, 4 * 34 + 2)
    api = request(f"{serve_url}/api/generate", {"n": 16, "classes": [1], "ncol": 4, "seed": 0})
    assert json.loads(api[2])["image"] == dog

    # Truncation slider, moved with the keyboard like a user: 0 → 0.5.
    slider = d.find_element(By.ID, "truncation")
    slider.send_keys(*[Keys.ARROW_RIGHT] * 5)
    truncated = _grid_for(d, classes=[1], truncation=0.5)
    assert truncated != dog and _decodes(d, "grid")[0] > 0
    assert d.find_element(By.ID, "truncation-value").text == "0.5"

    # Interpolation between classes cat → owl.
    Select(d.find_element(By.ID, "interp-class-b")).select_by_visible_text("owl")
    d.find_element(By.ID, "interp-run").click()

    def strip_done():
        params = json.loads(
            d.find_element(By.ID, "strip-class").get_attribute("data-params") or "{}"
        )
        idle = d.find_element(By.TAG_NAME, "body").get_attribute("data-interp") == "ready"
        return idle and params.get("classes") == [0, 2]

    _wait("class interpolation strip", strip_done)
    assert _decodes(d, "strip-class") == (8 * 34 + 2, 36)  # 8 frames of 32 px, 2 px padding
    assert "cat → owl" in d.find_element(By.ID, "strip-class-title").text

    # A curve: the loss_D polyline holds the logged values at the chart's own scale.
    line = d.find_element(By.CSS_SELECTOR, '#chart-losses polyline[data-series="loss_D"]')
    svg = d.find_element(By.CSS_SELECTOR, "#chart-losses svg")
    logs = [r for r in RunDir(serve_run).read_metrics() if "loss_D" in r]
    assert json.loads(line.get_attribute("data-steps")) == [r["step"] for r in logs]
    values = json.loads(line.get_attribute("data-values"))
    assert values == [r["loss_D"] for r in logs]
    x0, x1, y0, y1 = (float(svg.get_attribute(f"data-{k}")) for k in ("x0", "x1", "y0", "y1"))
    bx, by, bw, bh = map(float, svg.get_attribute("data-box").split(","))
    points = [tuple(map(float, p.split(","))) for p in line.get_attribute("points").split()]
    for (px, py), r in zip(points, logs):
        assert px == pytest.approx(bx + (r["step"] - x0) / (x1 - x0) * bw, abs=0.01)
        assert py == pytest.approx(by + (y1 - r["loss_D"]) / (y1 - y0) * bh, abs=0.01)
    assert d.find_element(By.ID, "chart-eval-swd")  # the eval row of `gankit eval`

    # Download the current grid as PNG: the file is the grid on screen.
    d.find_element(By.ID, "download-png").click()
    files = _wait("downloaded PNG", lambda: [p for p in d.downloads.glob("*.png")])
    _wait("download to finish", lambda: not list(d.downloads.glob("*.crdownload")))
    assert files[0].read_bytes() == _png(truncated)
    assert files[0].name == "run-step_00000004-seed0.png"

    artefacts = Path(os.environ.get("GANKIT_TEST_ARTIFACTS", tmp_path))
    artefacts.mkdir(parents=True, exist_ok=True)
    shot = artefacts / "serve.png"
    assert d.save_screenshot(str(shot))
    assert Image.open(shot).size[0] > 0
    assert not d.find_element(By.ID, "error").is_displayed()  # no error banner on the way


def _console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def _strips(driver) -> dict[str, dict]:
    """The requests of both strips on screen, once the interpolation is idle (else {})."""
    if driver.find_element(By.TAG_NAME, "body").get_attribute("data-interp") != "ready":
        return {}
    return {
        i: json.loads(driver.find_element(By.ID, i).get_attribute("data-params") or "{}")
        for i in ("strip-z", "strip-class")
    }


def _strips_with(driver, strip: str, **want) -> dict[str, dict]:
    """:func:`_strips` once ``strip``'s request has the items ``want`` (else {})."""
    strips = _strips(driver)
    return strips if all(strips.get(strip, {}).get(k) == v for k, v in want.items()) else {}


def _type(driver, element_id: str, text: str) -> None:
    field = driver.find_element(By.ID, element_id)
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(text)


def test_bad_fields_are_refused_and_the_newest_strips_win(browser, serve_url):
    """A seed or step count that is not an allowed integer is refused with a message naming
    the field (never replaced by another value); the next good value clears the message; the
    strips on screen always come from the newest request; the page logs no console error."""
    d = browser
    d.get(serve_url + "/")
    _grid_for(d, seed=0)
    _wait("first strips", lambda: _strips(d).get("strip-class", {}).get("steps") == 8)
    banner = d.find_element(By.ID, "error")

    seed = d.find_element(By.ID, "seed")
    refused = {  # typed → quoted; a number that rounds to an integer is not taken for it
        "-5": "-5",
        "4.0000000000000001": "4.0000000000000001",
        "12e": "text that is not a number",
    }
    for typed, quoted in refused.items():
        _type(d, "seed", typed)
        _wait("seed error", lambda q=quoted: banner.text.endswith(f"got {q}"))
        assert banner.text == f"seed: expected an integer in 0..9007199254740991, got {quoted}"
        assert seed.get_attribute("aria-invalid") == "true"  # marked while the value stays
    assert json.loads(d.find_element(By.ID, "grid").get_attribute("data-params"))["seed"] == 0
    _type(d, "seed", "7")
    _grid_for(d, seed=7)
    _wait("banner cleared", lambda: not banner.is_displayed())
    assert seed.get_attribute("aria-invalid") == "false"

    _type(d, "interp-steps", "2.5")
    d.find_element(By.ID, "interp-run").click()
    _wait("steps error", lambda: banner.is_displayed())
    assert banner.text == "steps: expected an integer in 2..64, got 2.5"
    assert _strips(d)["strip-z"]["steps"] == 8  # the strips on screen are kept

    _type(d, "interp-steps", "4")
    d.find_element(By.ID, "interp-steps").send_keys(Keys.ENTER)  # submits the interpolation
    _wait("strips of 4 steps", lambda: _strips_with(d, "strip-z", steps=4))
    for seed in ("3", "4", "5"):  # three requests while the first still runs: the last wins
        _type(d, "interp-seed-a", seed)
        d.find_element(By.ID, "interp-run").click()
    last = _wait("newest strips", lambda: _strips_with(d, "strip-z", seeds=[5, 1]))
    assert last["strip-class"]["seeds"] == [5, 5] and last["strip-z"]["steps"] == 4
    assert d.find_element(By.ID, "strip-z-title").text.startswith("Between seeds 5 → 1")
    assert "seed 5" in d.find_element(By.ID, "strip-class-title").text
    assert not banner.is_displayed()
    assert _console_errors(d) == []


def test_refresh_follows_new_checkpoints_unless_one_was_picked(browser, serve_run, tmp_path):
    """Refresh moves the picker, the grid and the strips to a checkpoint written since the page
    loaded, unless the user picked an older checkpoint, which then stays until training prunes
    it: the next request re-reads the run by itself and the picker follows the newest again."""
    run = tmp_path / "run"
    shutil.copytree(serve_run, run)
    ckpts = run / "checkpoints"
    proc, url = start_server(run)
    try:
        d = browser
        d.get(url)
        _grid_for(d, checkpoint="step_00000004")
        ckpt6 = "step_00000006"
        shutil.copytree(ckpts / "step_00000004", ckpts / ckpt6)
        d.find_element(By.ID, "refresh").click()
        _grid_for(d, checkpoint=ckpt6)
        strips = _wait("strips of step 6", lambda: _strips_with(d, "strip-z", checkpoint=ckpt6))
        assert strips["strip-class"]["checkpoint"] == ckpt6
        assert Select(d.find_element(By.ID, "checkpoint")).first_selected_option.text == (
            "step 6 (latest)"
        )

        Select(d.find_element(By.ID, "checkpoint")).select_by_value("step_00000002")
        _grid_for(d, checkpoint="step_00000002")
        shutil.copytree(ckpts / "step_00000004", ckpts / "step_00000008")
        d.find_element(By.ID, "refresh").click()
        _wait(
            "step 8 listed", lambda: "step 8 (latest)" in d.find_element(By.ID, "checkpoint").text
        )
        _grid_for(d, checkpoint="step_00000002")
        assert Select(d.find_element(By.ID, "checkpoint")).first_selected_option.text == "step 2"

        shutil.rmtree(ckpts / "step_00000002")  # pruned by training
        _type(d, "seed", "3")  # a request naming it: 404, then the page re-reads the run
        _grid_for(d, checkpoint="step_00000008", seed=3)
        shutil.copytree(ckpts / "step_00000004", ckpts / "step_00000010")
        d.find_element(By.ID, "refresh").click()
        _grid_for(d, checkpoint="step_00000010", seed=3)

        # the .npz of a picked checkpoint pruned meanwhile: taken from the newest instead
        Select(d.find_element(By.ID, "checkpoint")).select_by_value("step_00000008")
        _grid_for(d, checkpoint="step_00000008", seed=3)
        shutil.rmtree(ckpts / "step_00000008")
        d.find_element(By.ID, "download-npz").click()
        name = "run-step_00000010-seed3.npz"
        _wait("npz of the newest checkpoint", lambda: (d.downloads / name).is_file())
        _wait("download to finish", lambda: not list(d.downloads.glob("*.crdownload")))
        with np.load(d.downloads / name) as f:
            assert (
                f["x"].shape[0]
                == json.loads(d.find_element(By.ID, "grid").get_attribute("data-params"))["n"]
            )
    finally:
        stop_server(proc)


# Installed before the page's own script: the JSON answers of some GET routes get fields replaced.
PATCH_FETCH = """
const patches = %s;
const realFetch = window.fetch;
window.fetch = async (path, init) => {
  const res = await realFetch(path, init);
  if (!(path in patches)) return res;
  const body = { ...(await res.json()), ...patches[path] };
  return new Response(JSON.stringify(body), { status: res.status, headers: res.headers });
};
"""


@contextlib.contextmanager
def _patched_answers(driver, patches: dict[str, dict]) -> Iterator[None]:
    """Pages loaded meanwhile see the fields ``patches[path]`` in the answers of ``path``: a
    run of another shape than the tiny one, without training it."""
    source = PATCH_FETCH % json.dumps(patches)
    script = driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": source})
    try:
        yield
    finally:
        driver.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", script)


def test_page_fits_a_phone_names_its_controls_and_adapts_to_the_run(browser, serve_url):
    """With 20 long class names and extreme logged values: honest caption, finite charts, no
    sideways scrolling at 375 px, tables as tall as their content, named controls, and a clear
    lasting message while the server does not answer. With one class: no class controls."""
    d = browser
    _console_errors(d)  # only this test's messages from here on
    names = [f"a very long class name number {i} of this run" for i in range(20)]
    extreme = {
        "losses": {"loss_D": [[1, 1e308], [2, -1e308], [3, 0.5]]},
        "eval": {"kid": [[1, 1.2e-6], [2, 3.4e-6], [3, 2.1e-6]], "fid": [[1, 1e12], [2, 3e12]]},
        "warnings": [{"step": 2, "warning": "x" * 3000}],  # one long word
    }
    with _patched_answers(d, {"/api/info": {"n_classes": 20, "class_names": names},
                              "/api/metrics": extreme}):  # fmt: skip
        d.get(serve_url + "/")
        _grid_for(d, classes=None, n=16)
    caption = d.find_element(By.ID, "grid-caption").text
    assert caption.startswith("16 samples · first 16 of 20 classes · ")
    d.find_element(By.CSS_SELECTOR, "#config summary").click()
    _wait("config tables", lambda: d.find_elements(By.CSS_SELECTOR, "#config-tables table"))
    odd = d.execute_script(
        "return [...document.querySelectorAll('#charts svg, #charts svg *')]"
        ".flatMap((el) => [...el.attributes]).map((a) => a.value)"
        ".filter((v) => /NaN|Infinity/.test(v))"
    )
    assert d.find_element(By.ID, "chart-losses") and odd == []
    ticks = d.execute_script(  # every y tick label whole inside its chart, and told apart
        "return [...document.querySelectorAll('#charts svg')].map((svg) =>"
        " [...svg.querySelectorAll('text.y-tick')].map((t) => [t.textContent, t.getBBox().x]))"
    )
    assert all(labels and all(x >= 0 for _, x in labels) for labels in ticks), ticks
    assert all(len({text for text, _ in labels}) == len(labels) for labels in ticks), ticks
    kid = [t for t, _ in ticks[[i for i, labels in enumerate(ticks) if "e-6" in str(labels)][0]]]
    assert {"1.5e-6", "2.0e-6", "3.0e-6"} <= set(kid), kid
    assert _console_errors(d) == []

    banner = d.find_element(By.ID, "error")
    down = f"cannot reach the gankit serve server at {serve_url}; restart it and press Refresh"
    d.set_network_conditions(offline=True, latency=0, throughput=1)
    d.find_element(By.ID, "refresh").click()
    _wait("server-down message", lambda: banner.is_displayed())
    since = time.monotonic()
    assert banner.text == down
    assert float(d.find_element(By.TAG_NAME, "main").value_of_css_property("opacity")) < 1

    slider, seed = d.find_element(By.ID, "truncation"), d.find_element(By.ID, "seed")
    assert (slider.accessible_name, seed.accessible_name) == ("Truncation τ", "Seed")
    assert float(slider.get_attribute("max")) == MAX_TRUNCATION
    stretched = d.execute_script(
        "return [...document.querySelectorAll('#config-tables table')].filter((t) => {"
        " const h = t.offsetHeight; t.style.alignSelf = 'start';"
        " return t.offsetHeight !== h; }).length"
    )
    assert stretched == 0
    d.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 375, "height": 800, "deviceScaleFactor": 1, "mobile": False},
    )
    try:
        sizes = d.execute_script(
            "const out = [...document.querySelectorAll('.card select')].filter((s) =>"
            " s.getBoundingClientRect().right > s.closest('.card').getBoundingClientRect().right);"
            "return [document.documentElement.scrollWidth, window.innerWidth, out.length]"
        )
        assert sizes[0] <= sizes[1] == 375 and sizes[2] == 0  # no select sticks out of its card
    finally:
        d.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    time.sleep(max(0, since + 8.5 - time.monotonic()))  # other messages go after 8 s
    assert banner.is_displayed() and banner.text == down
    d.delete_network_conditions()
    d.find_element(By.ID, "refresh").click()
    _wait("message gone once the server answers", lambda: not banner.is_displayed())
    _console_errors(d)  # the failed requests while offline

    with _patched_answers(d, {"/api/info": {"n_classes": 1, "class_names": ["only"]}}):
        d.get(serve_url + "/")
        _grid_for(d, classes=[0])
    _wait("seed strip", lambda: _strips_with(d, "strip-z", steps=8))
    for hidden in ("class", "interp-class-a", "interp-class-b", "strip-class", "strip-class-title"):
        assert not d.find_element(By.ID, hidden).is_displayed(), hidden
    assert d.find_element(By.ID, "grid-caption").text == "16 samples · τ off · seed 0 · step 4"
    assert d.find_element(By.ID, "strip-z-title").text.startswith("Between seeds 0 → 1 · τ off")
