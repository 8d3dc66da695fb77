"""The report in a real browser: Debian's headless Chromium, no network, driven over DevTools.

Skipped only when no Chromium is installed and we are not in CI; with CI=true a missing browser fails
(.ci/run installs it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ckptbench.report.outputs import write_outputs
from tests.chromium import Chromium, chromium, find_chromium
from tests.report_store import CHECKPOINTS, FAILED_CHECKPOINT, build_report_store

IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="session")
def chromium_path() -> str:
    found = find_chromium()
    if found is None:
        message = ("no Chromium found (looked for chromium, chromium-browser, google-chrome; or set CHROMIUM); "
                   "install Debian's: apt-get update && apt-get install -y chromium")
        if IN_CI:
            pytest.fail(f"CI=true: {message}")
        pytest.skip(message)
    return found


def wait_until(browser: Chromium, expression: str, timeout: float = 10.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = browser.evaluate(expression)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not true within {timeout} s: {expression}")


def keep_screenshot(path: Path) -> None:
    """CKPTBENCH_SCREENSHOTS=DIR keeps a copy of each screenshot (how docs/report-demo.png is made)."""
    folder = os.environ.get("CKPTBENCH_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(folder) / path.name)


def pick_prompt(browser: Chromium, value: str) -> None:
    browser.evaluate("(() => { const picker = document.getElementById('prompt-picker'); "
                     f"picker.value = {json.dumps(value)}; picker.dispatchEvent(new Event('change')); }})()")


def leaderboard_order(browser: Chromium) -> list[str]:
    return browser.evaluate("[...document.querySelectorAll('#leaderboard tbody tr')]"
                            ".map(r => r.getAttribute('data-checkpoint'))")


def check_report(browser: Chromium, report: Path, checkpoints: list[str], screenshot: Path,
                 images: bool) -> dict[str, float]:
    """The checks every report must pass; returns the page's load timings (ms) for the record."""
    browser.open(report.resolve().as_uri())
    assert browser.console_errors() == []
    # Offline: the page and everything it loads come from the file system.
    assert [u for u in browser.requested_urls() if not u.startswith(("file:", "data:"))] == []

    assert browser.evaluate("document.querySelectorAll('#leaderboard tbody tr').length") == len(checkpoints)
    assert sorted(leaderboard_order(browser)) == sorted(checkpoints)

    # The visible seed grid has one row per checkpoint, named as in the leaderboard.
    visible = "document.querySelector('.seed-grid:not([hidden])')"
    grid_rows = browser.evaluate(f"[...{visible}.querySelector('table.grid').querySelectorAll('tbody tr')]"
                                 ".map(r => r.cells[0].textContent.trim())")
    assert sorted(grid_rows) == sorted(checkpoints)
    assert browser.evaluate("document.querySelectorAll('.seed-grid:not([hidden])').length") == 1

    timing = browser.evaluate("(() => { const t = performance.getEntriesByType('navigation')[0];"
                              " return {dom: t.domContentLoadedEventEnd, load: t.loadEventEnd}; })()")
    browser.screenshot(screenshot, max_height=1800)
    keep_screenshot(screenshot)

    # The prompt picker shows another prompt's grid.
    options = browser.evaluate("[...document.querySelectorAll('#prompt-picker option')].map(o => o.value)")
    if len(options) > 1:
        pick_prompt(browser, options[-1])
        assert browser.evaluate(f"{visible}.id") == options[-1]
        pick_prompt(browser, options[0])

    _check_sorting(browser)
    if images:
        _check_lightbox(browser)
    assert browser.console_errors() == []
    return timing


