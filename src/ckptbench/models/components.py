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


def read_original_state(path: Path, allow_pickle: bool, skip_vae: bool = False, skip: tuple[str, ...] = ()) -> State:
    """The tensors a pipeline needs from a single file: EMA copies skipped, the VAE too if one is given, and the
    tensors under the ``skip`` prefixes (parts replaced by separate files)."""
    skipped = ("model_ema.", *((VAE, "vae.") if skip_vae else ()), *skip)

    def keep(name: str) -> bool:
        return not name.startswith(skipped)

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


FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)


def _cast_for(dtype: torch.dtype) -> Any:
    """Per-tensor cast to the run dtype, done as each tensor is taken from the file's state (never all at once)."""
    def cast(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.to(dtype) if tensor.is_floating_point() and tensor.dtype != dtype else tensor
    return cast


def _assign(model: torch.nn.Module, state: State, what: str) -> None:
    """Put the tensors into a model built on the meta device, by reference (``assign``): no second copy."""
    result = model.load_state_dict(state, strict=False, assign=True)
    unexpected = [key for key in result.unexpected_keys if not key.endswith("position_ids")]
    if unexpected:
        raise ModelFileError(f"the {what} has {len(unexpected)} tensors its architecture does not know (e.g. "
                             f"{', '.join(unexpected[:3])}); check the config folder")


def build_clip_encoder(state: State, prefix: str, model_class: str, config: Path, component: str,
                       dtype: torch.dtype) -> Any:
    """A CLIP text encoder stored in transformers' own names under ``prefix`` (the ComfyUI/SD3 layout).

    ``CLIPTextModelWithProjection`` for CLIP-L gets an identity projection, as diffusers' SD3 loader and
    ComfyUI use its pooled output unprojected; a plain ``CLIPTextModel`` (Flux) drops the projection.
    """
    from accelerate import init_empty_weights

    cls = getattr(transformers, model_class)
    model_config = cls.config_class.from_pretrained(str(config), subfolder=component, local_files_only=True)
    with init_empty_weights():
        model = cls(model_config)
    cast = _cast_for(dtype)
    wrapped = hasattr(model, "text_model")
    converted: State = {}
    for name in list(state):
        key = name[len(prefix):]
        tensor = cast(state.pop(name))
        if key.startswith("text_projection"):
            if model_class == "CLIPTextModelWithProjection" and "clip_l" not in prefix:
                converted[key] = tensor
            continue
        key = key if key.startswith("text_model.") else "text_model." + key
        converted[key if wrapped else key.removeprefix("text_model.")] = tensor
    if model_class == "CLIPTextModelWithProjection" and "text_projection.weight" not in converted:
        width = model_config.hidden_size
        converted["text_projection.weight"] = torch.eye(width, model_config.projection_dim, dtype=dtype).T.contiguous()
    _assign(model, converted, component)
    return _complete(model, component)


def build_t5_encoder(state: State, config: Path, component: str, dtype: torch.dtype) -> Any:
    """A T5 encoder from ``text_encoders.t5xxl.transformer.*`` (transformers' names); fp8-stored weights are
    upcast tensor by tensor; in fp16 the feed-forward output layers stay fp32, as transformers keeps them."""
    from accelerate import init_empty_weights

    from ckptbench.models.families.flow import TEXT_PREFIXES

    prefix = TEXT_PREFIXES["t5xxl"]
    model_config = transformers.T5Config.from_pretrained(str(config), subfolder=component, local_files_only=True)
    with init_empty_weights():
        model = transformers.T5EncoderModel(model_config)
    keep_fp32 = dtype == torch.float16
    converted: State = {}
    for name in list(state):
        key = name[len(prefix):]
        tensor = state.pop(name)
        if key == "scaled_fp8" or key.endswith(".scale_weight") or key.endswith(".scale_input"):
            raise ModelFileError("the T5 text encoder is stored as ComfyUI's scaled fp8 (scale_weight tensors), "
                                 "which ckptbench does not read; use t5xxl_fp16.safetensors or a plain fp8 file")
        wanted = torch.float32 if keep_fp32 and ".DenseReluDense.wo." in key else dtype
        converted[key] = tensor.to(wanted) if tensor.is_floating_point() else tensor
    if "encoder.embed_tokens.weight" not in converted and "shared.weight" in converted:
        converted["encoder.embed_tokens.weight"] = converted["shared.weight"]  # tied in T5
    if "shared.weight" not in converted and "encoder.embed_tokens.weight" in converted:
        converted["shared.weight"] = converted["encoder.embed_tokens.weight"]
    _assign(model, converted, component)
    return _complete(model, component)


def build_flow_transformer(state: State, model_class: str, config: Path, dtype: torch.dtype) -> Any:
    """A Flux / SD3 transformer from ``model.diffusion_model.*`` in the original layout.

    Tensors move from ``state`` into the model one by one (no second copy). The linear layers of a file
    stored in fp8 keep their fp8 weights and upcast them to the run dtype in each forward pass (as
    ComfyUI's and Forge's "manual cast" layers do); every other tensor (biases, norms, embeddings) is held in
    the run dtype, so the model computes with exactly the file's values.
    """
    import diffusers
    from accelerate import init_empty_weights
    from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers

    from ckptbench.models.transformer_layout import to_diffusers

    cls = getattr(diffusers, model_class)
    sub_state = {name[len(UNET):]: state.pop(name) for name in [n for n in state if n.startswith(UNET)]}
    if not sub_state:
        raise ModelFileError("the file holds no transformer (model.diffusion_model.*)")
    # Both pop from sub_state as they go. diffusers' Flux converter assumes the real model's width, so Flux goes
    # through our table (checked against it at that width in the tests).
    if model_class == "FluxTransformer2DModel":
        converted = to_diffusers(sub_state, "flux")
    else:
        converted = convert_sd3_transformer_checkpoint_to_diffusers(sub_state)
    with init_empty_weights():
        model = cls.from_config(cls.load_config(str(config), subfolder="transformer"))
    linear_weights = {f"{name}.weight" for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    for key in list(converted):
        tensor = converted[key]
        keep_fp8 = tensor.dtype in FP8_DTYPES and key in linear_weights
        if tensor.is_floating_point() and tensor.dtype != dtype and not keep_fp8:
            converted[key] = tensor.to(dtype)
    _assign(model, converted, "transformer")
    del converted
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and module.weight.dtype in FP8_DTYPES:
            module.__class__ = UpcastLinear
    return _complete(model, "transformer")


class UpcastLinear(torch.nn.Linear):
    """A linear layer whose weight is stored in fp8 and upcast to the input's dtype for each product."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return torch.nn.functional.linear(x, self.weight.to(x.dtype), bias)
