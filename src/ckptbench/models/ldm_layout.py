"""Diffusers → original (CompVis/A1111 "LDM", Stability "SGM") key layout, for writing single files.

Civitai checkpoints are single files in the original layout. Tests and the demo build tiny models with
diffusers classes and must save them in that same layout, so that loading them exercises exactly the
single-file path real checkpoints take. The mapping below is the inverse of diffusers' own
``convert_ldm_*_checkpoint`` / ``convert_open_clip_checkpoint`` functions; the round trip is checked in
the tests for SD1.x (OpenAI CLIP text encoder), SD2.x (OpenCLIP-H) and SDXL (CLIP-L + OpenCLIP-bigG).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

# The original layout's prefixes are the ones detection reads; the names here say what they are written for.
from ckptbench.models.detect import CLIP_SD1 as TEXT_ENCODER_PREFIX
from ckptbench.models.detect import OPENCLIP_SD2 as OPEN_CLIP_PREFIX
from ckptbench.models.detect import SDXL_CLIP_L as SDXL_CLIP_L_PREFIX
from ckptbench.models.detect import SDXL_OPENCLIP_G as SDXL_OPEN_CLIP_PREFIX
from ckptbench.models.detect import UNET as UNET_PREFIX
from ckptbench.models.detect import VAE as VAE_PREFIX

_RESNET_UNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
                "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
_RESNET_VAE = {"conv_shortcut": "nin_shortcut"}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _rename_prefix(state: Mapping[str, torch.Tensor], old: str, new: str, inner: Mapping[str, str],
                   out: dict[str, torch.Tensor]) -> None:
    for key, tensor in state.items():
        if not key.startswith(old + "."):
            continue
        rest = key[len(old) + 1 :]
        for before, after in inner.items():
            if rest == before or rest.startswith(before + "."):
                rest = after + rest[len(before) :]
                break
        out[new + "." + rest] = tensor


def unet_to_ldm(state: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Map a diffusers ``UNet2DConditionModel`` state dict to ``model.diffusion_model.*`` keys."""
    out: dict[str, torch.Tensor] = {}
    per_block = int(config["layers_per_block"])
    blocks = len(config["block_out_channels"])
    simple = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
              "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
              "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
    for old, new in simple.items():
        _rename_prefix(state, old, new, {}, out)
    for i in range(blocks):
        for j in range(per_block):
            index = 1 + i * (per_block + 1) + j
            _rename_prefix(state, f"down_blocks.{i}.resnets.{j}", f"input_blocks.{index}.0", _RESNET_UNET, out)
            _rename_prefix(state, f"down_blocks.{i}.attentions.{j}", f"input_blocks.{index}.1", {}, out)
        if i < blocks - 1:
            index = 1 + i * (per_block + 1) + per_block
            _rename_prefix(state, f"down_blocks.{i}.downsamplers.0.conv", f"input_blocks.{index}.0.op", {}, out)
    _rename_prefix(state, "mid_block.resnets.0", "middle_block.0", _RESNET_UNET, out)
    _rename_prefix(state, "mid_block.attentions.0", "middle_block.1", {}, out)
    _rename_prefix(state, "mid_block.resnets.1", "middle_block.2", _RESNET_UNET, out)
    for i in range(blocks):
        has_attention = any(k.startswith(f"up_blocks.{i}.attentions.") for k in state)
        for j in range(per_block + 1):
            index = i * (per_block + 1) + j
            _rename_prefix(state, f"up_blocks.{i}.resnets.{j}", f"output_blocks.{index}.0", _RESNET_UNET, out)
            _rename_prefix(state, f"up_blocks.{i}.attentions.{j}", f"output_blocks.{index}.1", {}, out)
        if i < blocks - 1:
            index = i * (per_block + 1) + per_block
            slot = 2 if has_attention else 1
            _rename_prefix(state, f"up_blocks.{i}.upsamplers.0.conv", f"output_blocks.{index}.{slot}.conv", {}, out)
    _check_all_mapped(state, out, "UNet")
    return out


