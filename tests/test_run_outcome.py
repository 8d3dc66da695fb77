"""How a run ends (issue 17, points 1 and 3): statuses and exit codes a script can test, failures named by
checkpoint, case, prompt and seed everywhere, and reruns that say which failures they retry.

The runs are the cheapest that still fail for real: truncated checkpoint files (nothing loads), and an
SDXL LoRA named in an SD1.5 prompt (the image fails when the LoRA is applied, the other images are made).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ckptbench.cli import app
from ckptbench.outcome import CheckpointTally, checkpoint_status, run_status
from tests.conftest import write_spec_text
from tests.test_broken_inputs import GENERATION, _one_line, _scorers, _sdxl_lora


def _run(spec: Path, *args: str) -> Any:
    result = CliRunner().invoke(app, ["run", str(spec), *args])
    assert "Traceback" not in result.output, result.output
    return result


def test_statuses_follow_what_is_missing() -> None:
    def tally(planned: int, made: int, failures: int = 0, recorded: str = "ok") -> CheckpointTally:
        return CheckpointTally("x", recorded, planned, made, failures)

    assert checkpoint_status(tally(4, 4)) == "ok"
    assert checkpoint_status(tally(4, 3, 1)) == "partial"
    assert checkpoint_status(tally(4, 4, 1)) == "partial"  # a score is missing
    assert checkpoint_status(tally(4, 0, 4)) == "failed"  # every image failed: no image at all
    assert checkpoint_status(tally(0, 0, 1, "failed")) == "failed"  # could not be loaded
    assert checkpoint_status(tally(4, 0), imported=True) == "ok"  # scores imported without images
    assert run_status({"a": "ok", "b": "ok"}, 0) == "ok"
    assert run_status({"a": "ok", "b": "ok"}, 1) == "partial"  # a case was left out for every checkpoint
    assert run_status({"a": "ok", "b": "failed"}, 0) == "partial"
    assert run_status({"a": "failed", "b": "failed"}, 0) == "failed"
    assert run_status({"a": "ok"}, 0, interrupted=True) == "interrupted"


def test_a_run_where_every_checkpoint_fails_exits_non_zero(tmp_path: Path, tiny_models) -> None:
    blocks = []
    for name in ("cut-a", "cut-b"):
        (tmp_path / f"{name}.safetensors").write_bytes(tiny_models["single_a"].read_bytes()[:4000])
        blocks.append(f'[[checkpoints]]\nname = "{name}"\npath = "{tmp_path / name}.safetensors"\n')
    spec = tmp_path / "spec.toml"
    spec.write_text(write_spec_text(tiny_models, checkpoints="\n".join(blocks), generation=GENERATION,
                                    suites='[[suites]]\nname = "q"\nprompts = ["a red cube"]',
                                    scorers=_scorers(tiny_models)))
    result = _run(spec)
    assert result.exit_code == 4, result.output
    assert _one_line("failed: no checkpoint made an image; exit code 4") in _one_line(result.output)
    store = tmp_path / "store"
    results = json.loads((store / "results.json").read_text())
    assert results["run"]["status"] == "failed"
    assert [c["status"] for c in results["checkpoints"]] == ["failed", "failed"]
    with (store / "leaderboard.csv").open(newline="") as handle:
        assert {row["checkpoint"]: row["status"] for row in csv.DictReader(handle)} == {"cut-a": "failed",
                                                                                         "cut-b": "failed"}
    report = (store / "report" / "index.html").read_text()
    assert '<span class="status status-failed">failed</span>' in report
    checked = CliRunner().invoke(app, ["check", str(store)])
    assert checked.exit_code == 4 and "FAIL  status: run #1 failed (cut-a failed, cut-b failed)" in checked.output


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory, tiny_models) -> dict[str, Any]:
    """One good prompt and one whose SDXL LoRA cannot apply to SD1.5, two seeds each: two image failures."""
    folder = tmp_path_factory.mktemp("lora-failures")
    (folder / "loras").mkdir()
    _sdxl_lora(folder / "loras" / "xl_detail.safetensors")
    spec = folder / "spec.toml"
    spec.write_text(write_spec_text(
        tiny_models, checkpoints=f'[[checkpoints]]\nname = "good"\npath = "{tiny_models["folder_b"]}"',
        generation=GENERATION.replace("seeds = [1]", "seeds = [1, 2]") + f'\nlora_dirs = ["{folder / "loras"}"]',
        suites='[[suites]]\nname = "q"\nprompts = ["a red cube", "a blue cube <lora:xl_detail:0.7>"]',
        scorers=_scorers(tiny_models)))
    first = _run(spec)
    store = folder / "store"
    results = json.loads((store / "results.json").read_text())
    report = (store / "report" / "index.html").read_text()
    dry = _run(spec, "--dry-run")
    again = _run(spec)
    skipped = _run(spec, "--skip-failed")
    return {"first": first, "results": results, "report": report, "dry": dry, "again": again,
            "skipped": skipped, "skipped_results": json.loads((store / "results.json").read_text())}


def test_image_failures_are_named_by_checkpoint_case_prompt_and_seed(lora_run) -> None:
    first, results = lora_run["first"], lora_run["results"]
    assert first.exit_code == 3, first.output  # partial: two of four images failed
    failures = [f for f in results["failures"] if f["scope"] == "image"]
    assert sorted((f["checkpoint"], f["suite"], f["case_id"], f["prompt"], f["seed"]) for f in failures) == [
        ("good", "q", "001", "a blue cube <lora:xl_detail:0.7>", seed) for seed in (1, 2)]
    # The console names the first failure's cell (the message itself names the checkpoint) and counts the
    # others with the same reason.
    output = _one_line(first.output)
    assert _one_line("failed: case q/001 ('a blue cube <lora:xl_detail:0.7>'), seed 1: LoRA") in output
    assert _one_line("but checkpoint 'good' is a model with cross-attention width 32") in output
    assert _one_line("1 more image(s) of checkpoint 'good' for the same reason") in output
    # The report's failure table has the prompt and seed; the grid cell says why on hover.
    report = lora_run["report"]
    assert "<td class=\"text\">a blue cube &lt;lora:xl_detail:0.7&gt;</td><td>1</td>" in report
    assert report.count('class="missing" title="failed: ') == 2 and "was made for SDXL" in report


def test_a_rerun_says_which_failures_it_retries_and_skip_failed_leaves_them_out(lora_run) -> None:
    dry = _one_line(lora_run["dry"].output)
    assert lora_run["dry"].exit_code == 0 and _one_line(
        "2 images to generate (2 of them failed in an earlier run and are tried again") in dry
    again = lora_run["again"]
    assert again.exit_code == 3
    assert _one_line("images: 4 planned, 2 already in the store, 2 to generate (2 of them failed in run #1 and are "
                     "tried again; `--skip-failed` leaves such images out)") in _one_line(again.output)
    skipped = lora_run["skipped"]
    assert skipped.exit_code == 3, skipped.output
    assert _one_line("2 that failed in an earlier run are left out (--skip-failed)") in _one_line(skipped.output)
    assert _one_line("nothing new to generate or score, but not everything is there: 2 earlier failure(s) not "
                     "retried") in _one_line(skipped.output)
    failures = [f for f in lora_run["skipped_results"]["failures"] if f["scope"] == "image"]
    assert len(failures) == 2 and all(f["message"].startswith("not tried again (--skip-failed); it failed in run #2")
                                      and f["seed"] in (1, 2) for f in failures)


def _results(tmp_path: Path, status: str = "ok", means: dict[str, float] | None = None) -> Path:
    """A small results.json: checkpoints a and b with clip-score means, run status ``status``."""
    means = means or {"a": 24.0, "b": 21.5}
    statuses = {"a": "ok", "b": "ok" if status == "ok" else status}
    document = {"run": {"id": 7, "status": status},
                "checkpoints": [{"name": name, "status": statuses[name], "scores": {"clip-score": {"mean": value}}}
                                for name, value in means.items()],
                "failures": [] if status == "ok" else [
                    {"scope": "image", "checkpoint": "b", "suite": "q", "case_id": "003", "prompt": "a cat",
                     "seed": 4, "scorer": None, "message": "the decoded image is all black"}]}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize(("status", "args", "code", "says"), [
    ("ok", ["--min", "clip-score=21"], 0, "pass  clip-score ≥ 21: met by 2 checkpoint(s) (closest: b 21.5)"),
    ("ok", ["--min", "clip-score=22"], 5, "FAIL  clip-score ≥ 22: not met by b 21.5"),
    ("ok", ["--max", "clip-score=23", "--checkpoint", "b"], 0, "pass  clip-score ≤ 23: met by 1 checkpoint(s)"),
    ("ok", ["--min", "clip-score>=25"], 5, "not met by a 24, b 21.5"),
    ("partial", [], 3, "FAIL  status: run #7 partial (a ok, b partial; 1 failure(s); first failure: checkpoint "
                       "'b', case q/003 ('a cat'), seed 4: the decoded image is all black)"),
    ("partial", ["--allow-partial", "--min", "clip-score=20"], 0, "— allowed by --allow-partial"),
    ("partial", ["--allow-partial", "--min", "clip-score=22"], 5, "not met by b 21.5"),
    ("failed", ["--allow-partial"], 4, "FAIL  status: run #7 failed (a ok, b failed)"),
    ("ok", ["--min", "clip_score=1"], 2, "this run has no such scorer — did you mean 'clip-score'?"),
    ("ok", ["--min", "clip-score"], 2, "write SCORER=VALUE, e.g. clip-score=20"),
])
def test_check_gates_on_status_and_thresholds(tmp_path: Path, status: str, args: list[str], code: int,
                                               says: str) -> None:
    result = CliRunner().invoke(app, ["check", str(_results(tmp_path, status)), *args])
    assert result.exit_code == code, result.output
    assert _one_line(says) in _one_line(result.output), result.output
