"""The arena under load, on 127.0.0.1 only: how fast pairs are issued, how many votes per second land when
many arrive at once (each exactly once), and how long a rater waits from a vote to the next pair in Chromium.

    python benchmarks/arena_load.py [--store STORE] [--votes 200] [--workers 32] [--browser-votes 20]

Without --store it builds a synthetic store (3 checkpoints × 40 prompts × 3 seeds, 512×512 PNGs). Every request
goes to the local server this script starts; the number of requests is bounded by --votes.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests/: the store builder, the server runner and the DevTools driver

from tests.arena_server import running_arena  # noqa: E402
from tests.chromium import chromium, find_chromium  # noqa: E402
from tests.report_store import build_report_store  # noqa: E402

from ckptbench.arena.votes import read_votes  # noqa: E402


def request(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, json.dumps(body) if body is not None else None, headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def issue(port: int, count: int, raters: int) -> tuple[list[str], list[float]]:
    tokens, seconds = [], []
    for number in range(count):
        started = time.perf_counter()
        status, pair = request(port, "GET", f"/api/next?rater=load{number % raters}")
        seconds.append(time.perf_counter() - started)
        if status != 200 or pair.get("done"):
            raise SystemExit(f"could not issue pair {number}: {status} {pair}")
        tokens.append(pair["token"])
    return tokens, seconds


def burst(port: int, tokens: list[str], workers: int) -> tuple[float, list[int]]:
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        statuses = list(pool.map(lambda token: request(port, "POST", "/api/vote",
                                                       {"token": token, "choice": "left"})[0], tokens))
    return time.perf_counter() - started, statuses


def browser_wait(url: str, votes: int, profile: Path) -> list[float]:
    executable = find_chromium()
    if executable is None:
        print("no Chromium: page-to-next-pair latency not measured")
        return []
    shown = ("(() => { const c = window.arenaCurrent(); const l = document.getElementById('left-img'); "
             "return c && !c.done && l.complete && l.naturalWidth > 0 ? c.token : null; })()")
    with chromium(executable, profile) as browser:
        browser.open(url + "/")
        for _ in range(votes):
            deadline = time.monotonic() + 30
            while not browser.evaluate(shown):
                if time.monotonic() > deadline:
                    raise SystemExit("the arena page showed no pair within 30 s")
                time.sleep(0.02)
            browser.click('#choices button[data-choice="left"]')
        time.sleep(0.5)
        return list(browser.evaluate("window.arenaTimings"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, help="an existing store (default: a synthetic one)")
    parser.add_argument("--votes", type=int, default=200, help="concurrent votes in the burst")
    parser.add_argument("--workers", type=int, default=32, help="client threads sending them")
    parser.add_argument("--browser-votes", type=int, default=20, help="votes cast by clicking in Chromium")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ckptbench-arena-") as scratch:
        store = args.store
        if store is None:
            store = Path(scratch) / "store"
            build_report_store(store, prompts=40, size=(512, 512)).close()
        before = len(read_votes(store))
        with running_arena(store) as url:
            port = int(url.rsplit(":", 1)[1])
            tokens, issue_seconds = issue(port, args.votes, raters=4)
            seconds, statuses = burst(port, tokens, args.workers)
            _, later_seconds = issue(port, 50, raters=4)  # the chooser now weighs every vote in the store
            timings = browser_wait(url, args.browser_votes, Path(scratch) / "profile") if args.browser_votes else []
        votes = read_votes(store)[before:]
        landed = sorted(v["token"] for v in votes if v["token"] in set(tokens))
    exactly_once = landed == sorted(tokens) and statuses.count(200) == len(tokens)
    print(f"pairs issued: {len(tokens)}, median {1000 * statistics.median(issue_seconds):.1f} ms per /api/next "
          f"(max {1000 * max(issue_seconds):.1f} ms); with {len(votes)} votes in the store "
          f"{1000 * statistics.median(later_seconds):.1f} ms")
    print(f"burst: {len(tokens)} votes from {args.workers} threads in {seconds:.2f} s = "
          f"{len(tokens) / seconds:.0f} votes/s; each landed exactly once: {exactly_once}")
    if timings:
        ordered = sorted(timings)
        print(f"browser: vote → next pair on screen, median {statistics.median(ordered):.1f} ms, "
              f"max {ordered[-1]:.1f} ms over {len(ordered)} votes")
    if not exactly_once:
        raise SystemExit("some votes did not land exactly once")


if __name__ == "__main__":
    main()
