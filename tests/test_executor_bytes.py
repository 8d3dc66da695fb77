"""The same image key gives the same PNG bytes under the local and the Ray executor (on a CPU).

The demo spec runs twice as a user runs it, each a fresh ``ckptbench run`` process whose torch uses 2
intra-op threads (set in the process, not through ``OMP_NUM_THREADS``, which Ray workers would inherit):
once with ``--executor local``, once with ``--executor ray`` (a local Ray instance, whose workers run
torch on as many threads as their task's CPUs, 1 unless told otherwise; a different thread count changes
the last bits of most images). Every PNG must be byte-identical. See ``executors/reproducibility.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

TWO_THREAD_CKPTBENCH = "import sys, torch\ntorch.set_num_threads(2)\nfrom ckptbench.cli import app\napp()"


def _run(spec: Path, store: Path, executor: str) -> dict[str, bytes]:
    env = {key: value for key, value in os.environ.items() if key not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env |= {"HF_HUB_OFFLINE": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", TWO_THREAD_CKPTBENCH, "run", str(spec), "--store", str(store),
                           "--executor", executor], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{executor}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return {path.name: path.read_bytes() for path in store.glob("images/*/*.png")}


@pytest.mark.slow
def test_demo_spec_gives_byte_identical_pngs_under_local_and_ray(tmp_path: Path) -> None:
    """About 2-3 minutes on 2 CPU cores: two whole demo runs (32 images and their scores each), one on Ray."""
    pytest.importorskip("ray")
    from ckptbench.demo.command import build_demo_models, write_demo_spec

    build_demo_models(tmp_path / "models")
    spec = write_demo_spec(tmp_path)
    local = _run(spec, tmp_path / "local", "local")
    ray = _run(spec, tmp_path / "ray", "ray")
    assert len(local) == 32 and set(local) == set(ray)
    differing = sorted(name for name in local if local[name] != ray[name])
    assert not differing, f"{len(differing)} of {len(local)} PNGs differ between the executors: {differing[:3]}"
    for store in ("local", "ray"):
        provenance = json.loads((tmp_path / store / "results.json").read_text())["provenance"]["executor"]
        assert provenance["reproducibility"]["intra_op_threads"] == 2
        assert provenance["reproducibility"]["bit_identical"] is True
