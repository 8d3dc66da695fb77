"""Diffusers modules from an original-layout (LDM/SGM) state dict, offline, with an explicit config folder.

diffusers' pipeline-level ``from_single_file`` can only take a path and reaches for the hub whenever it
is unsure of the architecture. Here each module is built from a state dict we read ourselves (after the
safety checks) and a config folder we name, with diffusers' own key converters; the few real-world
variants those converters do not expect are normalised first:

* old SD1 text-encoder names without ``text_model.``; stale ``position_ids`` buffers;
* SD2 files hold OpenCLIP's last layer, which SD2 skips (it conditions on the penultimate layer);
* ``model_ema.*`` copies and noise-schedule buffers (ignored: A1111 samples with ``model.diffusion_model``).

Every module is checked for tensors the file did not provide, so a partial file fails loudly instead of
leaving random or uninitialised weights behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import transformers
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm

from ckptbench.errors import ModelFileError
from ckptbench.models.detect import CLIP_SD1, UNET, VAE, Family
from ckptbench.models.families import get_family
from ckptbench.models.state_dict import load_tensors

if TYPE_CHECKING:
    from ckptbench.models.families.unet import TextEncoderPart

State = dict[str, torch.Tensor]


def read_original_state(path: Path, allow_pickle: bool, skip_vae: bool = False) -> State:
    """The tensors a pipeline needs from a single file (EMA copies skipped; the VAE too if one is given)."""

    def keep(name: str) -> bool:
        return not name.startswith("model_ema.") and not (skip_vae and name.startswith(VAE))

    return load_tensors(path, allow_pickle, keep, how_to_allow="set allow_pickle = true for this checkpoint")


def normalise_text_keys(state: State, family: Family, config: Path) -> State:
    """Rename and drop text-encoder tensors so that diffusers' converters see the layout they expect."""
    return get_family(family).normalise_state(normalise_clip_keys(state), config)


def normalise_clip_keys(state: State) -> State:
    """Old SD1 text-encoder names gain ``text_model.``; stale ``position_ids`` buffers are dropped."""
    out: State = {}
    for name, tensor in state.items():
        if name.endswith("position_ids"):
            continue  # a buffer, not a weight; some files carry corrupted (float) copies
        if name.startswith(CLIP_SD1) and not name.startswith(CLIP_SD1 + "text_model."):
            name = CLIP_SD1 + "text_model." + name[len(CLIP_SD1):]
        out[name] = tensor
    return out


def build_unet(state: State, config: Path, dtype: torch.dtype) -> UNet2DConditionModel:
    unet_state = {name: tensor for name, tensor in state.items() if name.startswith(UNET)}
    if not unet_state:
        raise ModelFileError("the file holds no UNet (model.diffusion_model.*)")
    unet = UNet2DConditionModel.from_single_file(unet_state, config=str(config), subfolder="unet",
                                                 local_files_only=True, torch_dtype=dtype)
    return _complete(unet, "UNet")


def build_vae(state: State, config: Path, dtype: torch.dtype) -> AutoencoderKL:
    """A VAE from a checkpoint's ``first_stage_model.*``, or a VAE file in original or diffusers layout."""
    vae = AutoencoderKL.from_single_file(state, config=str(config), subfolder="vae", local_files_only=True,
                                         torch_dtype=dtype)
    return _complete(vae, "VAE")


def build_text_encoders(state: State, parts: Sequence[TextEncoderPart], config: Path, dtype: torch.dtype
                        ) -> dict[str, Any]:
    """The family's CLIP / OpenCLIP text encoders (``text_encoder``, SDXL's ``text_encoder_2``) from the file."""
    encoders: dict[str, Any] = {}
    for part in parts:
        # Only this encoder's tensors: diffusers tells encoders apart by key and width, which tiny or unusual
        # files could confuse.
        sub_state = {key: tensor for key, tensor in state.items() if key.startswith(part.prefix)}
        if not sub_state:
            raise ModelFileError(f"the file has no {part.component} tensors ({part.prefix}*)")
        model_class = getattr(transformers, part.model_class)
        model = create_diffusers_clip_model_from_ldm(model_class, checkpoint=sub_state, subfolder=part.component,
                                                     config=str(config), torch_dtype=dtype, local_files_only=True)
        encoders[part.component] = _complete(model, part.component)
    return encoders


def _complete(module: torch.nn.Module, what: str) -> Any:
    """Refuse a module the file left partly unset (diffusers leaves such parameters on the meta device)."""
    missing = [name for name, tensor in [*module.named_parameters(), *module.named_buffers()]
               if tensor.device.type == "meta"]
    if missing:
        raise ModelFileError(f"the {what} is incomplete: {len(missing)} tensors are missing from the file "
                             f"(e.g. {', '.join(missing[:3])})")
    return module.eval()


@torch.no_grad()
def a1111_v_prediction_test(unet: UNet2DConditionModel) -> tuple[bool, float]:
    """A1111's test for SD2 files that carry no marker: does the UNet behave like a v-prediction model?

    Feed a constant latent (0.5) at the last training timestep (999) with a constant context (0.5) and
    average ``output − input``. An epsilon model predicts the noise, which at t=999 is almost the input
    itself, so the mean stays near 0; a v model predicts ``α·ε − σ·x₀``, far below it. A1111 calls it v
    when the mean is below −1 (``modules/sd_models_config.py``, ``is_using_v_parameterization_for_sd2``).
    """
    original_dtype = unet.dtype
    unet.to(torch.float32)
    try:
        x = torch.full((1, unet.config.in_channels, 8, 8), 0.5)
        context = torch.full((1, 2, unet.config.cross_attention_dim), 0.5)
        output = unet(x, torch.tensor([999]), encoder_hidden_states=context).sample
        mean = float((output - x).mean())
    finally:
        unet.to(original_dtype)
    return mean < -1.0, mean
