"""Flux LoRAs in the kohya, ComfyUI and diffusers layouts, through the same matched-module checks as SD LoRAs:
each changes the image at 0.8, gives the base image at 0 and after the generator unloads it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ckptbench.cli import app
from ckptbench.demo.tiny_families import save_flux_lora, tiny_flux_pipeline
from ckptbench.generate.base import FailedImage, ImageJob, LoraUse, SamplingSettings
from ckptbench.generate.diffusers_backend import DiffusersGenerator, backend_id
from ckptbench.models.checkpoint import resolve_checkpoint
from ckptbench.spec import CheckpointSpec
from ckptbench.suites import Case
from tests.flow_models import SEEDS

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def flux(flow_models):
    return resolve_checkpoint(CheckpointSpec(name="flux", path=flow_models["flux_full"],
                                             config=flow_models["flux_config"], t5_tokenizer=flow_models["tokenizer"]))


def _job(resolved, loras: tuple[LoraUse, ...] = ()) -> ImageJob:
    settings = SamplingSettings(sampler="Euler", steps=2, cfg=1.0, width=64, height=64, dtype="fp32",
                                distilled_cfg=3.5)
    case = Case(suite="s", case_id="0", prompt="a red cube")
    return ImageJob(checkpoint="flux", checkpoint_sha256=resolved.sha256, case=case, seed=1, prompt=case.prompt,
                    negative_prompt="", settings=settings, backend=backend_id(), checkpoint_identity=resolved.identity,
                    loras=loras)


@pytest.mark.parametrize("layout", ["kohya", "comfyui", "diffusers"])
def test_flux_lora_changes_the_image_and_unloads(flux, flow_models, tmp_path: Path, layout: str) -> None:
    transformer = tiny_flux_pipeline(flow_models["tokenizer"], seed=SEEDS["flux"]).transformer
    path = save_flux_lora(transformer, tmp_path / f"{layout}.safetensors", layout)
    jobs = [_job(flux), _job(flux, (LoraUse("a" * 64, 0.8, layout, path),)),
            _job(flux, (LoraUse("a" * 64, 0.0, layout, path),))]
    results = {r.job.key: r for r in DiffusersGenerator(CPU, batch_size=1).generate(flux, jobs)}
    assert not any(isinstance(r, FailedImage) for r in results.values()), results
    assert not any(r.warnings for r in results.values())  # every layer of the file matched
    base, applied, zero = (np.asarray(results[job.key].image, dtype=np.int16) for job in jobs)
    assert np.abs(applied - base).mean() > 1.0
    assert np.array_equal(zero, base)
    (after,) = DiffusersGenerator(CPU, batch_size=1).generate(flux, jobs[:1])
    assert np.array_equal(np.asarray(after.image, dtype=np.int16), base)


def test_an_sd_lora_is_refused_on_flux_and_flux_loras_are_inspected(flux, flow_models, tmp_path: Path) -> None:
    from ckptbench.demo.tiny import tiny_sd15_pipeline
    from ckptbench.demo.tiny_files import save_kohya_lora

    sd = tiny_sd15_pipeline(seed=1)
    sd_lora = save_kohya_lora(sd.unet, sd.text_encoder, tmp_path / "sd.safetensors")
    (result,) = DiffusersGenerator(CPU, batch_size=1).generate(flux, [_job(flux, (LoraUse("b" * 64, 0.8, "sd",
                                                                                          sd_lora),))])
    assert isinstance(result, FailedImage) and "a UNet model, but checkpoint 'flux' is a transformer" in result.error
    transformer = tiny_flux_pipeline(flow_models["tokenizer"], seed=SEEDS["flux"]).transformer
    kohya = save_flux_lora(transformer, tmp_path / "k.safetensors", "kohya")
    report = CliRunner().invoke(app, ["inspect", str(kohya), "--json"])
    assert report.exit_code == 0 and '"arch": "flux"' in report.stdout and '"kind": "lora"' in report.stdout
