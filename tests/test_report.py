"""The report's files, links, exports and sections, on small runs written through the Store's API."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ckptbench.analysis.results import build_results
from ckptbench.report.html import render_report
from ckptbench.report.leaderboard import build_baseline_view, build_leaderboard
from ckptbench.report.matrices import case_heatmaps, win_rate_heatmap
from ckptbench.report.outputs import write_outputs
from ckptbench.report.thumbnails import THUMBNAIL_SIZE
from ckptbench.store import Store
from tests.html_tables import read_table
from tests.report_store import (
    CHECKPOINTS,
    FAILED_CELL,
    FAILED_CHECKPOINT,
    PROMPTS,
    SEEDS,
    SET_SCORER,
    build_report_store,
    lora_loss,
    score_of,
    set_value,
)

ANALYSIS = {"baseline": "beta", "composite": {"aesthetic": 1.0, "artifacts": 1.0}, "thresholds": {"aesthetic": 6.0}}


@pytest.fixture(scope="module")
def small_report(tmp_path_factory) -> Path:
    """Store with the default two prompts; outputs written into the store."""
    store = build_report_store(tmp_path_factory.mktemp("small") / "store")
    try:
        write_outputs(store)
    finally:
        store.close()
    return store.root


@pytest.fixture(scope="module")
def rich_run(tmp_path_factory) -> tuple[dict, pd.DataFrame, Path]:
    """Eight prompts (enough cases for a significant paired test), a baseline, composite weights, a
    good-image threshold and a LoRA suite with one NoTM exclusion."""
    store = build_report_store(tmp_path_factory.mktemp("rich") / "store", prompts=8, analysis=ANALYSIS,
                               lora_cases=3, set_scores=True)
    try:
        results, frame = build_results(store)
        write_outputs(store)
    finally:
        store.close()
    return results, frame, store.root


def links(html: str) -> tuple[list[str], list[str]]:
    """(full-image hrefs of the grid pictures, thumbnail srcs)."""
    hrefs = re.findall(r'<a class="thumb" href="([^"]+)"', html)
    srcs = re.findall(r'<img src="([^"]+)"', html)
    return hrefs, srcs


def test_grid_links_thumbnails_and_infotext_resolve(small_report: Path) -> None:
    report = small_report / "report"
    html = (report / "index.html").read_text()
    start = html.index('id="grids-section"')
    hrefs, srcs = links(html[start:html.index("</section>", start)])  # the seed grids (the contact sheet repeats some)
    images = len(CHECKPOINTS) * len(PROMPTS) * len(SEEDS) - 1  # one image failed
    assert len(hrefs) == len(srcs) == images
    for href in hrefs:
        assert not href.startswith(("/", "file:")) and href.endswith(".png")
        assert (report / unquote(href)).resolve().is_file()
    for src in srcs:
        path = report / unquote(src)
        assert src.startswith(f"thumbs/{THUMBNAIL_SIZE}/") and path.suffix == ".webp"
        with Image.open(path) as thumbnail:
            assert thumbnail.format == "WEBP" and thumbnail.size == (96, 64)  # never enlarged
    scripts = sorted((report / "infotext").glob("*.js"))
    assert len(scripts) == len(PROMPTS)
    joined = "".join(p.read_text() for p in scripts)
    assert joined.count("Seed: ") == images
    # A prompt containing "</script>" can neither close a script element nor inject markup.
    assert "</script>" not in joined and "<\\/script>" in joined
    assert "</script><b>bold?</b>" not in html and "&lt;/script&gt;&lt;b&gt;bold?&lt;/b&gt;" in html


def test_leaderboard_rows_failures_and_grid_rows(small_report: Path) -> None:
    html = (small_report / "report" / "index.html").read_text()
    _, rows = read_table(html, "leaderboard")
    assert [row[1].split()[0] for row in rows] == [*CHECKPOINTS, FAILED_CHECKPOINT]  # best first, failed last
    failures = {row[1].split()[0]: int(row[-1]) for row in rows}
    assert failures == {"alpha": 0, "beta": 0, "gamma": 1, FAILED_CHECKPOINT: 1}
    _, failure_rows = read_table(html, "failures")
    assert sorted(row[0] for row in failure_rows) == ["checkpoint", "image"]
    # Every grid has one row per checkpoint of the run, the failed one included.
    grids = html.split('id="grids-section"', 1)[1].split("</section>", 1)[0]
    assert grids.count('<table class="grid">') == len(PROMPTS)
    for checkpoint in [*CHECKPOINTS, FAILED_CHECKPOINT]:
        assert grids.count(f'<tr><td class="name">{checkpoint}</td>') == len(PROMPTS)


def test_thumbnails_are_made_once_and_the_report_travels(small_report: Path, tmp_path: Path) -> None:
    thumbnails = sorted((small_report / "report" / "thumbs").rglob("*.webp"))
    before = {p: p.stat().st_mtime_ns for p in thumbnails}
    store = Store(small_report)
    try:
        write_outputs(store)
    finally:
        store.close()
    assert {p: p.stat().st_mtime_ns for p in sorted((small_report / "report" / "thumbs").rglob("*.webp"))} == before

    # Copied elsewhere, the store's report still finds every picture (all links are relative).
    copy = shutil.copytree(small_report, tmp_path / "elsewhere" / "store")
    html = (copy / "report" / "index.html").read_text()
    hrefs, srcs = links(html)
    assert all((copy / "report" / unquote(link)).is_file() for link in hrefs + srcs)

    # Written to another folder, the report links back into the store.
    store = Store(copy)
    try:
        _, report = write_outputs(store, out=tmp_path / "published")
    finally:
        store.close()
    hrefs, srcs = links(report.read_text())
    assert hrefs and all((report.parent / unquote(h)).resolve().is_file() for h in hrefs)
    assert all((report.parent / s).is_file() for s in srcs)
    assert {p.name for p in (tmp_path / "published").iterdir()} >= {
        "results.json", "scores.csv", "scores.parquet", "leaderboard.csv", "report"}


def test_exports_agree_with_the_hand_computed_values(small_report: Path) -> None:
    csv = pd.read_csv(small_report / "scores.csv")
    parquet = pd.read_parquet(small_report / "scores.parquet")
    assert len(parquet) == len(csv) == (len(CHECKPOINTS) * len(PROMPTS) * len(SEEDS)) * 2
    assert parquet["seed"].dtype == np.int64 and parquet["value"].dtype == np.float64
    np.testing.assert_array_equal(parquet["image_key"].to_numpy(dtype=str), csv["image_key"].to_numpy(dtype=str))
    np.testing.assert_allclose(parquet["value"].to_numpy(), csv["value"].to_numpy(), equal_nan=True)
    assert parquet["value"].isna().sum() == 2  # the failed image, for each scorer: kept, empty

    board = pd.read_csv(small_report / "leaderboard.csv")
    assert list(board["checkpoint"]) == [*CHECKPOINTS, FAILED_CHECKPOINT]
    for checkpoint in CHECKPOINTS:
        expected = [score_of(checkpoint, p, s, "aesthetic") for p in range(len(PROMPTS)) for s in SEEDS
                    if (checkpoint, p, s) != FAILED_CELL]
        row = board[board["checkpoint"] == checkpoint].iloc[0]
        assert row["aesthetic_mean"] == pytest.approx(np.mean(expected))
        assert row["aesthetic_n"] == len(expected)
        assert row["aesthetic_ci_low"] <= row["aesthetic_mean"] <= row["aesthetic_ci_high"]
    assert board.loc[board["checkpoint"] == "gamma", "aesthetic_missing"].item() == 1
    assert board.loc[board["checkpoint"] == FAILED_CHECKPOINT, "failures"].item() == 1


def test_neighbour_significance_composite_and_baseline(rich_run) -> None:
    results, _, root = rich_run
    board = build_leaderboard(results, "quality")
    assert [row.checkpoint for row in board.rows] == [*CHECKPOINTS, FAILED_CHECKPOINT]
    assert [row.rank for row in board.rows] == [1, 2, 3, None]
    alpha, beta = board.rows[0], board.rows[1]
    # alpha − beta = +1.0 on every shared cell: significant over 8 prompts (Holm p = 3 × 2/256).
    test = alpha.scores["aesthetic"].vs_next
    assert test is not None and test.other == "beta" and test.better == "alpha" and test.significant
    assert test.mean_diff == pytest.approx(1.0) and test.p_holm == pytest.approx(3 * 2 / 256)
    # On artifacts (lower is better) alpha is also better: its difference is −1.0.
    assert alpha.scores["artifacts"].vs_next.mean_diff == pytest.approx(-1.0)
    assert alpha.scores["artifacts"].vs_next.better == "alpha"
    assert board.rows[-2].scores["aesthetic"].vs_next is None  # gamma vs the failed checkpoint: no pair

    # Good-image rate against the threshold, computed by hand.
    values = [score_of("beta", p, s, "aesthetic") for p in range(8) for s in SEEDS]
    assert beta.scores["aesthetic"].good_rate == pytest.approx(np.mean(np.array(values) >= 6.0))

    baseline = build_baseline_view(results, "quality")
    assert baseline is not None and baseline.baseline == "beta"
    cells = dict(baseline.rows)
    assert cells["alpha"]["aesthetic"].mean_diff == pytest.approx(1.0) and cells["alpha"]["aesthetic"].significant
    assert cells["gamma"]["aesthetic"].mean_diff == pytest.approx(-1.0)
    assert cells["alpha"]["aesthetic"].win_rate == 1.0

    html = (root / "report" / "index.html").read_text()
    _, rows = read_table(html, "leaderboard")
    assert "▲" in rows[0][4]  # alpha's aesthetic mean cell, after rank, name, composite, P(#1)
    _, base_rows = read_table(html, "leaderboard-baseline")
    assert [row[0] for row in base_rows] == list(CHECKPOINTS)
    assert base_rows[1][1] == "baseline"


def test_lora_heatmap_marks_notm_and_colours_within_columns(rich_run) -> None:
    results, _, root = rich_run
    (heatmap,) = case_heatmaps(results, ["gamma", "alpha", "beta"])
    assert heatmap.row_labels == ["gamma", "alpha", "beta"] and heatmap.column_labels == ["style0", "style1", "style2"]
    for i, checkpoint in enumerate(heatmap.row_labels):
        for case in range(3):
            expected = np.mean([lora_loss(checkpoint, case, s) for s in SEEDS])
            assert heatmap.cells[i][case].value == pytest.approx(expected)
    excluded = {(heatmap.row_labels[i], j) for i, row in enumerate(heatmap.cells) for j, c in enumerate(row)
                if c.excluded}
    assert excluded == {("beta", 1)}  # style1's showcase image was made with beta
    # Lower is better: per column the smallest loss is 1 (blue), the largest 0.
    column1 = {heatmap.row_labels[i]: heatmap.cells[i][1].heat for i in range(3)}
    losses = {c: np.mean([lora_loss(c, 1, s) for s in SEEDS]) for c in CHECKPOINTS}  # beta < alpha < gamma
    share = (losses["alpha"] - losses["beta"]) / (losses["gamma"] - losses["beta"])
    assert column1 == {"beta": 1.0, "alpha": pytest.approx(1 - share), "gamma": 0.0}
    html = (root / "report" / "index.html").read_text()
    assert html.count('class="heat excluded"') == 1
    # The NoTM leaderboard leaves beta's style1 images out.
    notm = build_leaderboard(results, "loras", notm=True)
    assert notm.variant == "NoTM"
    beta = next(r for r in notm.rows if r.checkpoint == "beta").scores["style-loss"]
    assert beta.n == 6 and beta.excluded == 3
    assert beta.mean == pytest.approx(np.mean([lora_loss("beta", c, s) for c in (0, 2) for s in SEEDS]))


def test_win_rate_matrix_is_complementary(rich_run) -> None:
    results, _, _ = rich_run
    matrix = win_rate_heatmap(results, "quality", "aesthetic", list(CHECKPOINTS))
    assert matrix is not None and matrix.column_labels == ["#1", "#2", "#3"]
    rates = [[c.value for c in row] for row in matrix.cells]
    assert rates[0][1] == 1.0 and rates[1][0] == 0.0  # alpha beats beta on every shared image
    for i in range(3):
        assert rates[i][i] is None
        for j in range(3):
            if i != j:
                assert rates[i][j] + rates[j][i] == pytest.approx(1.0)
    assert all(c.significant for row in matrix.cells for c in row if c.value is not None)


def test_every_section_degrades_when_its_part_is_absent(rich_run, tmp_path: Path) -> None:
    results, frame, root = rich_run
    bare = {key: results[key] for key in ("checkpoints",)}  # no analysis, scorers, failures, provenance, spec
    no_images = frame.assign(image=None)
    store = Store(root)
    try:
        page = render_report(bare, no_images, store, tmp_path / "report").read_text()
    finally:
        store.close()
    _, rows = read_table(page, "leaderboard")
    assert len(rows) == len(CHECKPOINTS) + 1
    assert "<img" not in page and "This run has no images" in page
    for absent in ("baseline-section", "matrices-section", "suites-section", "Where the variance comes from",
                   "How sure is the ranking"):
        assert absent not in page
    assert "Score distributions per checkpoint" in page  # from the score table, which is there
    # Without a failures list, the failed checkpoint is still reported from its own status.
    _, failures = read_table(page, "failures")
    assert [(row[0], row[1]) for row in failures] == [("checkpoint", FAILED_CHECKPOINT)]


def test_set_level_scores_have_their_own_table(rich_run) -> None:
    _, _, root = rich_run
    html = (root / "report" / "index.html").read_text()
    header, rows = read_table(html, "set-scores")
    assert SET_SCORER in header[2]
    assert [(row[0], row[1], float(row[2].split()[0])) for row in rows] == [
        (c, "quality", set_value(c)) for c in CHECKPOINTS]
    leaderboard_header, _ = read_table(html, "leaderboard")
    assert not any(SET_SCORER in h.split() for h in leaderboard_header)
