"""The arena server: the vote flow, votes in the store, what it refuses (traversal, forged and replayed tokens,
malformed and oversized bodies, foreign hosts), concurrent votes, the report section and the export."""

from __future__ import annotations

import http.client
import io
import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from starlette.testclient import TestClient
from typer.testing import CliRunner

from ckptbench.arena.server import Arena, create_app, open_arena, strip_png_text
from ckptbench.arena.votes import read_votes
from ckptbench.cli import app as cli
from ckptbench.report.outputs import write_outputs
from ckptbench.store import Store
from tests.arena_server import running_arena
from tests.report_store import CHECKPOINTS, build_report_store

PREFERENCE = {"alpha": 2, "beta": 1, "gamma": 0}  # the hidden taste of the simulated rater


@pytest.fixture
def store(tmp_path: Path) -> Path:
    build_report_store(tmp_path / "store", prompts=4).close()
    return tmp_path / "store"


def client(store: Path, host: str = "127.0.0.1", rater: str = "tester") -> TestClient:
    return TestClient(create_app(open_arena(store, rater=rater, seed=0)), base_url=f"http://{host}")


def test_a_vote_is_in_the_store_with_what_was_shown(store: Path) -> None:
    web = client(store)
    pair = web.get("/api/next", params={"rater": "ann"}).json()
    assert not pair["done"] and pair["left"].endswith("/left")
    response = web.post("/api/vote", json={"token": pair["token"], "choice": "right"})
    assert response.status_code == 200
    (vote,) = read_votes(store)
    assert vote["rater"] == "ann" and vote["choice"] == "right" and vote["ui_version"] == "arena/1"
    assert vote["left_checkpoint"] != vote["right_checkpoint"]
    assert {vote["left_checkpoint"], vote["right_checkpoint"]} <= set(CHECKPOINTS)
    items = Store(store, read_only=True).run_item_rows(1)
    owner = {row["image_key"]: (row["checkpoint"], row["case_id"], row["seed"]) for row in items}
    assert owner[vote["left_key"]] == (vote["left_checkpoint"], vote["case_id"], vote["seed"])
    assert owner[vote["right_key"]] == (vote["right_checkpoint"], vote["case_id"], vote["seed"])


def test_images_are_the_stores_pixels_without_the_infotext(store: Path) -> None:
    web = client(store)
    pair = web.get("/api/next").json()
    assert web.post("/api/vote", json={"token": pair["token"], "choice": "tie"}).status_code == 200
    served = web.get(pair["left"])
    assert served.headers["content-type"] == "image/png"
    key = read_votes(store)[0]["left_key"]
    original = Store(store, read_only=True).image_file(key).read_bytes()
    assert b"parameters" in original and b"parameters" not in served.content and b"Model" not in served.content
    pixels = [np.asarray(Image.open(io.BytesIO(data))) for data in (served.content, original)]
    assert np.array_equal(*pixels)
    assert strip_png_text(b"not a png") == b"not a png"


@pytest.mark.parametrize("path", [
    "/../ckptbench.sqlite", "/%2e%2e/ckptbench.sqlite", "/..%2fckptbench.sqlite", "/images/", "/static/",
    "/arena.js/../../ckptbench.sqlite", "/image/..%2f..%2fckptbench.sqlite/left", "/image/%2e%2e/left",
    "/image/aaaaaaaaaaaaaaaaaaaaaa/left", "/image/../../ckptbench.sqlite", "/arena.html", "/report/index.html",
])
def test_nothing_but_the_arenas_routes_is_served(store: Path, path: str) -> None:
    response = client(store).get(path)
    assert response.status_code == 404
    assert b"SQLite format" not in response.content


def test_an_issued_image_with_a_bad_side_is_not_served(store: Path) -> None:
    web = client(store)
    token = web.get("/api/next").json()["token"]
    assert web.get(f"/image/{token}/middle").status_code == 404
    assert web.get(f"/image/{token}/..").status_code == 404


def test_forged_replayed_and_malformed_votes_are_refused(store: Path) -> None:
    web = client(store)
    token = web.get("/api/next").json()["token"]
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    cases = [
        ({"json": {"token": forged, "choice": "left"}}, 403),
        ({"json": {"token": "short", "choice": "left"}}, 400),
        ({"json": {"token": token, "choice": "middle"}}, 400),
        ({"json": {"token": token, "choice": "left", "extra": 1}}, 400),
        ({"json": [token, "left"]}, 400),
        ({"json": {"token": 5, "choice": "left"}}, 400),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400),
        ({"content": b"\xff\xfe", "headers": {"content-type": "application/json"}}, 400),
        ({"content": json.dumps({"token": token, "choice": "left"}), "headers": {"content-type": "text/plain"}}, 415),
        ({"content": b"{" + b" " * 5000 + b"}", "headers": {"content-type": "application/json"}}, 413),
    ]
    for request, status in cases:
        assert web.post("/api/vote", **request).status_code == status, request
    assert web.get("/api/vote").status_code == 405
    assert read_votes(store) == []
    assert web.post("/api/vote", json={"token": token, "choice": "left"}).status_code == 200
    assert web.post("/api/vote", json={"token": token, "choice": "right"}).status_code == 409
    assert [v["choice"] for v in read_votes(store)] == ["left"]


