"""Real-size layouts without real-size memory: the bundled configs' modules on the meta device.

Each family's full-size diffusers modules are written in the original layout (shapes only), detected,
normalised and converted back with diffusers' own converters: every tensor must come back with its
name and shape. This checks the bundled configs, the detection rules and the text-encoder handling
(SD2's skipped 24th OpenCLIP layer, SDXL's two encoders) at the sizes of real Civitai files.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders.single_file_utils import (
    convert_ldm_clip_checkpoint,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
    convert_open_clip_checkpoint,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from ckptbench.models.checkpoint import BUNDLED_CONFIGS
from ckptbench.models.components import normalise_text_keys
from ckptbench.models.detect import detect
from ckptbench.models.families import get_family
from ckptbench.models.ldm_layout import OPEN_CLIP_PREFIX, pipeline_to_ldm, sdxl_pipeline_to_sgm
from ckptbench.models.state_dict import ModelFile, TensorInfo


def _modules(family: str) -> dict[str, torch.nn.Module]:
    folder = BUNDLED_CONFIGS / family
    with init_empty_weights():
        modules = {"unet": UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet")),
                   "vae": AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae")),
                   "text_encoder": CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))}
        if family == "sdxl":
            config = CLIPTextConfig.from_pretrained(folder / "text_encoder_2")
            modules["text_encoder_2"] = CLIPTextModelWithProjection(config)
    return modules


def _shapes(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {key: tuple(tensor.shape) for key, tensor in state.items() if not key.endswith("position_ids")}


@pytest.mark.parametrize(("family", "expected"), [("sd15", "sd15"), ("sd2", "sd2"), ("sd2-v", "sd2"),
                                                  ("sdxl", "sdxl")])
def test_real_size_original_layout_is_detected_and_converts_back(family: str, expected: str) -> None:
    modules = _modules(family)
    if family == "sdxl":
        state = sdxl_pipeline_to_sgm(modules["unet"], modules["vae"], modules["text_encoder"],
                                     modules["text_encoder_2"])
    else:
        state = pipeline_to_ldm(modules["unet"], modules["vae"], modules["text_encoder"], open_clip=expected == "sd2")
    if expected == "sd2":  # real SD2 files hold all 24 OpenCLIP layers; diffusers' config keeps 23
        last = f"{OPEN_CLIP_PREFIX}transformer.resblocks.22."
        state.update({key.replace(".22.", ".23."): value for key, value in state.items() if key.startswith(last)})
    model = ModelFile(Path("real-size.safetensors"), "safetensors",
                      {key: TensorInfo("F16", tuple(value.shape)) for key, value in state.items()}, {})
    found = detect(model)
    assert (found.kind, found.family, found.problem, found.warnings) == ("checkpoint", expected, None, ())
    # The header-only size check (validate, planning) accepts every real-size layout against its bundled config.
    assert get_family(expected).size_problem(model, BUNDLED_CONFIGS / family, baked_vae=True) is None

    state = normalise_text_keys(state, expected, BUNDLED_CONFIGS / family)
    unet = convert_ldm_unet_checkpoint(state, modules["unet"].config)
    assert _shapes(unet) == _shapes(modules["unet"].state_dict())
    vae = convert_ldm_vae_checkpoint({k: v for k, v in state.items() if k.startswith("first_stage_model.")},
                                     modules["vae"].config)
    assert _shapes(vae) == _shapes(modules["vae"].state_dict())
    if family == "sdxl":
        clip_l = convert_ldm_clip_checkpoint({k: v for k, v in state.items()
                                              if k.startswith("conditioner.embedders.0.")})
        big_g = convert_open_clip_checkpoint(modules["text_encoder_2"], state, prefix="conditioner.embedders.1.model.")
        assert _shapes({k.removeprefix("text_model."): v for k, v in clip_l.items()}) == _shapes(
            modules["text_encoder"].state_dict())
        assert _shapes(big_g) == _shapes(modules["text_encoder_2"].state_dict())
    elif expected == "sd2":
        text = convert_open_clip_checkpoint(modules["text_encoder"], state)
        assert _shapes({k.removeprefix("text_model."): v for k, v in text.items()}) == _shapes(
            modules["text_encoder"].state_dict())
    else:
        text = convert_ldm_clip_checkpoint(state)
        assert _shapes({k.removeprefix("text_model."): v for k, v in text.items()}) == _shapes(
            modules["text_encoder"].state_dict())
