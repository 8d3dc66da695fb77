"""GhostReview's real per-image results, imported and analysed, checked against computations made directly
from the release's CSV files (plain csv/numpy, not the importer) and against the per-image z-scores the
release itself publishes (``dataresultbyPrompt``)."""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from ckptbench.analysis.analyze import analyze
from ckptbench.analysis.results import analysis_settings, build_results
from ckptbench.cli import app
from ckptbench.errors import DataImportError
from ckptbench.imports.ghostreview import import_results
from ckptbench.store import Store


@pytest.fixture(scope="module")
def release(shared_data: Path) -> Path:
    return shared_data / "ghostreview"


@pytest.fixture(scope="module")
def imported(release: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    root = tmp_path_factory.mktemp("ghostreview-store")
    store = Store(root)
    import_results(store, release, baseline="dreamshaper_7.safetensors", bootstrap=200)
    results, _ = build_results(store)
    store.close()
    return results, root


def _raw_quality(release: Path, column: str) -> dict[str, dict[int, dict[int, float]]]:
    """checkpoint → prompt → seed → value, read with the csv module straight from the release."""
    table: dict[str, dict[int, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for path in (release / "dataresult" / "ImageRatingDataFrame").glob("*.csv"):
        checkpoint, prompt = re.fullmatch(r"(.+)-(\d+)\.csv", path.name).groups()  # type: ignore[union-attr]
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                if row.get(column):
                    table[checkpoint][int(prompt)][int(row["ImageIndex"])] = float(row[column])
    return table


def test_quality_summaries_equal_hand_computations(imported: tuple[dict, Path], release: Path) -> None:
    results, _ = imported
    quality = results["analysis"]["suites"]["quality"]
    assert len(quality["checkpoints"]) == 8 and quality["cases"] == 30 and quality["seeds"] == list(range(1, 33))
    raw = _raw_quality(release, "LAIONScore")
    block = quality["scorers"]["laion-aesthetic-v2"]
    for checkpoint, prompts in raw.items():
        values = [v for seeds in prompts.values() for v in seeds.values()]
        assert len(values) == 960
        summary = block["summary"][checkpoint]
        assert summary["mean"] == pytest.approx(sum(values) / len(values), rel=1e-12)
        seed_std = np.mean([np.std(list(seeds.values()), ddof=1) for seeds in prompts.values()])
        assert summary["seed_std"] == pytest.approx(seed_std, rel=1e-12)
        assert summary["pooled_std"] == pytest.approx(np.std(values, ddof=1), rel=1e-12)
        assert summary["n"] == 960 and summary["missing"] == 0
        assert summary["ci95"][0] < summary["mean"] < summary["ci95"][1]
        # the per-checkpoint table of results.json says the same
        legacy = next(c for c in results["checkpoints"] if c["name"] == checkpoint)["scores"]["laion-aesthetic-v2"]
        assert legacy["mean"] == pytest.approx(summary["mean"]) and legacy["seed_std"] == pytest.approx(seed_std)


def _published_z(release: Path, folder: str, column: str, suffix: str) -> dict[str, float]:
    """Mean per checkpoint of the z-scores the release publishes per image in dataresultbyPrompt/."""
    sums: dict[str, list[float]] = defaultdict(list)
    for path in (release / "dataresultbyPrompt" / folder).glob("*.csv"):
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                sums[re.sub(suffix + r"\d+$", "", row["name"])].append(float(row[column]))
    return {checkpoint: float(np.mean(values)) for checkpoint, values in sums.items()}


def test_ghostreview_standard_reproduces_the_published_z_scores(imported: tuple[dict, Path], release: Path) -> None:
    results, _ = imported
    suites = results["analysis"]["suites"]
    published = _published_z(release, "ImageRatingDataFrame", "LAIONScore", "-")
    mine = suites["quality"]["scorers"]["laion-aesthetic-v2"]["summary"]
    for checkpoint, value in published.items():
        assert mine[checkpoint]["ghostreview_standard"] == pytest.approx(value, abs=1e-9)
    published_lora = _published_z(release, "ImageRatingDataFrameLoRA", "LoRALoss", "-LoRA-")
    lora = suites["lora"]["scorers"]["style-gram:ghostreview"]["summary"]
    for checkpoint, value in published_lora.items():
        assert lora[checkpoint]["ghostreview_standard"] == pytest.approx(value, abs=1e-9)


def test_pool_relative_standard_score_on_the_real_data(imported: tuple[dict, Path], release: Path) -> None:
    """The issue's example: without majicmixLux in the pool, AWPainting's LAION standard score is 0.584;
    with it, 0.627 — while its baseline-anchored score stays put."""
    results, root = imported
    store = Store(root)
    try:
        frame = store.frame(results["run"]["id"])
        settings = analysis_settings(results["spec"])
        without = analyze(frame[frame["checkpoint"] != "majicmixLux_v10.safetensors"], settings)
    finally:
        store.close()
    full = results["analysis"]["suites"]["quality"]["scorers"]["laion-aesthetic-v2"]
    reduced = without["suites"]["quality"]["scorers"]["laion-aesthetic-v2"]
    name = "AWPainting 1.1_v1.1.safetensors"
    assert reduced["summary"][name]["ghostreview_standard"] == pytest.approx(0.5835, abs=5e-4)
    assert full["summary"][name]["ghostreview_standard"] == pytest.approx(0.6268, abs=5e-4)
    assert reduced["baseline"]["scores"][name] == full["baseline"]["scores"][name]
    # The release's style z-scores were computed over 7 checkpoints (majicmixLux left out): ours match that pool.
    published_style = _published_z(release, "ImageRatingDataFrameStyle", "StyleLoss", "-Style-")
    style = without["suites"]["style"]["scorers"]["style-gram:ghostreview"]["summary"]
    for checkpoint, value in published_style.items():
        assert style[checkpoint]["ghostreview_standard"] == pytest.approx(value, abs=1e-9)


def test_notm_leaves_out_the_showcase_checkpoint(imported: tuple[dict, Path], release: Path) -> None:
    results, _ = imported
    notm = results["analysis"]["suites"]["lora"]["notm"]
    # LoRAUseModel.csv: LoRAs 1 and 2 were showcased on revAnimated_v122, LoRA 4 on majicmixRealistic_v6.
    assert notm["excluded"]["revAnimated_v122.safetensors"] == ["001", "002"]
    assert notm["excluded"]["majicmixRealistic_v6.safetensors"] == ["004"]
    assert notm["excluded"]["dreamshaper_7.safetensors"] == []
    # NoTM standard score = published per-image z-scores averaged without the excluded LoRAs.
    z: dict[str, list[float]] = defaultdict(list)
    for path in (release / "dataresultbyPrompt" / "ImageRatingDataFrameLoRA").glob("*.csv"):
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                checkpoint, lora = re.fullmatch(r"(.+)-LoRA-(\d+)", row["name"]).groups()  # type: ignore[union-attr]
                if f"{int(lora):03d}" not in notm["excluded"][checkpoint]:
                    z[checkpoint].append(float(row["LoRALoss"]))
    summary = notm["scorers"]["style-gram:ghostreview"]["summary"]
    for checkpoint, values in z.items():
        assert summary[checkpoint]["ghostreview_standard"] == pytest.approx(np.mean(values), abs=1e-9)
    revanimated = summary["revAnimated_v122.safetensors"]
    assert revanimated["excluded"] == 40 and revanimated["n"] == 280
    matrix = notm["matrices"]["style-gram:ghostreview"]
    row = matrix["rows"].index("revAnimated_v122.safetensors")
    assert matrix["excluded"][row][1] and not matrix["excluded"][row][0]


def test_every_section_is_present_and_missing_cells_are_reported(imported: tuple[dict, Path]) -> None:
    results, _ = imported
    quality = results["analysis"]["suites"]["quality"]
    for scorer in ("laion-aesthetic-v2", "clip-cosine", "kenjiqq-rating", "kenjiqq-artifacts"):
        block = quality["scorers"][scorer]
        assert len(block["ranks"]) == (8 if scorer in ("laion-aesthetic-v2", "clip-cosine") else 7)
        assert block["variance"]["components"] is not None
        assert all(p["p_cases_holm"] is not None for p in block["pairs"])
    assert len(quality["scorers"]["laion-aesthetic-v2"]["pairs"]) == 28
    assert not quality["scorers"]["kenjiqq-artifacts"]["higher_is_better"]
    lux = "majicmixLux_v10.safetensors"
    assert {(m["checkpoint"], m["scorer"], m["missing"]) for m in results["analysis"]["missing"]} == {
        (lux, "kenjiqq-rating", 960), (lux, "kenjiqq-artifacts", 960)}
    style = results["analysis"]["suites"]["style"]
    assert style["kind"] == "style" and style["case_labels"]["000"] == "Anime"
    assert len(style["matrices"]["style-gram:ghostreview"]["rows"]) == 8
    assert len(results["analysis"]["suites"]["lora"]["matrices"]["style-gram:ghostreview"]["columns"]) == 16


def test_report_command_rebuilds_results_from_an_imported_store(imported: tuple[dict, Path], tmp_path: Path) -> None:
    _, root = imported
    outcome = CliRunner().invoke(app, ["report", "--store", str(root), "--out", str(tmp_path)])
    assert outcome.exit_code == 0, outcome.output
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["benchmark"]["preset"] == "ghostreview"
    assert written["analysis"]["settings"]["baseline"] == "dreamshaper_7.safetensors"
    assert (tmp_path / "scores.csv").is_file()
    page = (tmp_path / "report" / "index.html").read_text()
    assert "Suite quality" in page and "GR standard (pool-relative)" in page and "NoTM" in page
    assert "− dreamshaper_7.safetensors" in page


def test_import_errors_are_one_clear_sentence(tmp_path: Path) -> None:
    broken = tmp_path / "release" / "dataresult" / "ImageRatingDataFrame"
    broken.mkdir(parents=True)
    (broken / "no-number.csv").write_text("ImageIndex,LAIONScore\n1,5.0\n")
    outcome = CliRunner().invoke(app, ["import", "ghostreview", str(tmp_path / "release"), "--store",
                                       str(tmp_path / "store")])
    assert outcome.exit_code == 2 and "no-number.csv" in outcome.output
    assert "<checkpoint>-<prompt>.csv" in outcome.output and "Traceback" not in outcome.output


def test_paired_p_values_on_the_real_data_equal_scipy_per_pair(imported: tuple[dict, Path], release: Path) -> None:
    """The release's fp16 clip-cosine has one tie between per-prompt differences; testing every pair in one
    scipy call switched all of them to the normal approximation. Each pair now equals scipy on that pair
    alone, computed here straight from the CSVs; AWPainting vs dreamshaper_7 (rows 1 and 2 of the LAION
    leaderboard) becomes significant after Holm's correction (0.058 before, 0.048 now)."""
    results, _ = imported
    raw = _raw_quality(release, "ClipScore")
    block = results["analysis"]["suites"]["quality"]["scorers"]["clip-cosine"]
    for pair in block["pairs"]:
        a, b = raw[pair["a"]], raw[pair["b"]]
        differences = [np.mean([a[p][s] - b[p][s] for s in a[p]]) for p in sorted(a)]
        assert pair["p_cases"] == pytest.approx(stats.wilcoxon(differences).pvalue, rel=1e-9)
    pair = next(p for p in block["pairs"] if (p["a"], p["b"]) == ("AWPainting 1.1_v1.1.safetensors",
                                                                   "dreamshaper_7.safetensors"))
    assert pair["p_cases"] == pytest.approx(0.005383, rel=1e-3)
    assert pair["p_cases_holm"] == pytest.approx(0.048445, rel=1e-3) and pair["p_cases_holm"] < 0.05


def test_verdict_and_rank_by_on_the_real_data(imported: tuple[dict, Path]) -> None:
    results, root = imported
    quality = results["analysis"]["suites"]["quality"]
    assert quality["ranking"]["by"] == "laion-aesthetic-v2"
    verdict = quality["verdict"]
    assert verdict["leader"] == "AWPainting 1.1_v1.1.safetensors" and verdict["warnings"] == []
    assert verdict["best_set"] == ["AWPainting 1.1_v1.1.safetensors", "dreamshaper_7.safetensors",
                                   "revAnimated_v122.safetensors"]
    # The style suite has 9 prompts: with 8 checkpoints (28 pairs) Holm can never reach 0.05.
    assert "With 9 prompts and the Holm correction over 28 tests" in results["analysis"]["suites"]["style"][
        "verdict"]["warnings"][0]
    store = Store(root, read_only=True)
    try:
        by_clip, _ = build_results(store, rank_by="clip-cosine")
    finally:
        store.close()
    ranked = by_clip["analysis"]["suites"]["quality"]
    assert ranked["ranking"]["by"] == "clip-cosine" and ranked["verdict"]["leader"] == "lyriel_v14.safetensors"
    assert by_clip["analysis"]["suites"]["style"]["ranking"]["by"] == "style-gram:ghostreview"


def test_import_rank_by_is_checked_and_recorded(release: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    try:
        with pytest.raises(DataImportError, match=r"--rank-by 'clip-cosin' is not a scorer of the release \(did you "
                                                  r"mean 'clip-cosine'\?\)"):
            import_results(store, release, rank_by="clip-cosin")
        run_id = import_results(store, release, rank_by="composite", bootstrap=100)
        assert store.run(run_id)["spec"]["analysis"]["rank_by"] == "composite"
    finally:
        store.close()
