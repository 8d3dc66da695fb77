"""SDXL conditioning (two text encoders, pooled output) on a tiny SDXL pipeline built with the real classes."""

from __future__ import annotations

import copy
import json
import logging

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from ckptbench.demo.tiny import BUNDLED_CONFIGS, TINY_TEXT, TINY_VAE
from ckptbench.generate.conditioning import encode_prompts
from ckptbench.generate.decode import decode_latents
from ckptbench.generate.embeddings import TextualInversion
from ckptbench.generate.samplers import resolve_sampler
from ckptbench.generate.samplers.run import SamplingModel, txt2img
from ckptbench.models.tokenizer import clip_tokenizer

BOS, EOS = 49406, 49407


@pytest.fixture(scope="module")
def sdxl() -> StableDiffusionXLPipeline:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 2), projection_class_embeddings_input_dim=80,
        cross_attention_dim=64, norm_num_groups=32,
    )
    tokenizer_2 = copy.deepcopy(clip_tokenizer())
    tokenizer_2.pad_token = "!"  # OpenCLIP pads with token 0, as SDXL's second tokenizer does
    scheduler = EulerDiscreteScheduler.from_config(
        json.loads((BUNDLED_CONFIGS / "sd15/scheduler/scheduler_config.json").read_text()))
    pipe = StableDiffusionXLPipeline(
        vae=AutoencoderKL(**TINY_VAE), text_encoder=CLIPTextModel(CLIPTextConfig(**TINY_TEXT)),
        text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**TINY_TEXT)), tokenizer=clip_tokenizer(),
        tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def ids(tokenizer, text: str) -> torch.Tensor:
    return tokenizer(text, padding="max_length", max_length=77, return_tensors="pt").input_ids


@torch.inference_mode()
def penultimate(encoder, token_ids: torch.Tensor) -> torch.Tensor:
    return encoder(token_ids, output_hidden_states=True).hidden_states[-2][0]


def test_plain_prompts_match_diffusers_sdxl_encoding(sdxl) -> None:
    with torch.inference_mode():
        reference = sdxl.encode_prompt("a red cube", device="cpu", negative_prompt="blurry")
        ours = encode_prompts(sdxl, ["a red cube"], ["blurry"]).embeds
    names = ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds")
    for name, expected in zip(names, reference, strict=True):
        torch.testing.assert_close(ours[name], expected, rtol=0, atol=1e-6, msg=name)


def test_emphasis_is_applied_to_each_encoder_apart(sdxl) -> None:
    words = ids(sdxl.tokenizer, "a red cube")
    first = penultimate(sdxl.text_encoder, words)
    second = penultimate(sdxl.text_encoder_2, ids(sdxl.tokenizer_2, "a red cube"))
    w = torch.ones(77, 1)
    w[2] = 1.4
    expected = torch.cat([first * w * (first.mean() / (first * w).mean()),
                          second * w * (second.mean() / (second * w).mean())], dim=-1)
    with torch.inference_mode():
        ours = encode_prompts(sdxl, ["a (red:1.4) cube"], ["x"]).embeds
        plain = encode_prompts(sdxl, ["a red cube"], ["x"]).embeds
    torch.testing.assert_close(ours["prompt_embeds"][0], expected, rtol=1e-6, atol=1e-6)
    # the pooled vector is not weighted, as in A1111
    torch.testing.assert_close(ours["pooled_prompt_embeds"], plain["pooled_prompt_embeds"])


def test_empty_negative_is_zero_and_a_long_prompt_pools_its_first_chunk(sdxl) -> None:
    cat = sdxl.tokenizer("cat", add_special_tokens=False).input_ids[0]
    with torch.inference_mode():
        conditioning = encode_prompts(sdxl, ["cat " * 80], [""])
        first_chunk = torch.tensor([[BOS, *[cat] * 75, EOS]])
        expected_pooled = sdxl.text_encoder_2(first_chunk).text_embeds
    embeds = conditioning.embeds
    assert embeds["prompt_embeds"].shape == (1, 154, 64)
    torch.testing.assert_close(embeds["pooled_prompt_embeds"], expected_pooled, rtol=0, atol=1e-6)
    assert torch.count_nonzero(embeds["negative_prompt_embeds"][:, :77]) == 0
    assert torch.count_nonzero(embeds["negative_pooled_prompt_embeds"]) == 0
    assert conditioning.attention_mask.sum(dim=1).tolist() == [154, 77]  # rows: prompt, negative