def vae_to_ldm(state: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Map a diffusers ``AutoencoderKL`` state dict to the original ``first_stage_model`` layout."""
    out: dict[str, torch.Tensor] = {}
    blocks = len(config["block_out_channels"])
    per_block = int(config["layers_per_block"])
    for part in ("encoder", "decoder"):
        for name in ("conv_in", "conv_out"):
            _rename_prefix(state, f"{part}.{name}", f"{part}.{name}", {}, out)
        _rename_prefix(state, f"{part}.conv_norm_out", f"{part}.norm_out", {}, out)
        _rename_prefix(state, f"{part}.mid_block.resnets.0", f"{part}.mid.block_1", _RESNET_VAE, out)
        _rename_prefix(state, f"{part}.mid_block.resnets.1", f"{part}.mid.block_2", _RESNET_VAE, out)
        _rename_prefix(state, f"{part}.mid_block.attentions.0", f"{part}.mid.attn_1", _VAE_ATTENTION, out)
    for i in range(blocks):
        for j in range(per_block):
            _rename_prefix(state, f"encoder.down_blocks.{i}.resnets.{j}", f"encoder.down.{i}.block.{j}",
                           _RESNET_VAE, out)
        _rename_prefix(state, f"encoder.down_blocks.{i}.downsamplers.0.conv", f"encoder.down.{i}.downsample.conv",
                       {}, out)
        original = blocks - 1 - i  # the original decoder numbers its up blocks from the bottom
        for j in range(per_block + 1):
            _rename_prefix(state, f"decoder.up_blocks.{i}.resnets.{j}", f"decoder.up.{original}.block.{j}",
                           _RESNET_VAE, out)
        _rename_prefix(state, f"decoder.up_blocks.{i}.upsamplers.0.conv", f"decoder.up.{original}.upsample.conv",
                       {}, out)
    for name in ("quant_conv", "post_quant_conv"):
        _rename_prefix(state, name, name, {}, out)
    for key, tensor in list(out.items()):
        # The original VAE attention uses 1×1 convolutions where diffusers uses linear layers.
        if ".mid.attn_1." in key and key.endswith(".weight") and tensor.ndim == 2:
            out[key] = tensor[:, :, None, None]
    _check_all_mapped(state, out, "VAE")
    return out


def clip_to_ldm(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers ``CLIPTextModel`` state dict with the ``text_model.`` level real files have."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key.endswith("position_ids"):
            continue
        # Real files name the text encoder's tensors `...transformer.text_model.*`; recent transformers versions
        # drop the `text_model.` level from the module's own state dict.
        out[key if key.startswith("text_model.") else "text_model." + key] = tensor
    return out


_OPEN_CLIP_LAYER = {"self_attn.out_proj": "attn.out_proj", "layer_norm1": "ln_1", "layer_norm2": "ln_2",
                    "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}


def open_clip_to_ldm(state: Mapping[str, torch.Tensor], layers: int) -> dict[str, torch.Tensor]:
    """A transformers CLIP text model (with or without projection) → OpenCLIP's own names (``model.*``)."""
    plain = {key.removeprefix("text_model."): tensor for key, tensor in state.items()
             if not key.endswith("position_ids")}
    out = {"token_embedding.weight": plain.pop("embeddings.token_embedding.weight"),
           "positional_embedding": plain.pop("embeddings.position_embedding.weight"),
           "ln_final.weight": plain.pop("final_layer_norm.weight"),
           "ln_final.bias": plain.pop("final_layer_norm.bias")}
    if "text_projection.weight" in plain:  # a Linear in transformers, a bare matrix applied as x @ P in OpenCLIP
        out["text_projection"] = plain.pop("text_projection.weight").T.contiguous()
    for i in range(layers):
        old, new = f"encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for part in ("weight", "bias"):
            # OpenCLIP keeps q, k and v as one packed in-projection.
            out[f"{new}attn.in_proj_{part}"] = torch.cat(
                [plain.pop(f"{old}self_attn.{name}_proj.{part}") for name in ("q", "k", "v")])
            for before, after in _OPEN_CLIP_LAYER.items():
                out[f"{new}{after}.{part}"] = plain.pop(f"{old}{before}.{part}")
    if plain:
        raise ValueError(f"OpenCLIP text encoder: {len(plain)} tensors have no original-layout name, e.g. "
                         f"{sorted(plain)[:5]}")
    return out


def pipeline_to_ldm(unet: torch.nn.Module, vae: torch.nn.Module, text_encoder: torch.nn.Module,
                    open_clip: bool = False) -> dict[str, torch.Tensor]:
    """One original-layout SD1.x (CLIP) or SD2.x (``open_clip=True``) state dict from the diffusers modules."""
    state: dict[str, torch.Tensor] = {}
    for key, tensor in unet_to_ldm(unet.state_dict(), unet.config).items():
        state[UNET_PREFIX + key] = tensor
    for key, tensor in vae_to_ldm(vae.state_dict(), vae.config).items():
        state[VAE_PREFIX + key] = tensor
    if open_clip:
        text = open_clip_to_ldm(text_encoder.state_dict(), text_encoder.config.num_hidden_layers)
        prefix = OPEN_CLIP_PREFIX
    else:
        text, prefix = clip_to_ldm(text_encoder.state_dict()), TEXT_ENCODER_PREFIX
    state.update({prefix + key: tensor for key, tensor in text.items()})
    return {key: tensor.detach().contiguous().clone() for key, tensor in state.items()}


def sdxl_pipeline_to_sgm(unet: torch.nn.Module, vae: torch.nn.Module, text_encoder: torch.nn.Module,
                         text_encoder_2: torch.nn.Module) -> dict[str, torch.Tensor]:
    """One SGM-layout SDXL state dict: UNet, VAE, CLIP-L as embedder 0 and OpenCLIP-bigG as embedder 1."""
    state = {UNET_PREFIX + key: tensor for key, tensor in unet_to_ldm(unet.state_dict(), unet.config).items()}
    state.update({VAE_PREFIX + key: tensor for key, tensor in vae_to_ldm(vae.state_dict(), vae.config).items()})
    state.update({SDXL_CLIP_L_PREFIX + key: tensor for key, tensor in clip_to_ldm(text_encoder.state_dict()).items()})
    big_g = open_clip_to_ldm(text_encoder_2.state_dict(), text_encoder_2.config.num_hidden_layers)
    state.update({SDXL_OPEN_CLIP_PREFIX + key: tensor for key, tensor in big_g.items()})
    return {key: tensor.detach().contiguous().clone() for key, tensor in state.items()}


def _check_all_mapped(state: Mapping[str, torch.Tensor], out: Mapping[str, torch.Tensor], what: str) -> None:
    if len(out) != len(state):
        mapped = set(id(t) for t in out.values())
        left = [k for k, t in state.items() if id(t) not in mapped][:5]
        raise ValueError(f"{what}: {len(state) - len(out)} tensors have no original-layout name, e.g. {left}")
