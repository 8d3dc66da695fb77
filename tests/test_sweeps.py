"""Sweeps: [generation] settings given as lists become axes; images keep the keys a plain spec gives them;
results.json and the report show each axis as a factor (checkpoint × axis value tables)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from ckptbench.analysis.suite import AnalysisSettings
from ckptbench.analysis.sweep import pooled_over_variants, sweep_results
from ckptbench.errors import CkptbenchError, SpecError
from ckptbench.generate.embeddings import EmbeddingLibrary
from ckptbench.plan import plan_images
from ckptbench.runner import run_benchmark
from ckptbench.spec_load import load_spec
from ckptbench.store import Store
from ckptbench.suites.case import Case
from ckptbench.suites.load import checked_suites
from ckptbench.sweep import SweepAxis, variant_case, variants
from tests.html_tables import read_table

QUIET = Console(file=open("/dev/null", "w"))  # noqa: SIM115 - lives for the test session
BASE = 'sampler = "Euler"\nsteps = 4\nwidth = 64\nheight = 64\nseeds = [1]\nbatch_size = 4\n'


# --- the spec -----------------------------------------------------------------------------------------

def test_lists_become_axes_in_the_order_written_and_settings_keep_the_first_value(write_spec) -> None:
    spec = load_spec(write_spec(generation=BASE.replace('sampler = "Euler"\nsteps = 4\n', "") + 'steps = [4, 6]\n'
                                'prompt_sr = ["red", "green"]\nsampler = ["Euler", "Euler a"]\ncfg = 6\n'
                                "[generation.hires]\nscale = 1.5\nenabled = [false, true]\n"))
    generation = spec.generation
    assert [(a.name, a.values) for a in generation.sweep] == [
        ("steps", (4, 6)), ("prompt_sr", ("red", "green")), ("sampler", ("Euler", "Euler a")),
        ("hires", (False, True))]
    assert (generation.steps, generation.sampler, generation.cfg) == (4, "Euler", 6.0)
    assert generation.hires is not None and generation.hires.scale == 1.5
    found = variants(generation.sweep)
    assert len(found) == 16 and found[0].id == "steps=4, prompt_sr=red, sampler=Euler, hires=off"
    assert found[-1].labels() == {"steps": "6", "prompt_sr": "green", "sampler": "Euler a", "hires": "on"}
    # The effective spec a run records validates back to the same sweep.
    again = type(spec).model_validate(spec.model_dump(mode="json", by_alias=True))
    assert again.generation.sweep == generation.sweep and again.generation.steps == 4


@pytest.mark.parametrize(("line", "message"), [
    ("cfg = [5, 70]", "generation: cfg[1] = 70: should be less than or equal to 50"),
    ("clip_skip = []", "clip_skip is an empty list"),
    ("cfg = [7, 7.0]", "cfg repeats 7.0"),
    ('prompt_sr = "red"', "prompt_sr must be a list of at least two texts"),
    ('prompt_sr = ["", "x"]', "the first entry is the text searched for"),
    ("clip_skip = [1, 'two']", "clip_skip[1] = 'two': should be a valid integer"),
])
def test_bad_sweep_values_are_one_sentence_naming_the_setting(write_spec, line: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(write_spec(generation=BASE + line))
    assert message in str(caught.value) and str(caught.value).count("\n") == 0


def test_prompt_sr_text_must_occur_in_some_prompt_and_every_sampler_is_checked(write_spec) -> None:
    with pytest.raises(SpecError, match=r"'purple' .* is in no prompt or negative prompt"):
        checked_suites(load_spec(write_spec(generation=BASE + 'prompt_sr = ["purple", "red"]')))
    with pytest.raises(CkptbenchError, match="Eulr"):
        checked_suites(load_spec(write_spec(generation=BASE.replace('sampler = "Euler"\n', "")
                                            + 'sampler = ["Euler", "Eulr"]')))


def test_validate_counts_the_variants(write_spec) -> None:
    from typer.testing import CliRunner

    from ckptbench.cli import app

    spec = write_spec(generation=BASE + "cfg = [5, 7, 9]")
    result = CliRunner().invoke(app, ["validate", str(spec)])
    text = " ".join(result.output.split())
    assert result.exit_code == 0 and "2 cases × 1 seeds × 3 sweep variants (cfg) = 12 images" in text


def test_prompt_sr_replaces_every_occurrence_in_prompt_and_effective_negative() -> None:
    axis = SweepAxis(name="prompt_sr", values=("red", "blue"))
    first, second = variants((axis,))
    case = Case("q", "000", "a red cube on a red table")
    assert variant_case(case, first, "red blur") is case  # the first value is the prompt as written
    changed = variant_case(case, second, "red blur")
    assert (changed.prompt, changed.negative_prompt) == ("a blue cube on a blue table", "blue blur")
    untouched = variant_case(case, second, "lowres")
    assert untouched.negative_prompt is None  # the default negative applies, unchanged


# --- planning: a variant's image has the key a plain spec gives it --------------------------------------

def _planned(spec_path: Path, store: Store) -> list[tuple[str, str, str, str]]:
    spec = load_spec(spec_path)
    plan = plan_images(spec, checked_suites(spec), store, "fp32", EmbeddingLibrary((), False, store), QUIET)
    return [(item.checkpoint, item.variant, item.prompt, item.image_key) for item in plan.items]


def test_every_variant_keys_its_images_as_the_plain_spec_of_its_values(write_spec, tmp_path: Path) -> None:
    store = Store(tmp_path / "plan-store")
    sweep = _planned(write_spec("sweep.toml", generation=BASE + 'cfg = [5, 7]\nprompt_sr = ["red", "green"]\n'
                                "clip_skip = [1, 2]\n[generation.hires]\nenabled = [false, true]"), store)
    assert len(sweep) == 2 * 2 * 16  # checkpoints × prompts × variants (one seed)
    # "a blue sphere" has no "red": its two prompt S/R values make the same image (one key, made once).
    assert len({key for *_, key in sweep}) == 2 * (16 + 8)
    plain = _planned(write_spec("plain.toml", generation=BASE + "cfg = 7\nclip_skip = 2\n[generation.hires]",
                                suites='[[suites]]\nname = "quality"\nprompts = ["a green cube", "a blue sphere"]'),
                     store)
    wanted = "cfg=7, prompt_sr=green, clip_skip=2, hires=on"
    from_sweep = [(checkpoint, prompt, key) for checkpoint, variant, prompt, key in sweep if variant == wanted]
    assert from_sweep == [(checkpoint, prompt, key) for checkpoint, _, prompt, key in plain]
    assert [prompt for _, prompt, _ in from_sweep] == ["a green cube", "a blue sphere"] * 2
    store.close()


def test_lora_weight_sweep_changes_the_weight_of_loras_named_without_one(write_spec, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    loras = tmp_path / "loras"
    loras.mkdir()
    # Planning resolves LoRA files by name and hashes them; loading them is the generator's job.
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(1, 1)}, str(loras / "ink.safetensors"))
    store = Store(tmp_path / "lora-store")
    spec = load_spec(write_spec(generation=BASE + f'lora_dirs = ["{loras}"]\ndefault_lora_weight = [0.5, 1.0]',
                                suites='[[suites]]\nname = "q"\nprompts = ["a cube <lora:ink>", "<lora:ink:0.3> x"]'))
    plan = plan_images(spec, checked_suites(spec), store, "fp32", EmbeddingLibrary((), False, store), QUIET)
    weights = {(item.variant, item.case_id): job.loras[0].weight
               for item, job in zip(plan.items, [j for jobs in plan.jobs.values() for j in jobs], strict=True)}
    assert weights == {("default_lora_weight=0.5", "000"): 0.5, ("default_lora_weight=1", "000"): 1.0,
                       ("default_lora_weight=0.5", "001"): 0.3, ("default_lora_weight=1", "001"): 0.3}
    store.close()


# --- the analysis on known values ----------------------------------------------------------------------

def _frame() -> pd.DataFrame:
    """2 checkpoints × 3 cases × 2 seeds × cfg {5, 7}: value = base + case + 0.1·seed (+ 1 at cfg 7 for 'a')."""
    rows = []
    for checkpoint, base in (("a", 5.0), ("b", 4.0)):
        for case in range(3):
            for seed in (1, 2):
                for cfg in (5, 7):
                    value = base + case + 0.1 * seed + (1.0 if cfg == 7 and checkpoint == "a" else 0.0)
                    rows.append({"checkpoint": checkpoint, "suite": "q", "case_id": f"{case:03d}", "prompt": "p",
                                 "seed": seed, "scorer": "s", "value": value, "image_key": f"{checkpoint}{case}{seed}",
                                 "image": None, "variant": f"cfg={cfg}"})
    return pd.DataFrame(rows)


def test_pooled_cells_average_the_variants_and_a_missing_variant_drops_the_cell() -> None:
    frame = _frame()
    frame.loc[(frame.checkpoint == "b") & (frame.case_id == "001") & (frame.seed == 2)
              & (frame.variant == "cfg=7"), "value"] = np.nan
    pooled = pooled_over_variants(frame)
    assert len(pooled) == 2 * 3 * 2
    cell = pooled[(pooled.checkpoint == "a") & (pooled.case_id == "002") & (pooled.seed == 1)]
    assert cell["value"].item() == pytest.approx(5 + 2 + 0.1 + 0.5)
    dropped = pooled[(pooled.checkpoint == "b") & (pooled.case_id == "001") & (pooled.seed == 2)]
    assert dropped["value"].isna().item()
    plain = frame[frame.variant == "cfg=5"].assign(variant="")
    assert pooled_over_variants(plain) is plain  # no sweep: the frame as it is


def test_axis_tables_and_effects_match_hand_computed_values() -> None:
    axes = (SweepAxis(name="cfg", values=(5.0, 7.0)),)
    result = sweep_results(_frame(), axes, AnalysisSettings(resamples=200), {"s": True}, ["a", "b"])
    assert result["axes"] == [{"name": "cfg", "title": "CFG scale", "values": [5.0, 7.0], "labels": ["5", "7"]}]
    table = result["suites"]["q"]["cfg"]["s"]
    expected = {("a", "5"): 5 + 1 + 0.15, ("a", "7"): 6 + 1 + 0.15, ("b", "5"): 4 + 1 + 0.15, ("b", "7"): 4 + 1.15}
    for (checkpoint, label), mean in expected.items():
        entry = table["by_value"][label][checkpoint]
        assert entry["mean"] == pytest.approx(mean) and entry["n"] == 6 and entry["missing"] == 0
        assert entry["ci95"][0] <= mean <= entry["ci95"][1]
        assert entry["seed_std"] == pytest.approx(np.std([0.1, 0.2], ddof=1))
    assert table["by_value"]["7"]["a"]["rank"] == 1 and table["by_value"]["7"]["b"]["rank"] == 2
    assert table["best_value"] == {"a": "7", "b": "5"}  # b: a tie, the first value
    effect_a, effect_b = table["effects"]["a"]["7"], table["effects"]["b"]["7"]
    # Every cell of 'a' gains exactly 1: every resample's mean difference is 1, the interval is [1, 1].
    assert effect_a["mean_diff"] == pytest.approx(1.0) and effect_a["ci95"] == pytest.approx([1.0, 1.0])
    assert effect_a["win_rate"] == 1.0 and effect_a["interval_excludes_0"]
    assert effect_b["mean_diff"] == 0.0 and effect_b["p_cases"] == 1.0 and not effect_b["interval_excludes_0"]


# --- a real run: one axis in results.json and the report; a plain spec reuses the sweep's images --------

@pytest.fixture(scope="module")
def cfg_sweep(tmp_path_factory, tiny_models) -> dict:
    from tests.conftest import write_spec_text

    folder = tmp_path_factory.mktemp("sweep-run")
    two_seeds = BASE.replace("seeds = [1]", "seeds = [1, 2]")
    (folder / "sweep.toml").write_text(write_spec_text(tiny_models, generation=two_seeds + "cfg = [5, 7]"))
    swept = run_benchmark(load_spec(folder / "sweep.toml"), console=QUIET)
    results = json.loads((folder / "store" / "results.json").read_text())
    report = (folder / "store" / "report" / "index.html").read_text()
    scores = pd.read_csv(folder / "store" / "scores.csv", keep_default_na=False)
    (folder / "plain.toml").write_text(write_spec_text(tiny_models, generation=two_seeds + "cfg = 7"))
    plain = run_benchmark(load_spec(folder / "plain.toml"), console=QUIET)
    plain_scores = pd.read_csv(folder / "store" / "scores.csv", keep_default_na=False)
    return {"swept": swept, "plain": plain, "results": results, "report": report, "scores": scores,
            "plain_scores": plain_scores}


def test_a_two_value_cfg_sweep_is_one_axis_in_results_json(cfg_sweep) -> None:
    results, scores = cfg_sweep["results"], cfg_sweep["scores"]
    assert cfg_sweep["swept"].generated == 2 * 2 * 2 * 2  # checkpoints × prompts × seeds × cfg values
    sweep = results["sweep"]
    assert [(a["name"], a["values"]) for a in sweep["axes"]] == [("cfg", [5.0, 7.0])]
    assert [v["id"] for v in sweep["variants"]] == ["cfg=5", "cfg=7"]
    assert set(scores["variant"]) == {"cfg=5", "cfg=7"}
    for scorer in ("laion-aesthetic-v2", "clip-score"):
        table = sweep["suites"]["quality"]["cfg"][scorer]
        for label in ("5", "7"):
            for checkpoint in ("a", "b"):
                mine = scores[(scores.variant == f"cfg={label}") & (scores.checkpoint == checkpoint)
                              & (scores.scorer == scorer)]
                assert table["by_value"][label][checkpoint]["mean"] == pytest.approx(mine["value"].mean())
        # The leaderboard's statistics pool the variants: each checkpoint's mean is the mean over both.
        for entry in results["checkpoints"]:
            mine = scores[(scores.checkpoint == entry["name"]) & (scores.scorer == scorer)]
            assert entry["scores"][scorer]["mean"] == pytest.approx(mine["value"].mean())
            assert entry["scores"][scorer]["n"] == 4  # prompt × seed cells, each the mean of two images


def test_the_report_shows_the_axis_as_checkpoint_by_value_tables(cfg_sweep) -> None:
    report = cfg_sweep["report"]
    assert 'id="sweep-section"' in report and "Sweep: CFG scale (5, 7)" in report
    section = report[report.index('id="sweep-section"'):]
    first_table = section.replace('<table class="matrix sweep-matrix"', '<table id="sweep-table" class="x"', 1)
    header, rows = read_table(first_table, "sweep-table")
    assert "quality · CFG scale · laion-aesthetic-v2 ↑" in section  # the first table's title
    assert header == ["checkpoint", "5", "7"] and sorted(row[0] for row in rows) == ["a", "b"]
    table = cfg_sweep["results"]["sweep"]["suites"]["quality"]["cfg"]["laion-aesthetic-v2"]
    for name, *cells in rows:
        assert cells == [f"{table['by_value'][label][name]['mean']:.4g}" for label in ("5", "7")]
    assert "a · cfg=5" in report and "b · cfg=7" in report  # seed grid rows per checkpoint and variant


def test_a_plain_spec_with_one_of_the_values_reuses_the_sweeps_images(cfg_sweep) -> None:
    plain = cfg_sweep["plain"]
    assert (plain.generated, plain.cached_images) == (0, 8)
    swept, again = cfg_sweep["scores"], cfg_sweep["plain_scores"]
    assert set(again["variant"]) == {""}
    assert sorted(again["image_key"]) == sorted(swept[swept.variant == "cfg=7"]["image_key"])


def test_a_store_made_before_sweeps_reads_and_upgrades_with_empty_variants(tmp_path: Path) -> None:
    import sqlite3

    from ckptbench.store import RunItem
    from ckptbench.store_schema import SCHEMA as _SCHEMA

    old_schema = _SCHEMA.replace("variant TEXT NOT NULL DEFAULT '', PRIMARY KEY (run_id, item)",
                                 "PRIMARY KEY (run_id, item)")
    assert old_schema != _SCHEMA
    database = sqlite3.connect(tmp_path / "ckptbench.sqlite")
    database.executescript(old_schema)
    database.execute("INSERT INTO meta VALUES ('schema', '1')")
    database.execute("INSERT INTO runs VALUES (1, 0, 1, 'ok', '{}', '{}')")
    database.execute("INSERT INTO run_items VALUES (1, 0, 'a', 'q', '000', 'p', 1, 'k')")
    database.commit()
    database.close()
    reader = Store(tmp_path, read_only=True)
    assert reader.run_items(1)["variant"].tolist() == [""]
    reader.close()
    writer = Store(tmp_path)  # a run opens it writable: the column is added, old rows get ''
    writer.put_run_items(2, [RunItem("a", "q", "000", "p", 1, "k", "cfg=7")])
    assert writer.run_items(1)["variant"].tolist() == [""] and writer.run_items(2)["variant"].tolist() == ["cfg=7"]
    writer.close()
