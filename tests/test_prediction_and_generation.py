"""Prediction-type detection (markers, metadata, A1111's SD2 test) and sampling with SD2-v and SDXL files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from ckptbench.demo.tiny import save_config_folder, save_single_file, tiny_sd2_pipeline
from ckptbench.generate.base import FailedImage, ImageJob, SamplingSettings
from ckptbench.generate.batching import backend_id
from ckptbench.generate.diffusers_backend import DiffusersGenerator
from ckptbench.generate.loading import load_pipeline
from ckptbench.generate.samplers import make_scheduler
from ckptbench.models.checkpoint import resolve_checkpoint
from ckptbench.models.components import a1111_v_prediction_test
from ckptbench.models.detect import detect
from ckptbench.models.state_dict import open_model_file
from ckptbench.spec import CheckpointSpec
from ckptbench.suites import Case

CPU = torch.device("cpu")


def _jobs(resolved, seeds=(1, 2), size: int = 64) -> list[ImageJob]:
    settings = SamplingSettings(sampler="Euler", steps=2, cfg=5.0, width=size, height=size, dtype="fp32")
    case = Case(suite="s", case_id="000", prompt="a red cube")
    return [ImageJob(checkpoint=resolved.name, checkpoint_sha256=resolved.sha256, case=case, seed=seed,
                     prompt=case.prompt, negative_prompt="", settings=settings, backend=backend_id(),
                     checkpoint_identity=resolved.identity) for seed in seeds]


def _pixels(resolved, seeds=(1, 2)) -> list[np.ndarray]:
    results = list(DiffusersGenerator(CPU, batch_size=2).generate(resolved, _jobs(resolved, seeds)))
    assert not any(isinstance(r, FailedImage) for r in results), results
    return [np.asarray(r.image, dtype=np.int16) for r in results]


def test_sd2_v_file_is_sampled_as_v_and_differs_from_epsilon(tiny_family_models) -> None:
    path, config = tiny_family_models["sd2_v"], tiny_family_models["sd2_config"]
    as_v = resolve_checkpoint(CheckpointSpec(name="v", path=path, config=config))
    as_eps = resolve_checkpoint(CheckpointSpec(name="e", path=path, config=config, prediction="epsilon"))
    assert as_v.prediction == "v" and as_eps.prediction == "epsilon"
    pipeline = load_pipeline(as_v, CPU, torch.float32)
    assert pipeline.scheduler.config.prediction_type == "v_prediction"
    # The generator rebuilds the scheduler per sampler from this config: the prediction type must survive.
    assert make_scheduler("Euler a", dict(pipeline.scheduler.config)).config.prediction_type == "v_prediction"
    assert _jobs(as_v)[0].key != _jobs(as_eps)[0].key
    (v_image,), (eps_image,) = _pixels(as_v, seeds=(1,)), _pixels(as_eps, seeds=(1,))
    assert v_image.shape == (64, 64, 3)
    assert np.abs(v_image - eps_image).mean() > 1.0  # same weights, seed and prompt: only the parameterisation


def test_sdxl_single_file_generates_images(tiny_family_models) -> None:
    resolved = resolve_checkpoint(CheckpointSpec(name="xl", path=tiny_family_models["sdxl"],
                                                 config=tiny_family_models["sdxl_config"]))
    first, second, again = _pixels(resolved, seeds=(1, 2, 1))  # the third in a batch of its own
    assert first.shape == (64, 64, 3)
    # Seeded: the same image alone as in a batch, up to one 8-bit level of batched floating-point rounding.
    assert np.abs(first - again).max() <= 1
    assert np.abs(first - second).mean() > 1.0  # different seeds, different images


@pytest.mark.parametrize(
    ("extras", "metadata", "expected", "source"),
    [({"v_pred": torch.tensor([])}, {}, "v", "marker tensor 'v_pred'"),
     ({"v": torch.tensor([])}, {}, "v", "marker tensor 'v'"),
     ({}, {"modelspec.prediction_type": "v"}, "v", "modelspec.prediction_type"),
     ({}, {"modelspec.prediction_type": "epsilon"}, "epsilon", "modelspec.prediction_type"),
     ({}, {"modelspec.architecture": "stable-diffusion-v2-768-v"}, "v", "modelspec.architecture"),
     ({}, {}, None, None)],
)
def test_prediction_markers(tmp_path: Path, extras, metadata, expected, source) -> None:
    path = save_single_file(tiny_sd2_pipeline(seed=1), tmp_path / "m.safetensors", extras=extras, metadata=metadata)
    found = detect(open_model_file(path))
    assert (found.family, found.prediction) == ("sd2", expected)
    assert (found.prediction_source or None) == source or source in found.prediction_source


def _constant_output_unet(bias: float):
    """A UNet whose output is ``bias`` everywhere: conv_out's weights zeroed, its bias set."""
    pipeline = tiny_sd2_pipeline(seed=2)
    with torch.no_grad():
        pipeline.unet.conv_out.weight.zero_()
        pipeline.unet.conv_out.bias.fill_(bias)
    return pipeline


@pytest.mark.parametrize(("bias", "expected_v", "expected_mean"), [(-2.0, True, -2.5), (0.0, False, -0.5),
                                                                   (-0.4, False, -0.9)])
def test_a1111_sd2_test_hand_computed(bias: float, expected_v: bool, expected_mean: float) -> None:
    # The test input is 0.5 everywhere, so mean(output − input) = bias − 0.5; A1111 says v below −1.
    is_v, mean = a1111_v_prediction_test(_constant_output_unet(bias).unet)
    assert is_v is expected_v
    assert mean == pytest.approx(expected_mean, abs=1e-6)


@pytest.mark.parametrize(("bias", "expected"), [(-2.0, "v"), (0.0, "epsilon")])
def test_unmarked_sd2_file_gets_a1111_test_at_resolve(tmp_path: Path, bias: float, expected: str) -> None:
    pipeline = _constant_output_unet(bias)
    path = save_single_file(pipeline, tmp_path / "unmarked.safetensors")
    config = save_config_folder(pipeline, tmp_path / "config")
    scheduler_file = config / "scheduler" / "scheduler_config.json"
    settings = json.loads(scheduler_file.read_text())
    settings.pop("prediction_type")  # a config that does not say: only the weights can tell
    scheduler_file.write_text(json.dumps(settings))
    resolved = resolve_checkpoint(CheckpointSpec(name="m", path=path, config=config))
    assert resolved.prediction == expected
    assert resolved.detection["prediction_source"].startswith("A1111's SD2 test")
    assert f"is {bias - 0.5:.3f}" in resolved.detection["prediction_source"]


def test_config_folder_states_prediction_when_the_file_does_not(tmp_path: Path) -> None:
    pipeline = tiny_sd2_pipeline(seed=3, prediction_type="v_prediction")
    path = save_single_file(pipeline, tmp_path / "m.safetensors")
    config = save_config_folder(pipeline, tmp_path / "config")
    resolved = resolve_checkpoint(CheckpointSpec(name="m", path=path, config=config))
    assert resolved.prediction == "v" and "config folder" in resolved.detection["prediction_source"]


def test_family_is_read_from_tensors_not_the_file_name(tmp_path: Path, tiny_family_models) -> None:
    misleading = tmp_path / "sd15-pruned-emaonly.safetensors"
    save_file(load_file(str(tiny_family_models["sdxl"])), str(misleading))
    assert detect(open_model_file(misleading)).family == "sdxl"
