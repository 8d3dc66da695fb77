"""Building jobs for the diffusers generator and running it on the tiny models (shared by generation tests)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ckptbench.generate.base import FailedImage, GeneratedImage, HiresSettings, ImageJob, LoraUse, SamplingSettings
from ckptbench.generate.batching import backend_id
from ckptbench.generate.diffusers_backend import DiffusersGenerator
from ckptbench.models.checkpoint import ResolvedCheckpoint, resolve_checkpoint
from ckptbench.spec import CheckpointSpec
from ckptbench.suites import Case


def checkpoint(path: Path, name: str = "a") -> ResolvedCheckpoint:
    return resolve_checkpoint(CheckpointSpec(name=name, path=path))


def settings(dtype: str = "fp32", hires: HiresSettings | None = None, steps: int = 3) -> SamplingSettings:
    return SamplingSettings(sampler="Euler", steps=steps, cfg=7.0, width=64, height=64, dtype=dtype, hires=hires)


def job(ckpt: ResolvedCheckpoint, seed: int = 1, prompt: str = "a red cube", negative: str = "",
        loras: tuple[LoraUse, ...] = (), sampling: SamplingSettings | None = None) -> ImageJob:
    return ImageJob(checkpoint=ckpt.name, checkpoint_sha256=ckpt.sha256, case=Case("s", "000", prompt), seed=seed,
                    prompt=prompt, negative_prompt=negative, settings=sampling or settings(), backend=backend_id(),
                    loras=loras)


def generate(ckpt: ResolvedCheckpoint, jobs: Sequence[ImageJob], batch_size: int = 4
             ) -> list[GeneratedImage | FailedImage]:
    results = list(DiffusersGenerator(torch.device("cpu"), batch_size).generate(ckpt, jobs))
    order = {id(j): i for i, j in enumerate(jobs)}
    return sorted(results, key=lambda result: order[id(result.job)])


def pixels(result: GeneratedImage | FailedImage) -> np.ndarray:
    assert isinstance(result, GeneratedImage), getattr(result, "error", result)
    return np.asarray(result.image).astype(np.int16)
