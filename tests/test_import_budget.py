"""Each command imports only what it uses: a heavy library a command does not need costs seconds at every call.

Every command runs in a fresh interpreter (the way a user runs it) and reports ``sys.modules`` after its
entry point returns; the test fails, naming the module, when a command imported a library it must not.
Start-up times themselves are measured by ``benchmarks/startup.py``, not here.

transformers 5 imports torchvision (and with it ``torchvision.models``) whenever it builds an image
processor, so scoring on a transformers CLIP cannot avoid torchvision; what ``score`` must not import is
ckptbench's own torchvision scorers (VGG19, Inception), open_clip, diffusers, pandas or Ray.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Nothing a command that reads text and prints text needs.
HEAVY = ("torch", "diffusers", "transformers", "torchvision", "open_clip", "pandas", "pyarrow", "scipy", "ray",
         "cleanfid", "safetensors")
# Generation, Ray, tables and the scorers a hf-clip spec does not name.
NOT_FOR_SCORING = ("diffusers", "open_clip", "pandas", "pyarrow", "ray", "cleanfid", "ckptbench.metrics.vgg",
                   "ckptbench.metrics.inception", "ckptbench.metrics.open_clip_backbone",
                   "ckptbench.generate.diffusers_backend", "ckptbench.runner", "ckptbench.report.outputs")

PROBE = """
import json, sys
from ckptbench.cli import app
try:
    code = app(sys.argv[1:], standalone_mode=False)
except SystemExit as stop:
    code = stop.code
print("\\nMODULES " + json.dumps({"code": code or 0, "modules": sorted(sys.modules)}))
"""


def imported_by(*args: str, cwd: Path) -> set[str]:
    """The modules loaded once ``ckptbench ARGS`` has run in a fresh interpreter (it must succeed)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.startswith("MODULES ")]
    assert lines, f"ckptbench {' '.join(args)} did not finish:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    report = json.loads(lines[-1][len("MODULES "):])
    assert report["code"] == 0, f"ckptbench {' '.join(args)} exited with {report['code']}:\n{done.stderr[-3000:]}"
    return set(report["modules"])


def assert_not_imported(modules: set[str], forbidden: tuple[str, ...], command: str) -> None:
    loaded = sorted(name for name in forbidden if name in modules)
    assert not loaded, f"`ckptbench {command}` imported {', '.join(loaded)}, which it does not use"


@pytest.mark.parametrize("command", [["--help"], ["scorers"]])
def test_listing_commands_import_no_heavy_library(command: list[str], tmp_path: Path) -> None:
    modules = imported_by(*command, cwd=tmp_path)
    assert_not_imported(modules, HEAVY, " ".join(command))
    # The scorer table comes from the registry's entries, without importing any scorer module.
    assert not any(name.startswith("ckptbench.metrics.") and name != "ckptbench.metrics.registry"
                   for name in modules)


@pytest.mark.slow
def test_validate_imports_no_generator(write_spec) -> None:
    """About 10 s: ``validate`` makes the run's checks that need no weights (issue 17): like a dry run it
    resolves the scorers' weights and reads checkpoint headers, but it loads no pipeline and no scorer model."""
    spec = write_spec()
    assert_not_imported(imported_by("validate", str(spec), cwd=spec.parent),
                        ("diffusers", "open_clip", "ray", "cleanfid", "ckptbench.generate.diffusers_backend"),
                        "validate")


def test_import_infotext_imports_no_heavy_library(tmp_path: Path) -> None:
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", "a red cube\nSteps: 4, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 8x8")
    Image.new("RGB", (8, 8)).save(tmp_path / "one.png", pnginfo=info)
    modules = imported_by("import", "infotext", str(tmp_path / "one.png"), "--out", str(tmp_path / "s.toml"),
                          cwd=tmp_path)
    assert_not_imported(modules, HEAVY, "import infotext")


def test_score_imports_only_its_scorers(tiny_scorer_models: dict[str, Path], tmp_path: Path) -> None:
    from tests.conftest import scorers_text

    spec = tmp_path / "scorers.toml"
    spec.write_text(scorers_text(tiny_scorer_models, ["laion-aesthetic-v2", "clip-score"]))
    modules = imported_by("score", str(tiny_scorer_models["images"]), "--spec", str(spec), "--out",
                          str(tmp_path / "scores.csv"), cwd=tmp_path)
    assert_not_imported(modules, NOT_FOR_SCORING, "score")
    assert "ckptbench.metrics.hf_clip" in modules  # it did score


@pytest.mark.slow
def test_inspect_and_report_import_no_generation_or_scoring_library(tiny_models: dict[str, Path],
                                                                    tmp_path: Path) -> None:
    """About 10 s: ``inspect`` reads tensors (torch) but builds no pipeline; ``report`` reads the store."""
    modules = imported_by("inspect", str(tiny_models["single_a"]), cwd=tmp_path)
    assert_not_imported(modules, ("diffusers", "transformers", "open_clip", "torchvision", "pandas", "ray"),
                        "inspect")
    from tests.report_store import build_report_store

    build_report_store(tmp_path / "store").close()
    modules = imported_by("report", "--store", str(tmp_path / "store"), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert_not_imported(modules, ("torch", "diffusers", "transformers", "open_clip", "torchvision", "ray"), "report")


@pytest.mark.slow
def test_dry_run_imports_no_generator(write_spec) -> None:
    """About 10 s: a dry run resolves scorers (their weights' digests) but loads no pipeline."""
    spec = write_spec()
    modules = imported_by("run", str(spec), "--dry-run", cwd=spec.parent)
    assert_not_imported(modules, ("diffusers", "open_clip", "ray", "ckptbench.generate.diffusers_backend"),
                        "run --dry-run")


RUN_PROBE = """
import json, sys

WATCHED = ("pandas", "pyarrow")
loaded = {}


class Witness:
    \"\"\"Notes which watched libraries are loaded when the generator, then the output writer, is first imported.\"\"\"

    def find_spec(self, name, path=None, target=None):
        if name in ("ckptbench.generate.diffusers_backend", "ckptbench.report.outputs") and name not in loaded:
            loaded[name] = [library for library in WATCHED if library in sys.modules]
            loaded[name + " after generation"] = "ckptbench.generate.diffusers_backend" in sys.modules
        return None


sys.meta_path.insert(0, Witness())
from ckptbench.cli import app
try:
    app(sys.argv[1:], standalone_mode=False)
except SystemExit:
    pass
print("\\nLOADED " + json.dumps(loaded))
"""


@pytest.mark.slow
def test_a_run_imports_table_libraries_only_to_write_its_outputs(write_spec) -> None:
    """About 20 s: a one-image run; pandas and pyarrow are first needed by its outputs (jinja2 and scipy come
    with transformers, which generation needs)."""
    spec = write_spec(generation='sampler = "Euler"\nsteps = 2\nwidth = 64\nheight = 64\nseeds = [1]\nbatch_size = 1',
                      suites='[[suites]]\nname = "quality"\nprompts = ["a red cube"]')
    done = subprocess.run([sys.executable, "-c", RUN_PROBE, "run", str(spec)], cwd=spec.parent, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    lines = [line for line in done.stdout.splitlines() if line.startswith("LOADED ")]
    assert lines, f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    loaded = json.loads(lines[-1][len("LOADED "):])
    assert loaded["ckptbench.generate.diffusers_backend"] == [], "table libraries loaded before generation"
    assert loaded["ckptbench.report.outputs after generation"], "the output writer was imported before the work"
    assert loaded["ckptbench.report.outputs"] == [], "table libraries loaded before the outputs were written"
