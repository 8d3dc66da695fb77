"""The sampler registry: A1111 ≤ 1.8 and ≥ 1.9 names, ComfyUI names, errors, and every sampler on the tiny model.

Exactness against A1111 + k-diffusion is in test_sampler_parity.py; this file checks the vocabulary.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ckptbench.errors import SpecError
from ckptbench.generate.base import GeneratedImage
from ckptbench.generate.diffusers_backend import DiffusersGenerator
from ckptbench.generate.samplers import SAMPLER_TABLE, SAMPLERS, SCHEDULE_TABLE, resolve_sampler, schedule_steps
from ckptbench.generate.samplers.timesteps import timestep_grid


def pair(sampler: str, schedule: str | None = None) -> tuple[str, str | None]:
    resolved = resolve_sampler(sampler, schedule)
    return resolved.name, resolved.schedule_label


@pytest.mark.parametrize(("sampler", "expected"), [
    # A1111 1.10's "Automatic" schedule type: the sampler's own default
    ("DPM++ 2M", "Karras"), ("DPM++ SDE", "Karras"), ("DPM++ 2S a", "Karras"), ("DPM2", "Karras"),
    ("DPM2 a", "Karras"), ("Restart", "Karras"), ("DPM++ 2M SDE", "Exponential"),
    ("DPM++ 2M SDE Heun", "Exponential"), ("DPM++ 3M SDE", "Exponential"), ("Euler", "Uniform"),
    ("Euler a", "Uniform"), ("LMS", "Uniform"), ("Heun", "Uniform"), ("LCM", "Uniform"),
    ("DDIM", None), ("PLMS", None), ("UniPC", None),
])
def test_a1111_labels_take_their_automatic_schedule(sampler: str, expected: str | None) -> None:
    assert pair(sampler) == pair(sampler, "Automatic") == (sampler, expected)


@pytest.mark.parametrize(("name", "expected"), [
    ("DPM++ 2M Karras", ("DPM++ 2M", "Karras")), ("LMS Karras", ("LMS", "Karras")),
    ("DPM++ 2M SDE Exponential", ("DPM++ 2M SDE", "Exponential")),
    ("DPM++ 2M SDE Heun Karras", ("DPM++ 2M SDE Heun", "Karras")), ("DPM2 a Karras", ("DPM2 a", "Karras")),
    ("DPM++ 3M SDE Karras", ("DPM++ 3M SDE", "Karras")), ("Euler SGM Uniform", ("Euler", "SGM Uniform")),
    ("Euler Align Your Steps", ("Euler", "Align Your Steps")), ("DPM++ 2M Uniform", ("DPM++ 2M", "Uniform")),
])
def test_pre_19_combined_names(name: str, expected: tuple[str, str]) -> None:
    assert pair(name) == expected
    assert pair(name, expected[1]) == expected  # naming the same schedule twice is fine


@pytest.mark.parametrize(("sampler", "scheduler", "expected"), [
    ("dpmpp_2m", "karras", ("DPM++ 2M", "Karras")), ("euler_ancestral", "normal", ("Euler a", "Normal")),
    ("dpmpp_2m_sde_gpu", "exponential", ("DPM++ 2M SDE", "Exponential")),
    ("dpmpp_3m_sde", "sgm_uniform", ("DPM++ 3M SDE", "SGM Uniform")), ("dpmpp_sde", "karras", ("DPM++ SDE", "Karras")),
    ("dpm_2_ancestral", "simple", ("DPM2 a", "Simple")), ("heun", "ddim_uniform", ("Heun", "DDIM")),
    ("lcm", "simple", ("LCM", "Simple")), ("euler", "beta", ("Euler", "Beta")),
    ("dpmpp_2s_ancestral", "kl_optimal", ("DPM++ 2S a", "KL Optimal")), ("lms", None, ("LMS", "Uniform")),
    ("ddim", None, ("DDIM", None)), ("uni_pc", None, ("UniPC", None)),
    ("k_dpmpp_2m", None, ("DPM++ 2M", "Karras")), ("k_euler_a", "Karras", ("Euler a", "Karras")),
    ("DPM++ 2M", "SGMUniform", ("DPM++ 2M", "SGM Uniform")),
])
def test_comfyui_names_and_a1111_aliases(sampler: str, scheduler: str | None, expected: tuple) -> None:
    assert pair(sampler, scheduler) == expected


def test_every_row_names_code_that_exists() -> None:
    for info in SAMPLER_TABLE:
        assert callable(info.load()), info.name
    for schedule in SCHEDULE_TABLE:
        assert callable(schedule.load()), schedule.label
    owners: dict[str, set[str]] = {}
    for info in SAMPLER_TABLE:
        for alias in (info.name, *info.comfy, *info.aliases):
            owners.setdefault(alias, set()).add(info.name)
    assert all(len(names) == 1 for names in owners.values()), owners  # no name means two samplers


def test_unknown_names_say_what_is_meant() -> None:
    with pytest.raises(SpecError, match="did you mean 'DPM\\+\\+ 2M Karras'") as raised:
        resolve_sampler("DPM++ 2M karas")
    assert all(name in str(raised.value) for name in SAMPLERS)
    with pytest.raises(SpecError, match="did you mean 'dpmpp_2m_sde'"):
        resolve_sampler("dpmpp_2m_sdee")
    with pytest.raises(SpecError, match="unknown schedule type 'Karas'; did you mean 'Karras'"):
        resolve_sampler("DPM++ 2M", "Karas")
    with pytest.raises(SpecError, match="already names the schedule 'Karras'"):
        resolve_sampler("DPM++ 2M Karras", "Exponential")
    with pytest.raises(SpecError, match="own timestep grid"):
        resolve_sampler("uni_pc", "karras")
    with pytest.raises(SpecError, match="unknown sampler 'DDIM Karras'"):
        resolve_sampler("DDIM Karras")


def test_prompt_editing_counts_model_calls_like_a1111() -> None:
    second_order = {info.name for info in SAMPLER_TABLE if info.second_order}
    assert second_order == {"DPM++ SDE", "DPM++ 2S a", "Heun", "DPM2", "DPM2 a", "Restart"}  # A1111 1.10's list
    assert schedule_steps("Euler", 20) == schedule_steps("DPM++ 2M Karras", 20) == 20
    assert schedule_steps("DPM2 a Karras", 20) == schedule_steps("heun", 20, "karras") == 40


def test_timestep_samplers_use_a1111s_grid() -> None:
    assert timestep_grid(20).tolist() == list(range(1, 1000, 50))  # range(0, 1000, 1000 // 20) + 1
    grid = timestep_grid(30)
    assert len(grid) == 31 and grid[-1] == 991  # 1000 // 30 = 33 does not divide 1000: one more timestep


def count_calls(name: str, steps: int) -> int:
    from ckptbench.demo.tiny import tiny_sd15_pipeline
    from ckptbench.generate.conditioning import encode_prompts
    from ckptbench.generate.samplers.run import SamplingModel, txt2img

    pipe = _pipe(tiny_sd15_pipeline)
    calls = []
    hook = pipe.unet.register_forward_hook(lambda *_: calls.append(1))
    try:
        with torch.inference_mode():
            conditioning = encode_prompts(pipe, ["a cube"], [""], steps=steps)
            txt2img(SamplingModel.of(pipe), resolve_sampler(name), conditioning, steps=steps, cfg=7, seeds=[1],
                    width=16, height=16)
    finally:
        hook.remove()
    return len(calls)


_PIPES: dict = {}


def _pipe(factory):
    if "sd15" not in _PIPES:
        _PIPES["sd15"] = factory(seed=1)
    return _PIPES["sd15"]


@pytest.mark.parametrize(("name", "steps", "calls"), [
    ("Euler", 6, 6), ("Heun", 6, 11), ("DPM2", 6, 11),  # DPM2: 7 sigmas, the next-to-last dropped
    ("DDIM", 20, 19), ("DDIM", 30, 30), ("PLMS", 6, 7), ("UniPC", 6, 7), ("Restart", 6, 11),
])
def test_unet_calls_are_a1111s(name: str, steps: int, calls: int) -> None:
    assert count_calls(name, steps) == calls


# The samplers issue 3 named; the rest run in the slow set.
LISTED = ("Euler", "Euler a", "DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "DDIM", "UniPC", "Heun", "LMS")


def generate_with_each(names, make_job, checkpoint) -> dict[str, np.ndarray]:
    jobs = [make_job(sampler=name, steps=3) for name in names]
    results = {r.job.settings.sampler: r for r in DiffusersGenerator(torch.device("cpu"), 1).generate(checkpoint, jobs)}
    assert set(results) == set(names)
    images = {}
    for name, result in results.items():
        assert isinstance(result, GeneratedImage), f"{name}: {getattr(result, 'error', '')}"
        images[name] = np.asarray(result.image, dtype=np.float32)
        assert np.isfinite(images[name]).all() and images[name].std() > 1.0, name
    return images


def test_every_listed_sampler_makes_a_finite_image(make_job, tiny_checkpoint) -> None:
    images = generate_with_each(LISTED, make_job, tiny_checkpoint)
    # the samplers really differ: a deterministic sampler and an ancestral one give different images
    assert np.abs(images["Euler"] - images["Euler a"]).max() > 5


@pytest.mark.slow
def test_every_other_sampler_makes_a_finite_image(make_job, tiny_checkpoint) -> None:
    generate_with_each([name for name in SAMPLERS if name not in LISTED], make_job, tiny_checkpoint)
