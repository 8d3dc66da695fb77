"""What the flow families refuse (hires fix, sizes not divisible by 16, embeddings, prompt editing) is found by
``validate`` and the dry run before any weights load, with the same sentence the run records for each image."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from ckptbench.cli import app


def flux_spec(write_spec, flow_models, generation: str, prompts: str = '["a red cube", "a blue sphere"]') -> Path:  # type: ignore[no-untyped-def]
    checkpoints = (f'[[checkpoints]]\nname = "flux"\npath = "{flow_models["flux_full"]}"\n'
                   f'config = "{flow_models["flux_config"]}"\nt5_tokenizer = "{flow_models["tokenizer"]}"\n')
    return write_spec(checkpoints=checkpoints, suites=f'[[suites]]\nname = "quality"\nprompts = {prompts}',
                      generation=f"steps = 2\nseeds = [1]\n{generation}")


def test_validate_names_the_flux_images_the_run_would_refuse(write_spec, flow_models) -> None:  # type: ignore[no-untyped-def]
    spec = flux_spec(write_spec, flow_models, "width = 72\nheight = 64",
                     prompts='["a red cube", "a [red:blue:0.5] sphere"]')
    result = CliRunner().invoke(app, ["validate", str(spec)])
    text = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "checkpoint 'flux': 2 of 2 image(s) would fail: flux needs a width and height divisible by 16, not 72×64" \
        in text
    assert "not valid" in text and "kind(s) of image would fail" in text


def test_prompt_editing_on_flux_is_found_before_the_run_and_fails_only_its_image(write_spec, flow_models) -> None:  # type: ignore[no-untyped-def]
    spec = flux_spec(write_spec, flow_models, "width = 64\nheight = 64",
                     prompts='["a red cube", "a [red:blue:0.5] sphere"]')
    checked = CliRunner().invoke(app, ["validate", str(spec)])
    assert checked.exit_code == 2
    assert "1 of 2 image(s) would fail: prompt editing or alternation" in " ".join(checked.output.split())
    dry = CliRunner().invoke(app, ["run", str(spec), "--dry-run"])
    assert "would fail" in dry.output and "prompt editing" in " ".join(dry.output.split())
    run = CliRunner().invoke(app, ["run", str(spec)])
    assert run.exit_code == 3, run.output  # partial: the other prompt's image is made
    results = json.loads((spec.parent / "store" / "results.json").read_text())
    failures = [f for f in results["failures"] if f["scope"] == "image"]
    assert len(failures) == 1 and failures[0]["prompt"] == "a [red:blue:0.5] sphere"
    assert "prompt editing or alternation" in failures[0]["message"]


def test_a_valid_flux_spec_stays_valid(write_spec, flow_models) -> None:  # type: ignore[no-untyped-def]
    spec = flux_spec(write_spec, flow_models, "width = 64\nheight = 64")
    result = CliRunner().invoke(app, ["validate", str(spec)])
    assert result.exit_code == 0, result.output
    assert "valid — 1 checkpoints × 2 cases × 1 seeds = 2 images" in " ".join(result.output.split())
