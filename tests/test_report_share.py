"""The report's shareable parts: a "grid image" per seed grid (drawn once, from the thumbnails) and the
all-prompts contact sheet, in the HTML and in headless Chromium."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import unquote

import pytest
from PIL import Image

from ckptbench.report.outputs import write_outputs
from ckptbench.suites.infotext_suite import decode_user_comment
from tests.chromium import chromium
from tests.html_tables import read_table
from tests.report_store import CHECKPOINTS, FAILED_CELL, PROMPTS, SEEDS, build_report_store
from tests.test_report_browser import chromium_path, wait_until  # noqa: F401 - chromium_path is a fixture


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = build_report_store(tmp_path_factory.mktemp("report-share") / "store")
    try:
        _, page = write_outputs(store)
    finally:
        store.close()
    return page


def _grid_image_links(html: str) -> list[str]:
    return [part.split('"', 1)[0] for part in html.split('class="grid-image" href="')[1:]]


def test_every_seed_grid_has_a_grid_image_drawn_once(report: Path) -> None:
    html = report.read_text()
    links = _grid_image_links(html)
    assert len(links) == len(PROMPTS) and all((report.parent / link).is_file() for link in links)
    with Image.open(report.parent / links[0]) as image:
        meta = json.loads(decode_user_comment(image.getexif().get_ifd(0x8769)[0x9286]))
        assert image.format == "WEBP"
    assert meta["y"]["labels"] == list(CHECKPOINTS) and meta["x"]["values"] == [str(s) for s in SEEDS]
    assert meta["prompt"] in PROMPTS
    before = {p.name: p.stat().st_mtime_ns for p in (report.parent / "grids").iterdir()}
    store_root = report.parent.parent
    from ckptbench.store import Store

    store = Store(store_root, read_only=True)
    try:
        write_outputs(store, out=store_root)
    finally:
        store.close()
    after = {p.name: p.stat().st_mtime_ns for p in (report.parent / "grids").iterdir()}
    assert after == before  # the same content: the same file names, not drawn again


def test_the_contact_sheet_has_every_prompt_by_every_checkpoint(report: Path) -> None:
    header, rows = read_table(report.read_text(), "contact-sheet")
    assert header == ["prompt", *CHECKPOINTS]
    assert len(rows) == len(PROMPTS)
    html = report.read_text()
    sheet = html[html.index('id="contact-sheet"'):html.index("</table>", html.index('id="contact-sheet"'))]
    assert sheet.count("<img ") == len(PROMPTS) * len(CHECKPOINTS)  # one seed's picture per cell, no more
    files = re.findall(r'(?:href|src)="((?:thumbs|\.\./images)/[^"]+)"', sheet)
    assert len(files) == 2 * len(PROMPTS) * len(CHECKPOINTS)  # each picture: its PNG and its thumbnail
    assert all((report.parent / unquote(link)).resolve().is_file() for link in files)


def test_contact_sheet_in_chromium(report: Path, tmp_path: Path, chromium_path: str) -> None:  # noqa: F811
    checkpoint, prompt, seed = FAILED_CELL
    with chromium(chromium_path, tmp_path / "profile") as browser:
        browser.open(report.resolve().as_uri())
        sheet = "document.getElementById('contact-sheet')"
        row = f"{sheet}.tBodies[0].rows[{prompt}]"
        column = 1 + CHECKPOINTS.index(checkpoint)
        first = browser.evaluate(f"{row}.cells[{column}].querySelector('img').getAttribute('src')")
        # Another seed: every cell shows that seed's picture, copied from the prompt's seed grid.
        browser.evaluate(f"(() => {{ const s = document.getElementById('contact-seed'); s.value = '{seed}'; "
                         "s.dispatchEvent(new Event('change')); })()")
        assert browser.evaluate(f"{row}.cells[{column}].textContent.trim()") == "–"  # that image failed
        other = browser.evaluate(f"{row}.cells[1].querySelector('img').getAttribute('src')")
        grid = browser.evaluate(f"{row}.getAttribute('data-grid')")
        in_grid = browser.evaluate(f"document.getElementById('{grid}').querySelector('tbody').rows[0]"
                                   f".cells[{1 + SEEDS.index(seed)}].querySelector('img').getAttribute('src')")
        assert other == in_grid and other != first
        # A prompt's link shows its seed grid.
        browser.click(f"#contact-sheet tbody tr:nth-child({prompt + 1}) a.to-grid")
        wait_until(browser, f"document.querySelector('.seed-grid:not([hidden])').id === '{grid}'")
        # A picture opens the lightbox with its infotext.
        browser.click("#contact-sheet tbody tr:nth-child(1) a.thumb")
        text = wait_until(browser, "(() => { const t = document.querySelector('#lightbox pre').textContent;"
                                   " return t.includes('Seed:') ? t : ''; })()")
        assert f"Seed: {seed}" in str(text) and PROMPTS[0] in str(text)
        assert browser.console_errors() == []

