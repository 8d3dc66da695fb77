"""A1111 sampler names: every one runs on the tiny model, and the noise schedules are A1111's."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ckptbench.demo.tiny import BUNDLED_CONFIGS
from ckptbench.errors import SpecError
from ckptbench.generate.base import GeneratedImage
from ckptbench.generate.diffusers_backend import DiffusersGenerator
from ckptbench.generate.samplers import SAMPLERS, make_scheduler, sampler_recipe, schedule_steps

STEPS = 20
SD15 = json.loads((BUNDLED_CONFIGS / "sd15/scheduler/scheduler_config.json").read_text())


def a1111_sigmas() -> np.ndarray:
    """All 1000 training sigmas of SD1.x, from its scaled-linear betas, in float64."""
    betas = np.linspace(SD15["beta_start"] ** 0.5, SD15["beta_end"] ** 0.5, 1000, dtype=np.float64) ** 2
    alphas = np.cumprod(1 - betas)
    return ((1 - alphas) / alphas) ** 0.5


def uniform_schedule(steps: int) -> np.ndarray:
    # k-diffusion get_sigmas: t = linspace(999, 0, steps); log-sigma interpolated; then 0.
    log_sigmas = np.log(a1111_sigmas())
    t = np.linspace(999, 0, steps)
    low, high = np.floor(t).astype(int), np.ceil(t).astype(int)
    return np.append(np.exp((1 - (t - low)) * log_sigmas[low] + (t - low) * log_sigmas[high]), 0.0)


def karras_schedule(steps: int, rho: float = 7.0) -> np.ndarray:
    sigmas = a1111_sigmas()
    ramp = np.linspace(0, 1, steps)
    low, high = sigmas[0] ** (1 / rho), sigmas[-1] ** (1 / rho)
    return np.append((high + ramp * (low - high)) ** rho, 0.0)


def exponential_schedule(steps: int) -> np.ndarray:
    sigmas = a1111_sigmas()
    return np.append(np.exp(np.linspace(np.log(sigmas[-1]), np.log(sigmas[0]), steps)), 0.0)


def scheduler_sigmas(name: str) -> np.ndarray:
    scheduler = make_scheduler(name, SD15)
    scheduler.set_timesteps(STEPS)
    sigmas = np.asarray(scheduler.sigmas.tolist(), dtype=np.float64)
    # Second-order schedulers repeat each intermediate sigma; the schedule is the distinct values.
    return np.array([s for i, s in enumerate(sigmas) if i == 0 or s != sigmas[i - 1]])


@pytest.mark.parametrize(("name", "expected"), [
    ("Euler", uniform_schedule), ("Euler a", uniform_schedule), ("Heun", uniform_schedule),
    ("LMS", uniform_schedule), ("DPM++ 2M", uniform_schedule), ("DPM++ 2M SDE", uniform_schedule),
    ("DPM++ SDE", uniform_schedule), ("LMS Karras", karras_schedule), ("DPM++ 2M Karras", karras_schedule),
    ("DPM++ SDE Karras", karras_schedule), ("DPM++ 2M SDE Karras", karras_schedule),
    ("DPM++ 2M SDE Exponential", exponential_schedule),
])
def test_k_diffusion_samplers_use_a1111s_sigmas(name: str, expected) -> None:
    np.testing.assert_allclose(scheduler_sigmas(name), expected(STEPS), rtol=1e-4, atol=1e-7)


def test_ddim_uses_the_compvis_timesteps() -> None:
    scheduler = make_scheduler("DDIM", SD15)
    scheduler.set_timesteps(STEPS)
    assert scheduler.timesteps.tolist() == list(range(951, 0, -50))  # range(0, 1000, 1000 // 20) + 1, reversed


def test_unipc_is_time_uniform_to_the_smallest_sigma() -> None:
    scheduler = make_scheduler("UniPC", SD15)
    scheduler.set_timesteps(STEPS)
    sigmas = a1111_sigmas()
    t = np.linspace(999, 0, STEPS + 1).round().astype(int)  # A1111: linspace(1, 1/1000, steps + 1) in VP time
    assert scheduler.timesteps.tolist() == t[:-1].tolist()
    np.testing.assert_allclose(scheduler.sigmas.numpy(), sigmas[t], rtol=1e-4)
    assert (scheduler.config.solver_type, scheduler.config.solver_order) == ("bh1", 3)


def test_prompt_editing_counts_model_calls_like_a1111() -> None:
    assert schedule_steps("Euler", 20) == 20
    assert schedule_steps("DPM++ 2M Karras", 20) == 20
    for name in ("Heun", "DPM2", "DPM2 a Karras", "DPM++ SDE Karras"):  # A1111's second-order samplers
        scheduler = make_scheduler(name, SD15)
        scheduler.set_timesteps(STEPS)
        assert schedule_steps(name, STEPS) == 2 * STEPS >= len(scheduler.timesteps) >= 2 * STEPS - 1, name


def test_unknown_sampler_names_list_the_known_ones() -> None:
    with pytest.raises(SpecError, match="did you mean 'DPM\\+\\+ 2M Karras'") as raised:
        sampler_recipe("DPM++ 2M karas")
    assert all(name in str(raised.value) for name in SAMPLERS)


# The samplers issue 3 names; the remaining ones run in the slow set.
LISTED = ("Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "DPM++ SDE Karras", "DPM++ 2M SDE Karras", "DDIM",
          "UniPC", "Heun", "LMS")


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
