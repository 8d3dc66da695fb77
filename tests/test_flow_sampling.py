"""Flow-matching Euler and the prompt conditioning of Flux.1 / SD3.5, against hand computations.

References: the "Simple" schedule and time shifts of Forge (``PredictionFlux``: μ = 1.15 for [dev], 1.0 for
[schnell]) and ComfyUI (``ModelSamplingFlux``/``ModelSamplingDiscreteFlow``, shift 3 for SD3), its ``euler``
sampler with a CONST (flow) model, and Forge's T5 text engine (no truncation, ``</s>``, padding to 256).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from ckptbench.errors import CkptbenchError
from ckptbench.generate.base import FailedImage, ImageJob, SamplingSettings
from ckptbench.generate.diffusers_backend import DiffusersGenerator, backend_id
from ckptbench.generate.flow_conditioning import encode_flow_prompts, parse_for_flow, t5_tokens
from ckptbench.generate.flow_sampling import flow_sigmas, initial_noise, sample_flow
from ckptbench.generate.loading import load_pipeline
from ckptbench.models.checkpoint import resolve_checkpoint
from ckptbench.spec import CheckpointSpec
from ckptbench.suites import Case
from tests.flow_models import sd35_split_fields

CPU = torch.device("cpu")


def test_simple_schedules_by_hand() -> None:
    def flux(t: float, mu: float) -> float:
        return math.exp(mu) / (math.exp(mu) + 1 / t - 1)

    assert flow_sigmas("flux", "dev", 4) == pytest.approx([flux(1, 1.15), flux(0.75, 1.15), flux(0.5, 1.15),
                                                           flux(0.25, 1.15), 0.0])
    assert flow_sigmas("flux", "schnell", 4) == pytest.approx([1.0, flux(0.75, 1.0), flux(0.5, 1.0), flux(0.25, 1.0),
                                                               0.0])
    # 3 steps over ComfyUI's 1000-entry SD3 table: t = 1000/1000, (1000 − 333)/1000, (1000 − 666)/1000; shift 3.
    assert flow_sigmas("sd35", None, 3) == pytest.approx([1.0, 3 * 0.667 / (1 + 2 * 0.667), 3 * 0.334 / (1 + 2 * 0.334),
                                                          0.0])


@pytest.fixture(scope="module")
def flux(flow_models):
    fields = {"path": flow_models["flux_full"], "config": flow_models["flux_config"],
              "t5_tokenizer": flow_models["tokenizer"]}
    resolved = resolve_checkpoint(CheckpointSpec(name="flux", **fields))
    return resolved, load_pipeline(resolved, CPU, torch.float32)


def test_one_euler_step_is_noise_minus_the_predicted_flow(flux) -> None:
    """With one step σ goes 1 → 0: x = noise + (0 − 1)·v(noise, σ=1), v from the transformer called directly."""
    _, pipeline = flux
    (cond,) = encode_flow_prompts(pipeline, "flux", ["a red cube"])
    got = sample_flow(pipeline, "flux", "dev", [cond], None, [7], 64, 64, 1, 1.0, 3.5)
    noise = initial_noise([7], (4, 8, 8))
    packed = noise.view(1, 4, 4, 2, 4, 2).permute(0, 2, 4, 1, 3, 5).reshape(1, 16, 16)
    ids = torch.zeros(4, 4, 3)
    ids[..., 1] += torch.arange(4)[:, None]
    ids[..., 2] += torch.arange(4)[None, :]
    with torch.no_grad():
        flow = pipeline.transformer(hidden_states=packed, timestep=torch.tensor([1.0]), guidance=torch.tensor([3.5]),
                                    pooled_projections=cond.pooled[None], encoder_hidden_states=cond.sequence[None],
                                    txt_ids=torch.zeros(cond.sequence.shape[0], 3), img_ids=ids.reshape(16, 3),
                                    return_dict=False)[0]
    unpacked = flow.view(1, 4, 4, 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(1, 4, 8, 8)
    torch.testing.assert_close(got, noise - unpacked, rtol=1e-5, atol=1e-5)


def test_t5_sees_the_whole_prompt_with_its_weights(flux) -> None:
    _, pipeline = flux
    tokenizer = pipeline.tokenizer_2
    long_prompt = ", ".join(["a red cube on a blue sphere"] * 60)  # > 77 CLIP tokens, > 256 T5 tokens
    ((tokens, weights),) = t5_tokens(parse_for_flow(long_prompt, "flux"), tokenizer, 256)
    plain = tokenizer(long_prompt, add_special_tokens=False)["input_ids"]
    assert len(plain) > 256 and tokens == [*plain, tokenizer.eos_token_id]  # untruncated, then </s>, no padding
    ((short, short_weights),) = t5_tokens(parse_for_flow("a (red:1.5) cube", "flux"), tokenizer, 256)
    assert len(short) == 256 and short[4:] == [tokenizer.pad_token_id] * 252  # a, red, cube, </s>, padding
    assert short_weights[:4] == [1.0, 1.5, 1.0, 1.0]
    (long_cond,) = encode_flow_prompts(pipeline, "flux", [long_prompt])
    assert long_cond.sequence.shape[0] == len(plain) + 1
    plain_cond, weighted = encode_flow_prompts(pipeline, "flux", ["a red cube", "a (red:1.5) cube"])
    assert not torch.allclose(plain_cond.sequence, weighted.sequence)
    assert weights[0] == 1.0


def test_prompt_editing_is_refused_not_dropped(flux) -> None:
    resolved, _ = flux
    with pytest.raises(CkptbenchError, match=r"prompt editing or alternation .* not supported for flux"):
        parse_for_flow("a [cat:dog:0.5]", "flux")
    settings = SamplingSettings(sampler="Euler", steps=2, cfg=1.0, width=64, height=64, dtype="fp32",
                                distilled_cfg=3.5)
    case = Case(suite="s", case_id="0", prompt="a [cat:dog:0.5]")
    job = ImageJob(checkpoint="flux", checkpoint_sha256=resolved.sha256, case=case, seed=1, prompt=case.prompt,
                   negative_prompt="", settings=settings, backend=backend_id(), checkpoint_identity=resolved.identity)
    (result,) = DiffusersGenerator(CPU, batch_size=1).generate(resolved, [job])
    assert isinstance(result, FailedImage) and "prompt editing or alternation" in result.error


def test_sd35_uses_cfg_with_the_negative_prompt_and_images_do_not_depend_on_the_batch(flow_models) -> None:
    resolved = resolve_checkpoint(CheckpointSpec(name="sd35", **sd35_split_fields(flow_models)))
    settings = SamplingSettings(sampler="Euler", steps=3, cfg=4.5, width=64, height=64, dtype="fp32")
    jobs = [ImageJob(checkpoint="sd35", checkpoint_sha256=resolved.sha256, case=Case(suite="s", case_id=str(i),
                                                                                     prompt=prompt),
                     seed=seed, prompt=prompt, negative_prompt=negative, settings=settings, backend=backend_id(),
                     checkpoint_identity=resolved.identity)
            for i, (prompt, negative, seed) in enumerate([("a red cube", "blurry", 1),
                                                          ("a blue sphere at dusk, oil painting", "", 2)])]
    jobs.append(replace(jobs[1], seed=3))  # shares its settings and negative prompt: one batch of two
    together = {r.job.key: r for r in DiffusersGenerator(CPU, batch_size=2).generate(resolved, jobs)}
    alone = list(DiffusersGenerator(CPU, batch_size=1).generate(resolved, jobs[1:2]))
    assert all(not isinstance(r, FailedImage) for r in [*together.values(), *alone])
    # The same image, up to the last-bit rounding of batched kernels (the SD families have the same 1/255).
    pixels = [np.asarray(image, dtype=np.int16) for image in (together[jobs[1].key].image, alone[0].image)]
    assert np.abs(pixels[0] - pixels[1]).max() <= 1
    assert "Sampler: Euler, Schedule type: Simple, CFG scale: 4.5" in alone[0].infotext
    assert "Distilled CFG Scale" not in alone[0].infotext
    # Classifier-free guidance uses the negative prompt: another negative, another image.
    other = list(DiffusersGenerator(CPU, batch_size=1).generate(resolved, [replace(jobs[1], negative_prompt="red")]))
    assert np.abs(np.asarray(other[0].image, dtype=np.int16) - pixels[1]).mean() > 1.0
