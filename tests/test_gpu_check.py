"""``benchmarks/gpu_check.py --tiny``: the GPU check runs end to end on a CPU with tiny models.

It cannot say anything about speed here; it shows that the script a GPU machine will run works: every
generation and scoring measurement completes through ckptbench and through the bare loop, and the table
and its JSON come out with one row per measurement.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT


@pytest.mark.slow
def test_gpu_check_runs_with_tiny_models_on_the_cpu(tmp_path: Path) -> None:
    """About 1.5 minutes on 2 CPU cores (two tiny pipelines with and without compile, two scorer sets)."""
    out = tmp_path / "rows.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CKPTBENCH_CACHE_DIR": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "gpu_check.py"), "--tiny", "--json",
                           str(out)], env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    rows = json.loads(out.read_text())
    names = [row["what"] for row in rows]
    assert names == ["sd15 64² 4 steps fp32", "sd15 64² 4 steps fp32 compiled", "sdxl 64² 4 steps fp32",
                     "sdxl 64² 4 steps fp32 compiled", "ViT-L/14 (clip-score + laion-aesthetic-v2)",
                     "ViT-H/14 (hps-v2)"]
    for row in rows:
        assert row["ours_per_s"] > 0 and row["bare_per_s"] > 0 and math.isfinite(row["ratio"])
        assert row["ours_peak_gb"] is None  # no GPU memory to report on a CPU
    assert "| measurement" in done.stdout and done.stdout.count("\n| ") == len(rows) + 1