def _check_sorting(browser: Chromium) -> None:
    """A real click on the first scorer's mean header sorts the rows by that column (best first, missing
    values last); a second click reverses it. At least one of the two changes the order."""
    column = browser.evaluate("[...document.querySelectorAll('#leaderboard thead th')]"
                              ".findIndex(th => th.textContent.includes('mean [95% CI]') && "
                              "!th.textContent.includes('composite'))")
    assert column >= 0
    best_high = browser.evaluate(f"document.querySelectorAll('#leaderboard thead th')[{column}]"
                                 ".getAttribute('data-best') === 'high'")
    values = (f"[...document.querySelectorAll('#leaderboard tbody tr')].map(r => "
              f"[r.getAttribute('data-checkpoint'), r.cells[{column}].getAttribute('data-sort')])")
    before = leaderboard_order(browser)
    selector = f"#leaderboard thead th:nth-child({column + 1})"
    browser.click(selector)
    first = browser.evaluate(values)
    numbers = [float(v) for _, v in first if v]
    assert numbers == sorted(numbers, reverse=best_high)
    assert all(v for _, v in first[: len(numbers)])  # rows without a value come last
    browser.click(selector)
    second = browser.evaluate(values)
    numbers = [float(v) for _, v in second if v]
    assert numbers == sorted(numbers, reverse=not best_high)
    assert [name for name, _ in first] != before or [name for name, _ in second] != before


def _check_lightbox(browser: Chromium) -> None:
    """Every picture of the visible grid loads, and clicking one shows the full PNG with its infotext."""
    grid = "document.querySelector('.seed-grid:not([hidden])')"
    browser.evaluate(f"{grid}.scrollIntoView()")
    wait_until(browser, f"[...{grid}.querySelectorAll('img')].every(i => i.complete && i.naturalWidth > 0)")
    browser.click(".seed-grid:not([hidden]) a.thumb")
    assert browser.evaluate("document.getElementById('lightbox').open")
    wait_until(browser, "(() => { const i = document.querySelector('#lightbox img');"
                        " return i.complete && i.naturalWidth > 0 && i.src.endsWith('.png'); })()")
    text = wait_until(browser, "(() => { const t = document.querySelector('#lightbox pre').textContent;"
                               " return t.includes('Seed:') ? t : ''; })()")
    assert "Steps:" in str(text)
    # The whole page under the picture is dimmed, the leaderboard's header included.
    browser.evaluate("document.querySelector('#leaderboard thead').scrollIntoView()")
    assert _brightness(browser, "#leaderboard thead th.name") < 0.55
    browser.click("#lightbox button.close")
    assert not browser.evaluate("document.getElementById('lightbox').open")
    assert _brightness(browser, "#leaderboard thead th.name") > 0.75


