"""The arena in a real browser (Debian's headless Chromium over DevTools, as the report's browser tests):
vote by clicking and by keys, reload, and find every vote in the store."""

from __future__ import annotations

import time
from pathlib import Path

from ckptbench.arena.votes import read_votes
from tests.arena_server import running_arena
from tests.chromium import Chromium, chromium
from tests.report_store import build_report_store
from tests.test_report_browser import chromium_path, keep_screenshot, wait_until

__all__ = ["chromium_path"]  # the session fixture, shared with the report's browser tests

KEYS = {"ArrowLeft": 37, "ArrowRight": 39, "ArrowDown": 40, " ": 32}
SHOWN = ("(() => { const c = window.arenaCurrent && window.arenaCurrent(); "
         "const l = document.getElementById('left-img'); const r = document.getElementById('right-img'); "
         "return c && !c.done && l.complete && r.complete && "
         "l.naturalWidth > 0 && r.naturalWidth > 0 && l.src.endsWith(c.left) ? c.token : null; })()")


def press(browser: Chromium, key: str) -> None:
    code = {"ArrowLeft": "ArrowLeft", "ArrowRight": "ArrowRight", "ArrowDown": "ArrowDown", " ": "Space"}[key]
    for kind in ("keyDown", "keyUp"):
        event = {"type": kind, "key": key, "code": code, "windowsVirtualKeyCode": KEYS[key]}
        if key == " " and kind == "keyDown":
            event["text"] = " "
        browser.call("Input.dispatchKeyEvent", event)


def next_pair_after(browser: Chromium, token: str) -> str:
    wait_until(browser, f"(() => {{ const t = {SHOWN}; return t && t !== {token!r}; }})()")
    wait_until(browser, "window.arenaPending() === 0")
    return browser.evaluate(SHOWN)


def test_votes_by_click_and_keys_survive_a_reload(tmp_path: Path, chromium_path: str) -> None:
    store = tmp_path / "store"
    build_report_store(store, prompts=4, size=(256, 256)).close()
    with running_arena(store, rater="browser") as url, chromium(chromium_path, tmp_path / "profile") as browser:
        browser.open(url + "/")
        token = wait_until(browser, SHOWN)
        assert browser.evaluate("document.getElementById('prompt').textContent.length") > 0
        shot = browser.screenshot(tmp_path / "arena.png")
        keep_screenshot(shot)
        browser.click('#choices button[data-choice="left"]')
        token = next_pair_after(browser, token)
        for key in ("ArrowRight", "ArrowDown", " "):
            press(browser, key)
            token = next_pair_after(browser, token)
        timings = browser.evaluate("window.arenaTimings")
        browser.open(url + "/")
        after_reload = wait_until(browser, SHOWN)
        time.sleep(0.2)
        errors = browser.console_errors()
    votes = read_votes(store)
    assert [v["choice"] for v in votes] == ["left", "right", "tie", "both_bad"]
    assert {v["rater"] for v in votes} == {"browser"}
    assert after_reload not in {v["token"] for v in votes}
    assert len({frozenset((v["left_key"], v["right_key"])) for v in votes}) == 4  # no pair shown twice
    assert len(timings) == 4 and max(timings) < 2000  # the next pair was preloaded
    assert not errors, errors
