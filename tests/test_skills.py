"""Scores per skill: the breakdown by hand, the built-in compositional suite, PartiPrompts' challenges as
skills, and a run with VQAScore on the compositional suite whose results.json reports each skill."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from ckptbench.analysis.skills import skill_breakdown
from ckptbench.runner import run_benchmark
from ckptbench.spec_load import load_spec
from ckptbench.suites.load import builtin_suite_path
from ckptbench.suites.toml_suite import load_suite_file

QUIET = Console(file=open("/dev/null", "w"))  # noqa: SIM115 - lives for the test session
SKILLS = {"attribute", "scene", "spatial", "action", "part", "counting", "comparison", "differentiation",
          "negation", "universal"}


def test_breakdown_by_hand() -> None:
    rows = [  # checkpoint, case, seed, value
        ("a", "c1", 1, 1.0), ("a", "c1", 2, 3.0), ("a", "c2", 1, 5.0), ("a", "c3", 1, 7.0),
        ("a", "c3", 2, float("nan")), ("b", "c1", 1, 0.0), ("b", "c2", 1, 1.0), ("b", "c2", 2, 2.0),
        ("b", "c3", 1, 4.0)]
    frame = pd.DataFrame([{"checkpoint": c, "suite": "s", "case_id": case, "seed": seed, "scorer": "vqascore",
                           "value": value} for c, case, seed, value in rows])
    cases = {("s", "c1"): {"tags": ["counting", "spatial"]}, ("s", "c2"): {"tags": ["counting"]},
             ("s", "c3"): {"tags": []}}
    result = skill_breakdown(frame, cases)["s"]["vqascore"]
    assert set(result) == {"counting", "spatial"}  # the untagged case counts nowhere
    # a: case means c1 = 2, c2 = 5 → counting 3.5 over 2 cases, 3 images; spatial = c1 only.
    assert result["counting"]["a"] == {"mean": 3.5, "cases": 2, "images": 3}
    assert result["spatial"]["a"] == {"mean": 2.0, "cases": 1, "images": 2}
    # b: c1 = 0, c2 = 1.5 → counting 0.75 (each case weighs the same, not each image).
    assert result["counting"]["b"] == {"mean": 0.75, "cases": 2, "images": 3}
    assert skill_breakdown(frame, {key: {"tags": []} for key in cases}) == {}


def test_builtin_compositional_suite_covers_every_skill() -> None:
    suite = load_suite_file(builtin_suite_path("compositional"), "compositional")[0]
    assert len(suite) == 40
    counts = {skill: sum(skill in case.tags for case in suite) for skill in SKILLS}
    assert all(case.tags and set(case.tags) <= SKILLS for case in suite)
    assert min(counts.values()) >= 4, counts


def test_partiprompts_challenges_are_skills(shared_data: Path) -> None:
    from ckptbench.suites.parti import load_parti

    cases = load_parti(shared_data / "prompts" / "PartiPrompts.tsv", "parti", challenge=["Quantity", "Perspective"])
    frame = pd.DataFrame([{"checkpoint": "a", "suite": "parti", "case_id": case.case_id, "seed": 1,
                           "scorer": "vqascore", "value": float(index)} for index, case in enumerate(cases)])
    result = skill_breakdown(frame, {("parti", case.case_id): case.metadata() for case in cases})["parti"]["vqascore"]
    assert {"Quantity", "Perspective"} <= set(result)
    quantity = [index for index, case in enumerate(cases) if "Quantity" in case.tags]
    assert result["Quantity"]["a"] == {"mean": pytest.approx(sum(quantity) / len(quantity)), "cases": len(quantity),
                                       "images": len(quantity)}


def test_a_run_reports_vqascore_per_skill(tmp_path: Path, write_spec, tiny_scorer_models) -> None:
    from tests.conftest import scorers_text

    spec = write_spec(suites='[[suites]]\nbuiltin = "compositional"\nlimit = 3',
                      generation='sampler = "Euler"\nsteps = 2\nwidth = 64\nheight = 64\nseeds = [1]\nbatch_size = 4',
                      scorers=scorers_text(tiny_scorer_models, ["vqascore", "clip-score"]))
    outcome = run_benchmark(load_spec(spec), console=QUIET)
    assert outcome.failed_checkpoints == []
    results = json.loads((spec.parent / "store" / "results.json").read_text())
    skills = results["skills"]["compositional"]
    first_three = load_suite_file(builtin_suite_path("compositional"), "compositional")[0][:3]
    assert set(skills["vqascore"]) == {tag for case in first_three for tag in case.tags}
    for tag, per_checkpoint in skills["vqascore"].items():
        assert set(per_checkpoint) == {"a", "b"}
        assert all(0 < entry["mean"] < 1 and entry["cases"] == sum(tag in c.tags for c in first_three)
                   for entry in per_checkpoint.values())
