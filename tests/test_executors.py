"""The Ray executor against the local one: same results from the same spec, and failed or lost tasks.

The Ray tests start a local Ray instance with two CPUs; its workers run ``tests/ray_faults.install`` as
their setup hook, which makes loading the checkpoint named 'broken' raise and kills the first worker that
loads 'lost' (see that module for why the fault is injected there).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from ckptbench.cli import app
from ckptbench.runner import run_benchmark
from ckptbench.spec_load import load_spec
from ckptbench.stop import StopFlag
from ckptbench.store import Store
from tests.conftest import REPO_ROOT, scorers_text, write_spec_text

QUIET = Console(quiet=True)
# Differ by design between two runs of one spec: the run's times, the executor, where the store is.
RUN_SPECIFIC = {".run", ".provenance", ".spec", ".benchmark.store"}
SCORERS = ["laion-aesthetic-v2", "clip-score", "style-gram", "cmmd"]


def assert_same_results(local: Any, other: Any, where: str = "") -> None:
    """Same keys everywhere, numbers equal to 1e-6, everything else equal (run-specific sections aside)."""
    if isinstance(local, dict):
        assert isinstance(other, dict) and set(local) == set(other), where
        for key in local:
            if f"{where}.{key}" not in RUN_SPECIFIC:
                assert_same_results(local[key], other[key], f"{where}.{key}")
    elif isinstance(local, list):
        assert isinstance(other, list) and len(local) == len(other), where
        for index, (a, b) in enumerate(zip(local, other, strict=True)):
            assert_same_results(a, b, f"{where}[{index}]")
    elif isinstance(local, float) and not isinstance(local, bool):
        assert isinstance(other, int | float), where
        assert (math.isnan(local) and math.isnan(other)) or abs(local - other) <= 1e-6, (where, local, other)
    else:
        assert local == other, where


def _pngs(store: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in store.glob("images/*/*.png")}


def test_local_shards_make_the_same_images_as_one_task(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    """Shards are cut at batch boundaries, so a checkpoint in four tasks makes the same pixels as in one."""
    generation = 'sampler = "Euler"\nsteps = 3\nwidth = 64\nheight = 64\nseeds = [1, 2, 3]\nbatch_size = 2'
    stores = {}
    for label, extra in (("whole", ""), ("sharded", "\nshard_images = 1")):
        path = tmp_path / f"{label}.toml"
        path.write_text(write_spec_text(tiny_models, generation=generation,
                                        benchmark=f'name = "t"\nstore = "{label}"{extra}'))
        outcome = run_benchmark(load_spec(path), console=QUIET)
        assert outcome.generated == 12 and not outcome.failed_checkpoints
        stores[label] = tmp_path / label
    assert _pngs(stores["whole"]) == _pngs(stores["sharded"])
    assert_same_results(json.loads((stores["whole"] / "results.json").read_text()),
                        json.loads((stores["sharded"] / "results.json").read_text()))


@pytest.fixture(scope="module")
def ray_instance(tmp_path_factory: pytest.TempPathFactory) -> Any:
    ray = pytest.importorskip("ray")
    faults = tmp_path_factory.mktemp("ray-faults")
    python_path = os.pathsep.join(filter(None, [str(REPO_ROOT), str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH")]))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             runtime_env={"worker_process_setup_hook": "tests.ray_faults.install",
                          "env_vars": {"PYTHONPATH": python_path, "CKPTBENCH_FAULT_DIR": str(faults),
                                       "CKPTBENCH_FAULT_RAISE": "broken", "CKPTBENCH_FAULT_CRASH_ONCE": "lost",
                                       "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                                       "OMP_NUM_THREADS": "1"}})
    yield faults
    ray.shutdown()


@pytest.mark.slow
def test_ray_executor_gives_the_local_results(ray_instance: Path, tmp_path: Path, tiny_models: dict[str, Path],
                                              tiny_scorer_models: dict[str, Path]) -> None:
    generation = 'sampler = "Euler"\nsteps = 3\nwidth = 64\nheight = 64\nseeds = [1, 2]\nbatch_size = 2'
    specs = {}
    for label, extra in (("local", ""), ("ray", "\nshard_images = 2")):
        path = tmp_path / f"{label}.toml"
        path.write_text(write_spec_text(tiny_models, generation=generation,
                                        scorers=scorers_text(tiny_scorer_models, SCORERS),
                                        benchmark=f'name = "t"\nstore = "{label}"{extra}'))
        specs[label] = path
    local = run_benchmark(load_spec(specs["local"]), console=QUIET, executor="local")
    assert local.generated == 8 and not local.failed_checkpoints
    result = CliRunner().invoke(app, ["run", str(specs["ray"]), "--executor", "ray"])
    assert result.exit_code == 0, result.output
    assert "generated 8 images" in result.output

    local_results = json.loads((tmp_path / "local" / "results.json").read_text())
    ray_results = json.loads((tmp_path / "ray" / "results.json").read_text())
    assert not local_results["failures"] and not ray_results["failures"]
    assert ray_results["provenance"]["executor"]["name"] == "ray"
    assert ray_results["provenance"]["executor"]["cluster"]["CPU"] == 2
    assert set(ray_results["provenance"]) == set(local_results["provenance"])
    assert_same_results(local_results, ray_results)
    assert _pngs(tmp_path / "local") == _pngs(tmp_path / "ray")
    for checkpoint in ray_results["checkpoints"]:  # the set scorer ran, on features the image pass stored
        assert checkpoint["sets"]["cmmd"]["quality"]["value"] is not None


@pytest.mark.slow
def test_ray_retries_failed_and_lost_tasks_and_records_what_still_fails(
        ray_instance: Path, tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    checkpoints = f'''
        [[checkpoints]]
        name = "a"
        path = "{tiny_models['single_a']}"
        config = "{tiny_models['config']}"

        [[checkpoints]]
        name = "lost"
        path = "{tiny_models['folder_b']}"

        [[checkpoints]]
        name = "broken"
        path = "{tiny_models['folder_a']}"
    '''
    path = tmp_path / "spec.toml"
    path.write_text(write_spec_text(tiny_models, checkpoints=checkpoints,
                                    benchmark='name = "t"\nstore = "store"\nexecutor = "ray"\nray_max_retries = 2'))
    outcome = run_benchmark(load_spec(path), console=QUIET)

    attempts = sorted(p.name for p in ray_instance.glob("attempt-*"))
    assert sum(name.startswith("attempt-broken-") for name in attempts) == 3  # the first try and 2 retries
    assert sum(name.startswith("attempt-lost-") for name in attempts) == 2  # died once, then made its images
    assert (ray_instance / "crashed").exists()
    assert outcome.failed_checkpoints == ["broken"]
    assert outcome.generated == 8  # a and lost: 2 prompts × 2 seeds each
    results = json.loads(outcome.results_path.read_text())
    status = {c["name"]: (c["status"], c["error"]) for c in results["checkpoints"]}
    assert status["a"] == ("ok", None) and status["lost"] == ("ok", None)
    assert status["broken"][0] == "failed"
    assert "after 3 attempts" in status["broken"][1] and "injected fault" in status["broken"][1]
    for checkpoint in results["checkpoints"]:
        if checkpoint["name"] != "broken":
            assert checkpoint["scores"]["clip-score"]["n"] == 4


@pytest.mark.slow
def test_a_stop_ends_a_ray_run_early_and_the_next_run_completes_it(
        ray_instance: Path, tmp_path: Path, tiny_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C under Ray: the results of tasks already back are stored, no new task starts, the ones running are
    cancelled; the run is 'interrupted' and the next run makes exactly what is missing."""
    path = tmp_path / "spec.toml"
    path.write_text(write_spec_text(tiny_models, benchmark='name = "t"\nstore = "store"\nexecutor = "ray"\n'
                                                           'shard_images = 1'))
    stop = StopFlag()
    original = Store.put_image_png

    def put_then_stop(self: Store, *args: Any, **kwargs: Any) -> Path:
        stop.request("test")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Store, "put_image_png", put_then_stop)
    first = run_benchmark(load_spec(path), console=QUIET, stop=stop)
    monkeypatch.undo()
    assert first.interrupted and 1 <= first.generated < 8 and first.scored == 0
    assert json.loads(first.results_path.read_text())["run"]["status"] == "interrupted"

    second = run_benchmark(load_spec(path), console=QUIET)
    assert not second.interrupted and not second.failed_checkpoints
    assert second.cached_images == first.generated and first.generated + second.generated == 8
    assert len(_pngs(tmp_path / "store")) == 8


def test_unknown_executor_is_one_clear_error(write_spec) -> None:
    spec = write_spec()
    result = CliRunner().invoke(app, ["run", str(spec), "--executor", "spark"])
    assert result.exit_code == 2 and "--executor 'spark': give 'local' or 'ray'" in result.output
    bad = write_spec("bad.toml", benchmark='name = "t"\nexecutor = "dask"')
    result = CliRunner().invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2 and "executor" in result.output
