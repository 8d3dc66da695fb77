"""Shared fixtures: tiny random-weight models built once per session with the real classes, saved in
the real file formats, and spec files that point at them."""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

# Tests never reach for a model hub: everything they load is built here or read from ../shared/data.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# The tiny models' operations are too small to gain from intra-op threads; on a busy 2-core machine the
# threads' spinning made the generation tests 2× slower in wall time and 2.5× in CPU time.
torch.set_num_threads(1)

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
    from ckptbench.demo.tiny import (
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


@pytest.fixture(scope="session")
def tiny_scorer_models(tmp_path_factory: pytest.TempPathFactory, tiny_models: dict[str, Path]) -> dict[str, Path]:
    """Tiny scorer models in their real formats, plus a few small images.

    Keys: ``open_clip`` (folder with open_clip_config.json + weights), ``hps`` (HPS-format checkpoint for
    it), ``vgg`` (narrow VGG19, torchvision layout), ``kenjiqq_rating`` / ``kenjiqq_artifacts`` (heads
    with .config for the tiny CLIP's 32-wide vision tower), ``clip`` (the tiny transformers CLIP),
    ``images`` (folder of 6 PNGs), ``references`` (folder of 3 PNGs), ``imagereward`` (tiny ImageReward
    folder in the released layout, ``ImageReward.pt`` + ``med_config.json`` + tokenizer), ``qwen2_vl`` (tiny
    Qwen2-VL model folder for VQAScore).
    """
    import numpy as np
    from PIL import Image

    from ckptbench.demo.tiny_scorers import (
        save_hps_style_checkpoint,
        save_tiny_imagereward,
        save_tiny_kenjiqq_head,
        save_tiny_open_clip,
        save_vgg19,
    )
    from ckptbench.demo.tiny_vlm import save_tiny_qwen_vl

    root = tmp_path_factory.mktemp("tiny-scorers")
    open_clip_folder = save_tiny_open_clip(root / "open-clip", seed=11)
    rng = np.random.default_rng(0)
    folders = {}
    for name, count in (("images", 6), ("references", 3)):
        folder = root / name
        folder.mkdir()
        for index in range(count):
            base = rng.integers(0, 255, size=3)
            pixels = np.clip(base + rng.normal(0, 40, size=(48, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{index}.png")
        folders[name] = folder
    return {
        "open_clip": open_clip_folder,
        "hps": save_hps_style_checkpoint(open_clip_folder, root / "HPS_tiny.pt", seed=12),
        "vgg": save_vgg19(root / "vgg19-tiny.pth", seed=13),
        "kenjiqq_rating": save_tiny_kenjiqq_head(root / "rating_openclip_vit_l_14.pth", 32, seed=14),
        "kenjiqq_artifacts": save_tiny_kenjiqq_head(root / "artifacts_openclip_vit_l_14.pth", 32, seed=15,
                                                    relu=True, sigmoid=True),
        "clip": tiny_models["clip"],
        "head": tiny_models["head"],
        "imagereward": save_tiny_imagereward(root / "ImageReward", seed=16),
        "qwen2_vl": save_tiny_qwen_vl(root / "tiny-qwen2-vl", seed=17),
        **folders,
    }


SpecWriter = Callable[..., Path]


def write_spec_text(tiny_models: dict[str, Path], **sections: str) -> str:
    """A small spec over the tiny models; keyword arguments replace whole sections (TOML text).

    ``checkpoints`` / ``generation`` / ``suites`` / ``scorers`` / ``benchmark``; by default: model A as
    a single file and model B as a folder, 2 prompts × 2 seeds at 64 px, 4 steps, both first scorers
    on the tiny CLIP, store in ``store`` beside the spec.
    """
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
        "scorers": scorers_text(tiny_models, ["laion-aesthetic-v2", "clip-score"]),
    }
    defaults.update(sections)
    text = "[benchmark]\n" + textwrap.dedent(defaults["benchmark"]) + "\n"
    text += textwrap.dedent(defaults["checkpoints"]) + "\n"
    text += "[generation]\n" + textwrap.dedent(defaults["generation"]) + "\n"
    text += textwrap.dedent(defaults["suites"]) + "\n" + textwrap.dedent(defaults["scorers"]) + "\n"
    return text


@pytest.fixture
def write_spec(tmp_path: Path, tiny_models: dict[str, Path]) -> SpecWriter:
    """Write ``write_spec_text(...)`` into ``tmp_path`` under ``name``; return the path."""

    def write(name: str = "spec.toml", **sections: str) -> Path:
        path = tmp_path / name
        path.write_text(write_spec_text(tiny_models, **sections))
        return path

    return write


@pytest.fixture(scope="session")
def tiny_family_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny SD2.x and SDXL checkpoints as original-layout single files, with their config folders.

    Keys: ``sd2_v`` (SD2, seed 5, with the ``v_pred`` marker tensor), ``sd2_config`` (its config folder,
    whose scheduler says epsilon, so only the marker can make it v), ``sdxl`` (SDXL in the SGM layout,
    seed 6), ``sdxl_config``. The pipelines are rebuilt bit-identically by ``tiny_sd2_pipeline(5)`` and
    ``tiny_sdxl_pipeline(6)``.
    """
    import torch

    from ckptbench.demo.tiny import save_config_folder, save_single_file, tiny_sd2_pipeline, tiny_sdxl_pipeline

    root = tmp_path_factory.mktemp("tiny-families")
    sd2 = tiny_sd2_pipeline(seed=5)
    sdxl = tiny_sdxl_pipeline(seed=6)
    return {
        "sd2_v": save_single_file(sd2, root / "sd2-v.safetensors", extras={"v_pred": torch.tensor([])}),
        "sd2_config": save_config_folder(sd2, root / "tiny-sd2-config"),
        "sdxl": save_single_file(sdxl, root / "sdxl.safetensors"),
        "sdxl_config": save_config_folder(sdxl, root / "tiny-sdxl-config"),
    }


@pytest.fixture(scope="session")
def fid_inception_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The FID Inception at real size with random weights (its architecture cannot shrink), saved once."""
    from ckptbench.demo.tiny_scorers import save_random_fid_inception

    return save_random_fid_inception(tmp_path_factory.mktemp("inception") / "pt_inception-random.pth")


# Which of the tiny models (keys of ``tiny_models`` / ``tiny_scorer_models``) each scorer is pointed at.
_BACKBONE = {"laion-aesthetic-v2": "clip", "kenjiqq-rating": "clip", "kenjiqq-artifacts": "clip", "clip-score": "clip",
             "clip-cosine": "clip", "hps-v2": "open_clip", "hps-v2.1": "open_clip", "pickscore": "clip",
             "style-gram": "vgg", "style-gram:ghostreview": "vgg", "style-clip": "clip", "cmmd": "clip",
             "imagereward": "imagereward", "vqascore": "qwen2_vl"}
_HEAD = {"laion-aesthetic-v2": "head", "kenjiqq-rating": "kenjiqq_rating", "kenjiqq-artifacts": "kenjiqq_artifacts",
         "hps-v2": "hps", "hps-v2.1": "hps"}
_WITH_REFERENCES = {"style-gram", "style-gram:ghostreview", "style-clip", "kid", "fid", "cmmd"}
_PICKLE_WEIGHTS = {"imagereward"}  # the tiny models keep the released .pt format, which needs the opt-in


def scorer_options(models: dict[str, Path], name: str) -> dict[str, str | bool]:
    """Spec options that point scorer ``name`` at the tiny models (KID/FID's model is added by tests that need
    it)."""
    options: dict[str, str | bool] = {}
    if name in _BACKBONE:
        options["model"] = str(models[_BACKBONE[name]])
    if name in _HEAD:
        options["head"] = str(models[_HEAD[name]])
    if name in _WITH_REFERENCES:
        options["references"] = str(models["references"])
    if name in _PICKLE_WEIGHTS:
        options["allow_pickle"] = True
    return options


def scorers_text(models: dict[str, Path], use: list[str], *, batch_size: int | None = None,
                 overrides: dict[str, dict[str, str]] | None = None) -> str:
    """The ``[scorers]`` section (TOML) for ``use`` on the tiny models, each scorer's options from
    ``scorer_options`` updated by ``overrides``; ``batch_size`` for every scorer when given."""
    lines = ["[scorers]", f"use = {json.dumps(use)}"]
    for name in use:
        options: dict[str, object] = {**scorer_options(models, name), **(overrides or {}).get(name, {})}
        if batch_size is not None:
            options["batch_size"] = batch_size
        lines.append(f"[scorers.{name}]")
        lines += [f"{key} = {json.dumps(str(value) if isinstance(value, Path) else value)}"
                  for key, value in options.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def tiny_scorer_options(tiny_scorer_models: dict[str, Path]) -> Callable[[str], dict[str, str | bool]]:
    """``scorer_options`` on the tiny scorer models."""
    return lambda name: scorer_options(tiny_scorer_models, name)


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
    from ckptbench.generate.batching import backend_id
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


@pytest.fixture(scope="session")
def flow_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny FLUX.1 [dev]/[schnell] and SD3.5 files in every distributed layout (``tests/flow_models.py``)."""
    from tests.flow_models import build_flow_models

    return build_flow_models(tmp_path_factory.mktemp("flow-models"))
