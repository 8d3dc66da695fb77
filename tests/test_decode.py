"""Broken images: detection, the fp32 retry of a half-precision VAE, and failures recorded with a reason."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline

from ckptbench.demo.tiny import save_diffusers_folder, tiny_sd15_pipeline
from ckptbench.generate.base import FailedImage, GeneratedImage
from ckptbench.generate.conditioning import encode_prompts
from ckptbench.generate.decode import (
    ALL_BLACK,
    FLAT,
    NAN_LATENTS,
    NAN_PIXELS,
    broken_reason,
    decode_latents,
    nan_latents_reason,
)
from ckptbench.generate.loading import load_pipeline
from ckptbench.generate.samplers import resolve_sampler
from ckptbench.generate.samplers.run import SamplingModel, txt2img
from tests.generation_helpers import checkpoint, generate, job, settings

# Scaling the decoder's first convolution by this pushes its activations past fp16's 65504 (and its group
# norm turns the inf into NaN), while fp32 normalises the scale away.
OVERFLOW = 3e4


def _variant(root: Path, name: str, change: Callable[[StableDiffusionPipeline], None]) -> Path:
    pipeline = tiny_sd15_pipeline(seed=1)
    with torch.no_grad():
        change(pipeline)
    return save_diffusers_folder(pipeline, root / name)


@pytest.fixture(scope="module")
def broken_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("broken")

    def overflow(p: StableDiffusionPipeline) -> None:
        p.vae.decoder.conv_in.weight.mul_(OVERFLOW)
        p.vae.decoder.conv_in.bias.mul_(OVERFLOW)

    def black(p: StableDiffusionPipeline) -> None:
        p.vae.decoder.conv_out.weight.zero_()
        p.vae.decoder.conv_out.bias.fill_(-5.0)

    def nan_unet(p: StableDiffusionPipeline) -> None:
        p.unet.conv_out.bias[0] = float("nan")

    return {"overflow": _variant(root, "overflow", overflow), "black": _variant(root, "black", black),
            "nan_unet": _variant(root, "nan-unet", nan_unet)}


def test_broken_reason_on_hand_made_images() -> None:
    generator = torch.Generator().manual_seed(0)
    assert broken_reason(torch.rand(3, 16, 16, generator=generator)) is None
    with_nan = torch.rand(3, 16, 16, generator=generator)
    with_nan[1, 3, 4] = float("nan")
    assert broken_reason(with_nan) == NAN_PIXELS
    assert broken_reason(torch.zeros(3, 16, 16)) == ALL_BLACK
    assert broken_reason(torch.full((3, 16, 16), 0.5)) == FLAT
    red = torch.zeros(3, 16, 16)
    red[0] = 1.0
    assert broken_reason(red) == FLAT
    nearly_black = torch.zeros(3, 16, 16)
    nearly_black[2, 0, 0] = 3 / 255  # one visible pixel: a (dark) image, not a broken one
    assert broken_reason(nearly_black) is None


def test_fp16_overflow_is_decoded_again_in_fp32_from_the_same_latents(broken_models) -> None:
    ckpt = checkpoint(broken_models["overflow"])
    pipeline = load_pipeline(ckpt, torch.device("cpu"), torch.float16)
    with torch.inference_mode():
        conditioning = encode_prompts(pipeline, ["a red cube"], [""], steps=3)
        latents = txt2img(SamplingModel.of(pipeline), resolve_sampler("Euler"), conditioning, steps=3, cfg=7.0,
                          seeds=[1], width=64, height=64)
        half = pipeline.vae.decode(latents.half() / pipeline.vae.config.scaling_factor).sample
        assert not torch.isfinite(half).all()  # the premise: this VAE breaks in fp16
        decoded = decode_latents(pipeline, latents)
        assert pipeline.vae.dtype == torch.float16  # only upcast for the retry
        reference = pipeline.vae.float().decode(latents.float() / pipeline.vae.config.scaling_factor).sample
    assert decoded.failures == (None,) and decoded.retried == 1
    expected = ((reference / 2 + 0.5).clamp(0, 1) * 255).round()
    assert torch.equal((decoded.pixels * 255).round(), expected)

    (result,) = generate(ckpt, [job(ckpt, sampling=settings(dtype="fp16"))])
    assert isinstance(result, GeneratedImage)
    assert np.array_equal(np.asarray(result.image), expected[0].permute(1, 2, 0).numpy().astype(np.uint8))
    assert any("decoded again in float32" in warning for warning in result.warnings)


def test_images_still_broken_after_the_retry_are_failures_with_reasons(broken_models) -> None:
    black = checkpoint(broken_models["black"], "black")
    nan_unet = checkpoint(broken_models["nan_unet"], "nan")
    (failed_black,) = generate(black, [job(black, sampling=settings(dtype="fp16"))])
    assert isinstance(failed_black, FailedImage) and failed_black.error == ALL_BLACK
    (failed_nan,) = generate(nan_unet, [job(nan_unet)])
    assert isinstance(failed_nan, FailedImage) and failed_nan.error.startswith(NAN_LATENTS)
    # The advice fits the precision it ran in: never "try fp32" to a run that was already fp32.
    assert failed_nan.error == nan_latents_reason(torch.float32) and "try dtype" not in failed_nan.error
    assert "try dtype = 'bf16' or 'fp32'" in nan_latents_reason(torch.float16)
    assert "try dtype = 'fp32'" in nan_latents_reason(torch.bfloat16)
