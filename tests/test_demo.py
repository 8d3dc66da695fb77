from __future__ import annotations

import html
import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_end_to_end_and_rerun_is_a_no_op(tmp_path) -> None:
    command = [sys.executable, "-m", "ckptbench", "demo", "--out", str(tmp_path / "demo")]
    first = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert [c["name"] for c in results["checkpoints"]] == ["tiny-a", "tiny-b"]
    for checkpoint in results["checkpoints"]:
        assert checkpoint["status"] == "ok"
        for scorer in ("laion-aesthetic-v2", "clip-score"):
            summary = checkpoint["scores"][scorer]
            assert summary["n"] == 16
            assert all(isinstance(v, float) for v in (summary["mean"], *summary["ci95"]))
    assert (tmp_path / "demo" / "report" / "index.html").is_file()
    assert "RANDOM" in first.stderr
    # Four prompts: the per-prompt Wilcoxon test can never be significant, and every output says so.
    verdict = results["analysis"]["suites"]["quality"]["verdict"]
    assert verdict["prompts"] == 4 and "can never give p < 0.05" in verdict["warnings"][0]
    assert html.escape(verdict["warnings"][0]) in (tmp_path / "demo" / "report" / "index.html").read_text()
    assert "quality: warning: With 4 prompts" in first.stdout

    images = sorted((tmp_path / "demo" / "images").glob("*/*.png"))
    before = {p: p.stat().st_mtime_ns for p in images}
    again = subprocess.run([sys.executable, "-m", "ckptbench", "run", str(tmp_path / "demo" / "spec.toml")],
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "0 images to generate, 0 to score" in again.stderr
    assert {p: p.stat().st_mtime_ns for p in images} == before