def _brightness(browser: Chromium, selector: str) -> float:
    """Mean brightness (0 black … 1 white) of the screen where the element is, as painted."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    box = browser.evaluate(f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
                           ".getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()")
    shot = browser.call("Page.captureScreenshot", {"format": "png", "clip": {
        "x": box[0], "y": box[1] + browser.evaluate("window.scrollY"), "width": box[2], "height": box[3],
        "scale": 1}})
    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("L"), dtype=float)
    return float(pixels.mean() / 255)


def test_report_of_a_small_run_in_chromium(tmp_path: Path, chromium_path: str) -> None:
    store = build_report_store(tmp_path / "store")
    try:
        _, report = write_outputs(store)
    finally:
        store.close()
    with chromium(chromium_path, tmp_path / "profile") as browser:
        check_report(browser, report, [*CHECKPOINTS, FAILED_CHECKPOINT], tmp_path / "report-small.png", images=True)


@pytest.mark.slow
def test_demo_report_in_chromium(tmp_path: Path, chromium_path: str) -> None:
    demo = tmp_path / "demo"
    done = subprocess.run([sys.executable, "-m", "ckptbench", "demo", "--out", str(demo)], capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    results = json.loads((demo / "results.json").read_text())
    with chromium(chromium_path, tmp_path / "profile") as browser:
        check_report(browser, demo / "report" / "index.html", [c["name"] for c in results["checkpoints"]],
                     tmp_path / "report-demo.png", images=True)


@pytest.mark.slow
def test_ghostreview_import_report_in_chromium(tmp_path: Path, chromium_path: str, shared_data: Path) -> None:
    """The report of GhostReview's real per-image scores (8 checkpoints, no images) in the browser."""
    store = tmp_path / "ghostreview"
    for command in (["import", "ghostreview", str(shared_data / "ghostreview"), "--store", str(store)],
                    ["report", "--store", str(store)]):
        done = subprocess.run([sys.executable, "-m", "ckptbench", *command], capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, done.stderr
    results = json.loads((store / "results.json").read_text())
    names = [c["name"] for c in results["checkpoints"]]
    assert len(names) == 8
    with chromium(chromium_path, tmp_path / "profile") as browser:
        check_report(browser, store / "report" / "index.html", names, tmp_path / "report-ghostreview.png",
                     images=False)
        # Each suite of the release has its grids; the LoRA matrix marks the NoTM exclusions.
        suites = browser.evaluate("[...new Set([...document.querySelectorAll('#prompt-picker option')]"
                                  ".map(o => o.textContent.split(' · ')[0]))]")
        assert sorted(suites) == ["lora", "quality", "style"]
        assert browser.evaluate("document.querySelectorAll('table.case-matrix td.excluded').length") > 0


def test_a_real_size_report_fits_a_laptop_and_a_phone(tmp_path: Path, chromium_path: str, shared_data: Path) -> None:
    """GhostReview's real scores (8 checkpoints, 4 scorers, 32 seeds, 16 LoRAs, unnormalised style losses of
    order 10⁹) at 1280 px: every scorer's mean is in view without scrolling sideways, the 32-seed grid and the
    LoRA matrix fit, style losses read "7.138" under a "×10⁹" header; at 390 px (a phone) the page never
    scrolls sideways and each checkpoint is a card with every scorer's mean."""
    from ckptbench.imports.ghostreview import import_results
    from ckptbench.store import Store

    store = Store(tmp_path / "store")
    try:
        with store.exclusive():
            import_results(store, shared_data / "ghostreview", name="GhostReview (imported)", baseline=None,
                           bootstrap=200)
        _, report = write_outputs(store)
    finally:
        store.close()
    results = json.loads((tmp_path / "store" / "results.json").read_text())
    scorers = [s for s in results["spec"]["scorers"]["use"] if s in results["analysis"]["suites"]["quality"]["scorers"]]
    assert len(scorers) >= 4
    fits = "(e => e.scrollWidth <= e.clientWidth + 1)"
    with chromium(chromium_path, tmp_path / "profile") as browser:
        browser.set_viewport(1280, 900)
        browser.open(report.resolve().as_uri())
        assert browser.evaluate("document.documentElement.scrollWidth") <= 1280
        for scorer in scorers:
            box = browser.evaluate(f"(() => {{ const th = document.querySelector('#leaderboard th[data-scorer="
                                   f"{json.dumps(scorer)}]'); const r = th.getBoundingClientRect();"
                                   " return [r.left, r.right, getComputedStyle(th).display]; })()")
            assert box[2] != "none" and 0 <= box[0] < box[1] <= 1280, (scorer, box)
        assert browser.evaluate(f"{fits}(document.querySelector('#leaderboard').parentNode)")
        # What does not fit is hidden by the column picker, which says so and brings it back.
        assert browser.evaluate("!document.querySelector('.columns-picker .fit-note').hidden")
        grid = "document.querySelector('.seed-grid:not([hidden])')"
        assert browser.evaluate(f"{grid}.querySelectorAll('th.seed').length") == 32
        assert browser.evaluate(f"[...{grid}.querySelectorAll('.scroll')].every({fits})")
        assert browser.evaluate(f"[...document.querySelectorAll('table.case-matrix')].every(t => {fits}(t.parentNode))")
        text = browser.evaluate("document.body.innerText")
        assert "e+0" not in text and "×10⁹" in text
        assert "scores imported (no images)" in text and "0/960" not in text
        browser.screenshot(tmp_path / "report-ghostreview-1280.png", max_height=1400)
        keep_screenshot(tmp_path / "report-ghostreview-1280.png")

        browser.set_viewport(390, 844, mobile=True)
        browser.open(report.resolve().as_uri())
        assert browser.evaluate("document.documentElement.scrollWidth") <= 390
        assert browser.evaluate("window.innerWidth") == 390  # not zoomed out to fit something wider
        cards = browser.evaluate("[...document.querySelectorAll('#leaderboard tbody tr')].map(tr => [...tr.cells]"
                                 ".filter(td => td.classList.contains('col-mean') && getComputedStyle(td).display"
                                 " !== 'none' && td.getBoundingClientRect().right <= 390).length)")
        assert cards == [len(scorers)] * 8
        browser.screenshot(tmp_path / "report-phone-390.png", max_height=1200)
        keep_screenshot(tmp_path / "report-phone-390.png")
        assert browser.console_errors() == []
