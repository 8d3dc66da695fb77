"""Fixtures shared by the scorer tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def prompted(tiny_scorer_models: dict[str, Path], tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """The tiny test images, each with its prompt (the test module's ``PROMPTS``, in order) in a .txt beside it."""
    folder = tmp_path / "images"
    folder.mkdir()
    prompts = request.module.PROMPTS
    for prompt, source in zip(prompts, sorted(tiny_scorer_models["images"].glob("*.png")), strict=True):
        (folder / source.name).write_bytes(source.read_bytes())
        (folder / source.with_suffix(".txt").name).write_text(prompt)
    return folder
