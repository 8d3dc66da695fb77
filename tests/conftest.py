"""Shared fixtures: tiny random-weight models built once per session with the real classes, saved in
the real file formats, and spec files that point at them."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

# The tests run tiny models, where intra-op threads only add synchronisation; on a CPU shared with other
# jobs their spin-waiting slowed a tiny UNet call from 0.02 s to 4.5 s. CKPTBENCH_TEST_THREADS overrides.
torch.set_num_threads(int(os.environ.get("CKPTBENCH_TEST_THREADS", "1")))

# Tests never reach for a model hub: everything they load is built here or read from ../shared/data.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data files beside the checkout (GhostReview release, LAION heads, PartiPrompts)."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not beside this checkout")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two different tiny SD1.5-architecture checkpoints in both formats, a tiny CLIP and an aesthetic head.

    Keys: ``single_a`` (original-layout .safetensors of model A), ``config`` (its diffusers config
    folder), ``folder_a`` (model A as a diffusers folder: same weights as ``single_a``), ``folder_b``
    (model B, different weights), ``clip`` (tiny transformers CLIP, 768-d projection), ``head``
    (random head in the LAION .pth layout).
    """
    from ckptbench.models.tiny import (
        save_config_folder,
        save_diffusers_folder,
        save_single_file,
        save_tiny_aesthetic_head,
        save_tiny_clip,
        tiny_sd15_pipeline,
    )

    root = tmp_path_factory.mktemp("tiny-models")
    model_a = tiny_sd15_pipeline(seed=1)
    model_b = tiny_sd15_pipeline(seed=2)
    return {
        "single_a": save_single_file(model_a, root / "a.safetensors"),
        "config": save_config_folder(model_a, root / "tiny-sd15-config"),
        "folder_a": save_diffusers_folder(model_a, root / "a-folder"),
        "folder_b": save_diffusers_folder(model_b, root / "b-folder"),
        "clip": save_tiny_clip(root / "tiny-clip", seed=3),
        "head": save_tiny_aesthetic_head(root / "head.pth", seed=4),
    }


SpecWriter = Callable[..., Path]


@pytest.fixture
def write_spec(tmp_path: Path, tiny_models: dict[str, Path]) -> SpecWriter:
    """Write a small spec over the tiny models into ``tmp_path``; keyword arguments replace sections.

    ``checkpoints`` / ``generation`` / ``suites`` / ``scorers`` / ``benchmark`` take TOML text; by
    default: model A as a single file and model B as a folder, 2 prompts × 2 seeds at 64 px, 4 steps,
    both first scorers on the tiny CLIP.
    """

    def write(name: str = "spec.toml", **sections: str) -> Path:
        defaults = {
            "benchmark": 'name = "test"\nstore = "store"',
            "checkpoints": f'''
                [[checkpoints]]
                name = "a"
                path = "{tiny_models['single_a']}"
                config = "{tiny_models['config']}"

                [[checkpoints]]
                name = "b"
                path = "{tiny_models['folder_b']}"
            ''',
            "generation": 'sampler = "Euler"\nsteps = 4\nwidth = 64\nheight = 64\nseeds = [1, 2]\nbatch_size = 4',
            "suites": '[[suites]]\nname = "quality"\nprompts = ["a red cube", "a blue sphere"]',
            "scorers": f'''
                [scorers]
                use = ["laion-aesthetic-v2", "clip-score"]
                [scorers.laion-aesthetic-v2]
                model = "{tiny_models['clip']}"
                head = "{tiny_models['head']}"
                [scorers.clip-score]
                model = "{tiny_models['clip']}"
            ''',
        }
        defaults.update(sections)
        text = "[benchmark]\n" + textwrap.dedent(defaults["benchmark"]) + "\n"
        text += textwrap.dedent(defaults["checkpoints"]) + "\n"
        text += "[generation]\n" + textwrap.dedent(defaults["generation"]) + "\n"
        text += textwrap.dedent(defaults["suites"]) + "\n" + textwrap.dedent(defaults["scorers"]) + "\n"
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_models: dict[str, Path]):
    """Tiny model A as a resolved diffusers-folder checkpoint, ready for ``DiffusersGenerator``."""
    from ckptbench.models.checkpoint import resolve_checkpoint
    from ckptbench.spec import CheckpointSpec

    return resolve_checkpoint(CheckpointSpec(name="tiny-a", path=tiny_models["folder_a"]))


@pytest.fixture
def make_job(tiny_checkpoint) -> Callable[..., object]:
    """Build an ``ImageJob`` on ``tiny_checkpoint`` (64×64 px, 3 steps, fp32) from keyword overrides."""
    from ckptbench.generate.base import ImageJob, SamplingSettings
    from ckptbench.generate.diffusers_backend import backend_id
    from ckptbench.suites import Case

    def make(prompt: str = "a red cube", negative_prompt: str = "", seed: int = 1, embeddings: tuple = (),
             **settings: object) -> ImageJob:
        values = {"sampler": "Euler", "steps": 3, "cfg": 7.0, "width": 64, "height": 64, "dtype": "fp32",
                  "clip_skip": 1, **settings}
        return ImageJob(checkpoint=tiny_checkpoint.name, checkpoint_sha256=tiny_checkpoint.sha256,
                        case=Case(suite="test", case_id="000", prompt=prompt), seed=seed, prompt=prompt,
                        negative_prompt=negative_prompt, settings=SamplingSettings(**values),  # type: ignore[arg-type]
                        backend=backend_id(), embeddings=embeddings)

    return make