def test_sdxl_embeddings_use_clip_l_and_clip_g(sdxl) -> None:
    generator = torch.Generator().manual_seed(3)
    embedding = TextualInversion("negXL", None, {"clip_l": torch.randn(2, 32, generator=generator),  # type: ignore[arg-type]
                                                 "clip_g": torch.randn(2, 32, generator=generator)})
    with torch.inference_mode():
        used = encode_prompts(sdxl, ["negXL"], [""], embeddings={"negXL": embedding})
        plain = encode_prompts(sdxl, ["negXL"], [""])
    assert used.embeddings_used == ("negXL",)
    difference = (used.embeds["prompt_embeds"] - plain.embeds["prompt_embeds"]).abs()
    assert difference[..., :32].max() > 0.1 and difference[..., 32:].max() > 0.1
    single = TextualInversion("negXL", None, {"": torch.randn(2, 32)})  # type: ignore[arg-type]
    with torch.inference_mode():
        assert encode_prompts(sdxl, ["negXL"], [""], embeddings={"negXL": single}).embeddings_used == ()


def test_clip_skip_is_ignored_for_sdxl_as_in_a1111(sdxl, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING), torch.inference_mode():
        skipped = encode_prompts(sdxl, ["a cat"], ["x"], clip_skip=2).embeds
        plain = encode_prompts(sdxl, ["a cat"], ["x"]).embeds
    torch.testing.assert_close(skipped["prompt_embeds"], plain["prompt_embeds"])
    assert "ignored for SDXL" in caplog.text


def sample(pipe, prompt: str, negative: str, steps: int) -> torch.Tensor:
    with torch.inference_mode():
        conditioning = encode_prompts(pipe, [prompt], [negative], steps=steps)
        return txt2img(SamplingModel.of(pipe), resolve_sampler("Euler"), conditioning, steps=steps, cfg=7.0,
                       seeds=[0], width=64, height=64)


def test_sdxl_generates_with_our_conditioning(sdxl) -> None:
    latents = sample(sdxl, "a (red:1.3) cube, " * 20, "blurry", 2)
    with torch.inference_mode():
        image = decode_latents(sdxl, latents).pixels[0]
    assert image.shape == (3, 64, 64) and np.isfinite(image.numpy()).all()


def test_sdxl_prompt_editing_switches_both_embeds_and_the_pooled_vector(sdxl) -> None:
    with torch.inference_mode():
        red = encode_prompts(sdxl, ["a red cube"], ["blurry"]).embeds
        blue = encode_prompts(sdxl, ["a blue cube"], ["blurry"]).embeds
    seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def record(_module, _args, kwargs):
        added = kwargs["added_cond_kwargs"]
        seen.append((kwargs["encoder_hidden_states"].clone(), added["text_embeds"].clone(), added["time_ids"].clone()))

    hook = sdxl.unet.register_forward_pre_hook(record, with_kwargs=True)
    try:
        sample(sdxl, "a [red:blue:1] cube", "blurry", 3)
    finally:
        hook.remove()
    assert len(seen) == 3
    for (hidden, pooled, time_ids), expected in zip(seen, [red, red, blue], strict=True):
        # rows as A1111's CFG batch: the prompt, then the negative prompt
        torch.testing.assert_close(hidden[0], expected["prompt_embeds"][0], rtol=0, atol=0)
        # the schedule's texts are encoded as one batch, as in A1111: last-bit differences from alone
        torch.testing.assert_close(pooled[0], expected["pooled_prompt_embeds"][0], rtol=0, atol=1e-6)
        torch.testing.assert_close(hidden[1], red["negative_prompt_embeds"][0], rtol=0, atol=0)
        # A1111's size conditioning: original size = target size = the image's (height, width), no crop
        assert time_ids.tolist() == [[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]] * 2
