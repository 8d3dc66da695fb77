"""SDXL v-prediction with zero terminal SNR (NoobAI-style): detected from the file, sampled with the
rescaled schedule, and never sampled with another schedule without a recorded override.

The reference is Lin et al. 2023 ("Common Diffusion Noise Schedules and Sample Steps are Flawed",
Algorithm 1) with the finite final value A1111 (``rescale_zero_terminal_snr_abar``), Forge and ComfyUI
(``rescale_zero_terminal_snr_sigmas``) use; restated here by hand in float64.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ckptbench.cli import app
from ckptbench.demo.tiny import save_single_file, tiny_sdxl_pipeline
from ckptbench.demo.tiny_families import save_sdxl_vpred_ztsnr
from ckptbench.generate.base import FailedImage, ImageJob, SamplingSettings
from ckptbench.generate.batching import backend_id
from ckptbench.generate.diffusers_backend import DiffusersGenerator
from ckptbench.generate.loading import load_pipeline
from ckptbench.generate.samplers import make_scheduler
from ckptbench.models.checkpoint import resolve_checkpoint
from ckptbench.spec import CheckpointSpec
from ckptbench.suites import Case

CPU = torch.device("cpu")


def _reference_alphas_cumprod() -> torch.Tensor:
    """SDXL's scaled-linear ᾱ (β from 0.00085 to 0.012 over 1000 steps), rescaled by hand."""
    betas = [(math.sqrt(0.00085) + (math.sqrt(0.012) - math.sqrt(0.00085)) * i / 999) ** 2 for i in range(1000)]
    alphas, running = [], 1.0
    for beta in betas:
        running *= 1 - beta
        alphas.append(running)
    roots = [a**0.5 for a in alphas]
    first, last = roots[0], roots[-1]
    rescaled = [((r - last) * first / (first - last)) ** 2 for r in roots]
    rescaled[-1] = 4.8973451890853435e-08
    return torch.tensor(rescaled, dtype=torch.float64)


@pytest.fixture(scope="module")
def ztsnr_file(tmp_path_factory) -> tuple[Path, Path]:
    from ckptbench.demo.tiny import save_config_folder

    root = tmp_path_factory.mktemp("ztsnr")
    return save_sdxl_vpred_ztsnr(root / "noob-vpred.safetensors"), save_config_folder(tiny_sdxl_pipeline(6),
                                                                                        root / "config")


def _resolve(path: Path, config: Path, **fields: object):
    return resolve_checkpoint(CheckpointSpec(name="noob", path=path, config=config, **fields))


def test_markers_give_v_prediction_and_the_rescaled_schedule(ztsnr_file) -> None:
    path, config = ztsnr_file
    resolved = _resolve(path, config)
    assert (resolved.family, resolved.prediction, resolved.zero_terminal_snr) == ("sdxl", "v", True)
    assert resolved.detection["zero_terminal_snr_source"] == "marker tensor 'ztsnr' → zero terminal SNR"
    scheduler = load_pipeline(resolved, CPU, torch.float32).scheduler
    assert scheduler.config.prediction_type == "v_prediction"
    reference = _reference_alphas_cumprod()
    assert torch.allclose(scheduler.alphas_cumprod.double(), reference, rtol=2e-5, atol=1e-9)
    # Every sampler the generator builds from this config keeps the schedule: its first sigma is the rescaled
    # schedule's σ_max = √((1 − ᾱ_T)/ᾱ_T) ≈ 4518.8, not SDXL's standard 14.61.
    sigma_max = math.sqrt((1 - 4.8973451890853435e-08) / 4.8973451890853435e-08)
    for sampler in ("Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "DDIM"):
        made = make_scheduler(sampler, dict(scheduler.config))
        made.set_timesteps(10)
        assert made.config.prediction_type == "v_prediction"
        assert float(made.alphas_cumprod[-1]) == pytest.approx(4.8973451890853435e-08, rel=1e-4), sampler
        if hasattr(made, "sigmas"):
            assert float(made.sigmas.max()) == pytest.approx(sigma_max, rel=1e-4), sampler


def test_standard_schedule_is_unchanged_without_the_marker(tiny_family_models) -> None:
    resolved = resolve_checkpoint(CheckpointSpec(name="xl", path=tiny_family_models["sdxl"],
                                                 config=tiny_family_models["sdxl_config"]))
    assert resolved.zero_terminal_snr is False
    scheduler = load_pipeline(resolved, CPU, torch.float32).scheduler
    assert float(scheduler.alphas_cumprod[-1]) == pytest.approx(0.00466, rel=1e-2)  # σ_max 14.61


def _jobs(resolved) -> list[ImageJob]:
    settings = SamplingSettings(sampler="Euler", steps=3, cfg=5.0, width=64, height=64, dtype="fp32")
    case = Case(suite="s", case_id="000", prompt="a red cube")
    return [ImageJob(checkpoint=resolved.name, checkpoint_sha256=resolved.sha256, case=case, seed=1,
                     prompt=case.prompt, negative_prompt="", settings=settings, backend=backend_id(),
                     checkpoint_identity=resolved.identity)]


def test_turning_it_off_needs_the_spec_and_is_recorded(ztsnr_file) -> None:
    path, config = ztsnr_file
    on, off = _resolve(path, config), _resolve(path, config, zero_terminal_snr=False)
    assert off.zero_terminal_snr is False and off.prediction == "v"
    assert off.detection["zero_terminal_snr_source"] == "spec: zero_terminal_snr = false"
    assert any("the file says zero terminal SNR is on (marker tensor 'ztsnr'" in w and "against the file" in w
               for w in off.detection["warnings"])
    assert on.identity != off.identity and _jobs(on)[0].key != _jobs(off)[0].key
    made = {}
    for name, resolved in (("on", on), ("off", off)):
        (result,) = DiffusersGenerator(CPU, batch_size=1).generate(resolved, _jobs(resolved))
        assert not isinstance(result, FailedImage), result
        made[name] = result
    assert "Noise Schedule: Zero Terminal SNR" in made["on"].infotext
    assert "Noise Schedule" not in made["off"].infotext
    pixels = [np.asarray(made[n].image, dtype=np.int16) for n in ("on", "off")]
    assert np.abs(pixels[0] - pixels[1]).mean() > 1.0


def test_the_spec_can_turn_it_on_and_kohya_metadata_counts(tiny_family_models, tmp_path: Path) -> None:
    plain = _resolve(tiny_family_models["sdxl"], tiny_family_models["sdxl_config"], zero_terminal_snr=True)
    assert plain.zero_terminal_snr and plain.detection["warnings"] == []
    kohya = save_single_file(tiny_sdxl_pipeline(6), tmp_path / "k.safetensors",
                             metadata={"ss_zero_terminal_snr": "True", "ss_v_parameterization": "True"})
    resolved = _resolve(kohya, tiny_family_models["sdxl_config"])
    assert (resolved.prediction, resolved.zero_terminal_snr) == ("v", True)
    assert resolved.detection["zero_terminal_snr_source"] == "__metadata__ ss_zero_terminal_snr = True"


def test_inspect_reports_prediction_and_zero_terminal_snr(ztsnr_file) -> None:
    result = CliRunner().invoke(app, ["inspect", str(ztsnr_file[0]), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["arch"], report["prediction"], report["zero_terminal_snr"]) == ("sdxl", "v", True)
    assert report["warnings"] == []