def test_an_oversized_body_without_a_length_is_cut_off(store: Path) -> None:
    web = client(store)

    def chunks():
        for _ in range(100):
            yield b"x" * 100

    response = web.post("/api/vote", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_a_page_on_another_host_name_is_refused(store: Path) -> None:
    assert client(store, host="attacker.example").get("/api/next").status_code == 400
    assert client(store, host="localhost").get("/api/config").status_code == 200


def test_bad_rater_names_and_stores_are_one_sentence(store: Path, tmp_path: Path) -> None:
    assert client(store).get("/api/next", params={"rater": "<script>"}).status_code == 400
    result = CliRunner().invoke(cli, ["arena", "--store", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "no ckptbench store here" in result.output
    result = CliRunner().invoke(cli, ["arena", "--store", str(store), "--suite", "styles"])
    assert result.exit_code == 2 and "no such suite" in result.output and "quality" in result.output


def rater_votes(web: TestClient, arena: Arena, rater: str, count: int, rng: np.random.Generator) -> None:
    """A rater who prefers alpha > beta > gamma, with some noise and some ties."""
    for _ in range(count):
        pair = web.get("/api/next", params={"rater": rater}).json()
        if pair["done"]:
            return
        token = pair["token"]
        issued = arena.book.pair(token)  # which checkpoints it shows: the server's record, never sent to the page
        assert issued is not None
        shown = issued.left_checkpoint, issued.right_checkpoint
        gap = PREFERENCE[shown[0]] - PREFERENCE[shown[1]]
        p_left = 1 / (1 + np.exp(-1.5 * gap))
        draw = rng.random()
        choice = "tie" if draw < 0.1 else ("left" if rng.random() < p_left else "right")
        assert web.post("/api/vote", json={"token": token, "choice": choice}).status_code == 200


def test_votes_make_a_human_preference_section_in_results_and_report(store: Path) -> None:
    arena = open_arena(store, rater="ann", seed=1)
    web = TestClient(create_app(arena), base_url="http://127.0.0.1")
    rng = np.random.default_rng(3)
    rater_votes(web, arena, "ann", 30, rng)
    rater_votes(web, arena, "bob", 30, rng)
    opened = Store(store, read_only=True)
    results_path, report_path = write_outputs(opened, out=store / "out")
    results = json.loads(results_path.read_text())
    human = results["human_preference"]
    assert human["votes"] == 60 and human["raters"] == ["ann", "bob"]
    assert [row["checkpoint"] for row in human["ranking"]["checkpoints"]] == ["alpha", "beta", "gamma"]
    assert set(human["by_rater"]) == {"ann", "bob"}
    # report_store's "aesthetic" follows the same order as the rater (alpha > beta > gamma), "artifacts" the
    # opposite with lower-is-better: both agree with the votes far above chance.
    assert human["agreement"]["aesthetic"]["accuracy"] > 0.6
    assert human["agreement"]["artifacts"]["accuracy"] == pytest.approx(human["agreement"]["aesthetic"]["accuracy"])
    html = report_path.read_text()
    assert 'id="human-section"' in html and 'href="#human-section"' in html
    assert html.count("<tr><td class=\"name\">alpha</td>") >= 1 and "Kendall" in html
    opened.close()


def test_no_votes_no_section(store: Path) -> None:
    opened = Store(store, read_only=True)
    results_path, report_path = write_outputs(opened, out=store / "out")
    assert json.loads(results_path.read_text())["human_preference"] is None
    assert 'id="human-section"' not in report_path.read_text()
    opened.close()


def test_votes_export_to_csv_and_parquet(store: Path, tmp_path: Path) -> None:
    web = client(store)
    for choice in ("left", "both_bad"):
        token = web.get("/api/next").json()["token"]
        web.post("/api/vote", json={"token": token, "choice": choice})
    runner = CliRunner()
    for name in ("votes.csv", "votes.parquet"):
        result = runner.invoke(cli, ["votes", "--store", str(store), "--out", str(tmp_path / name)])
        assert result.exit_code == 0 and "2 votes" in result.output
    csv = pd.read_csv(tmp_path / "votes.csv")
    parquet = pd.read_parquet(tmp_path / "votes.parquet")
    assert list(csv["choice"]) == list(parquet["choice"]) == ["left", "both_bad"]
    assert {"rater", "left_key", "right_key", "left_checkpoint", "voted_at", "ui_version"} <= set(csv.columns)
    assert runner.invoke(cli, ["votes", "--store", str(store), "--out", str(tmp_path / "v.txt")]).exit_code == 2


def post_vote(port: int, token: str, choice: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", "/api/vote", json.dumps({"token": token, "choice": choice}),
                           {"Content-Type": "application/json"})
        return connection.getresponse().status
    finally:
        connection.close()


def get_json(port: int, path: str) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def test_200_concurrent_votes_each_land_exactly_once(tmp_path: Path) -> None:
    store = tmp_path / "big"
    build_report_store(store, prompts=20).close()  # 3 checkpoints × 20 prompts × 3 seeds: 57 cells, 171 pairs
    with running_arena(store) as url:
        port = int(url.rsplit(":", 1)[1])
        tokens = [get_json(port, f"/api/next?rater=r{i % 4}")["token"] for i in range(200)]
        with ThreadPoolExecutor(max_workers=32) as pool:
            statuses = list(pool.map(lambda t: post_vote(port, t, "left"), tokens))
            # The same tokens again, concurrently: every one is refused as already voted.
            replays = list(pool.map(lambda t: post_vote(port, t, "right"), tokens[:50]))
    assert statuses == [200] * 200
    assert replays == [409] * 50
    votes = read_votes(store)
    assert len(votes) == 200 and sorted(v["token"] for v in votes) == sorted(tokens)
    assert {v["choice"] for v in votes} == {"left"}
    database = sqlite3.connect(store / "ckptbench.sqlite")
    assert database.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    database.close()
