"""Hires fix on the tiny model: size, A1111's step arithmetic, upscalers, infotext and image key."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ckptbench.errors import SpecError
from ckptbench.generate.base import GeneratedImage, HiresSettings
from ckptbench.generate.conditioning import encode_prompts
from ckptbench.generate.hires import HiresFix, hires_settings, second_pass_schedule, target_size
from ckptbench.generate.loading import load_pipeline
from ckptbench.generate.samplers import resolve_sampler
from ckptbench.generate.samplers.run import SamplingModel, img2img_steps, txt2img
from ckptbench.infotext import parse_infotext
from ckptbench.spec import HiresSpec
from tests.generation_helpers import checkpoint, generate, job, settings


def hires(upscaler: str = "latent", steps: int = 0, denoise: float = 0.5, sha: str | None = None) -> HiresSettings:
    return HiresSettings(scale=2.0, denoise=denoise, steps=steps, upscaler=upscaler, upscaler_sha256=sha)


@pytest.fixture(scope="module")
def esrgan_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random ESRGAN (RRDBNet, 2×) in the layout real ESRGAN files have, as .safetensors and .pth."""
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)
    state = ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=2).state_dict()
    path = tmp_path_factory.mktemp("upscalers") / "tiny-esrgan.safetensors"
    save_file({key: tensor.contiguous() for key, tensor in state.items()}, str(path))
    torch.save(state, path.with_suffix(".pth"))
    return path


@pytest.mark.parametrize("base_steps", [1, 3, 7, 20, 28, 50, 150])
@pytest.mark.parametrize("denoise", [0.05, 0.2, 0.33, 0.5, 0.55, 0.7, 0.75, 0.9, 0.999, 1.0])
@pytest.mark.parametrize("hires_steps", [0, 4, 15])
def test_schedule_runs_exactly_the_steps_a1111_runs(base_steps: int, denoise: float, hires_steps: int) -> None:
    schedule, ran = second_pass_schedule(base_steps, hires(steps=hires_steps, denoise=denoise))
    requested = hires_steps or base_steps
    # A1111's setup_img2img_steps: a schedule of int(requested / min(denoise, 0.999)) steps, of which the last
    # `requested` run (t_enc = requested - 1; the k-diffusion samplers run sigmas[schedule - t_enc - 1:]).
    assert schedule == int(requested / min(denoise, 0.999))
    assert ran == requested
    total, t_enc = img2img_steps(ran, denoise)
    assert (total, t_enc) == (schedule, requested - 1)


def test_second_pass_runs_the_requested_unet_steps_at_twice_the_size(tiny_models) -> None:
    pipeline = load_pipeline(checkpoint(tiny_models["folder_a"]), torch.device("cpu"), torch.float32)
    calls: list[tuple[int, ...]] = []
    pipeline.unet.register_forward_hook(lambda module, args, output: calls.append(tuple(args[0].shape[-2:])))
    sampling = settings(hires=hires(steps=4, denoise=0.5), steps=3)
    euler = resolve_sampler("Euler")  # one UNet call per step
    with torch.inference_mode():
        conditioning = encode_prompts(pipeline, ["a red cube"], [""], steps=3)
        latents = txt2img(SamplingModel.of(pipeline), euler, conditioning, steps=3, cfg=7.0, seeds=[1], width=64,
                          height=64)
        second = encode_prompts(pipeline, ["a red cube"], [""], steps=3, hires_steps=4)
        out = HiresFix(pipeline).run(latents, sampling, euler, second, [1])
    assert out.latents.shape == (1, 4, 16, 16)
    assert calls == [(8, 8)] * 3 + [(16, 16)] * 4  # 3 base steps at 64 px, then 4 of an 8-step schedule


@pytest.fixture(scope="module")
def upscaled(tiny_models, esrgan_file) -> dict[str, object]:
    """One generate() call, one job per upscaler (each its own group on the one loaded pipeline)."""
    ckpt = checkpoint(tiny_models["folder_a"])
    upscalers = {"latent": "latent", "lanczos": "lanczos", "esrgan": str(esrgan_file)}
    jobs = [job(ckpt, sampling=settings(hires=hires_settings(HiresSpec(scale=2.0, denoise=0.5, steps=2,
                                                                       upscaler=upscaler))))
            for upscaler in upscalers.values()]
    return dict(zip(upscalers, generate(ckpt, jobs), strict=True))


@pytest.mark.parametrize("upscaler", ["latent", "lanczos", "esrgan"])
def test_hires_doubles_the_size_and_records_its_keys(upscaled, upscaler) -> None:
    result = upscaled[upscaler]
    assert isinstance(result, GeneratedImage), result
    assert result.image.size == (128, 128)
    parameters = parse_infotext(result.infotext).parameters
    assert parameters["Size"] == "64x64"
    assert parameters["Hires upscale"] == "2" and parameters["Hires steps"] == "2"
    assert parameters["Denoising strength"] == "0.5"
    assert parameters["Hires upscaler"] == {"latent": "Latent", "lanczos": "Lanczos", "esrgan": "tiny-esrgan"}[upscaler]


def test_hires_settings_enter_the_image_key(tiny_models, esrgan_file) -> None:
    ckpt = checkpoint(tiny_models["folder_a"])
    keys = {job(ckpt).key}
    for variant in (hires(), hires(denoise=0.6), hires(steps=5), hires("lanczos"),
                    hires(str(esrgan_file), sha="1" * 64), hires(str(esrgan_file), sha="2" * 64)):
        keys.add(job(ckpt, sampling=settings(hires=variant)).key)
    assert len(keys) == 7
    # The model file enters by content, not by path.
    moved = hires("/elsewhere/x.safetensors", sha="1" * 64)
    assert job(ckpt, sampling=settings(hires=moved)).key == job(
        ckpt, sampling=settings(hires=hires(str(esrgan_file), sha="1" * 64))).key


def test_pickle_upscaler_needs_opt_in(esrgan_file) -> None:
    pickled = str(esrgan_file.with_suffix(".pth"))
    with pytest.raises(SpecError, match="pickle file"):
        hires_settings(HiresSpec(upscaler=pickled))
    allowed = hires_settings(HiresSpec(upscaler=pickled, allow_pickle=True))
    assert allowed is not None and allowed.allow_pickle and allowed.upscaler_sha256


def test_target_size_follows_a1111() -> None:
    assert target_size(512, 768, 1.5) == (768, 1152)
    assert target_size(64, 64, 2.0) == (128, 128)
    assert target_size(512, 512, 1.7) == (864, 864)  # int(870.4) = 870, down to the 8-pixel grid
