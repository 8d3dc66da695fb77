"""Scorers inside a benchmark run (set scores in results.json, resumability, FID refused up front) and the
``ckptbench scorers`` / ``ckptbench score`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from rich.console import Console
from typer.testing import CliRunner

from ckptbench.cli import app
from ckptbench.errors import SpecError
from ckptbench.runner import run_benchmark
from ckptbench.spec_load import load_spec
from tests.conftest import scorers_text


def _scorers(models: dict[str, Path], inception: Path, extra: tuple[str, ...] = ()) -> str:
    use = ["clip-score", "style-gram", "cmmd", "kid", *extra]
    return scorers_text(models, use, overrides={name: {"model": str(inception)} for name in ("kid", "fid")})


def test_run_records_set_scores_and_resumes(write_spec, tiny_scorer_models, fid_inception_file) -> None:
    spec = load_spec(write_spec(scorers=_scorers(tiny_scorer_models, fid_inception_file)))
    quiet = Console(quiet=True)
    first = run_benchmark(spec, console=quiet)
    results = json.loads(first.results_path.read_text())
    assert results["scorers"]["kid"]["level"] == "set" and results["scorers"]["clip-score"]["level"] == "image"
    for checkpoint in results["checkpoints"]:
        for scorer in ("cmmd", "kid"):
            entry = checkpoint["sets"][scorer]["quality"]
            assert entry["images"] == 4 and entry["references"] == 3
            assert entry["value"] is not None
        assert checkpoint["scores"]["style-gram"]["n"] == 4
    assert not results["failures"]
    second = run_benchmark(spec, console=quiet)
    assert second.generated == 0 and second.scored == 0
    assert second.cached_scores == first.scored
    html = (first.report_path).read_text()
    assert "Distribution scores" in html


def test_fid_below_2048_images_is_refused_before_generating(write_spec, tiny_scorer_models,
                                                            fid_inception_file) -> None:
    text = _scorers(tiny_scorer_models, fid_inception_file, extra=("fid",))
    spec = load_spec(write_spec(scorers=text))
    with pytest.raises(SpecError, match=r"2,048.*'kid'"):
        run_benchmark(spec, console=Console(quiet=True))
    assert not (spec.store_path / "images").exists()


def test_scorers_command_lists_every_scorer() -> None:
    result = CliRunner().invoke(app, ["scorers"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    for name in ("laion-aesthetic-v2", "kenjiqq-rating", "hps-v2.1", "pickscore", "style-gram:ghostreview", "fid"):
        assert name in result.output
    assert "lower" in result.output and "higher" in result.output


def test_score_command_reads_infotext_then_sidecar(tiny_scorer_models, tmp_path: Path) -> None:
    folder = tmp_path / "outputs"
    (folder / "sub").mkdir(parents=True)
    sources = sorted(tiny_scorer_models["images"].glob("*.png"))
    info = PngInfo()
    info.add_text("parameters", "a red fox, (masterpiece:1.2)\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, "
                                "CFG scale: 7, Seed: 1, Size: 40x48")
    Image.open(sources[0]).save(folder / "a.png", pnginfo=info)
    Image.open(sources[1]).save(folder / "sub" / "b.png")
    (folder / "sub" / "b.txt").write_text("a blue whale")
    Image.open(sources[2]).convert("RGB").save(folder / "c.jpg")  # no prompt at all
    spec = tmp_path / "spec.toml"
    spec.write_text(f'''
[scorers]
use = ["clip-score", "laion-aesthetic-v2"]
[scorers.clip-score]
model = "{tiny_scorer_models['clip']}"
[scorers.laion-aesthetic-v2]
model = "{tiny_scorer_models['clip']}"
head = "{tiny_scorer_models['head']}"
''')
    out = tmp_path / "scores.csv"
    result = CliRunner().invoke(app, ["score", str(folder), "--spec", str(spec), "--out", str(out)])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out, keep_default_na=False)
    assert {"image", "prompt", "scorer", "value"} <= set(frame.columns)
    prompts = dict(zip(frame["image"].map(lambda p: Path(p).name), frame["prompt"], strict=False))
    assert prompts == {"a.png": "a red fox, (masterpiece:1.2)", "b.png": "a blue whale", "c.jpg": ""}
    per_scorer = frame.groupby("scorer")["image"].count().to_dict()
    assert per_scorer == {"clip-score": 2, "laion-aesthetic-v2": 3}  # no prompt, no clip-score
    assert "no prompt" in result.output
