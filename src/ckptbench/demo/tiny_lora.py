"""Random LoRAs for a (tiny) pipeline in the real file layouts: kohya (both naming styles) and peft.

* kohya, diffusers-style names: ``lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight``,
  ``…lora_up.weight`` and a scalar ``…alpha``; text encoder ``lora_te_text_model_encoder_layers_0_…``;
* kohya, LDM-style names: the same layers under their original-UNet names
  (``lora_unet_input_blocks_1_1_proj_in…``), as kohya's SD1.x trainer on the original UNet writes them;
* peft/diffusers: ``unet.<module>.lora_A.weight`` / ``lora_B.weight`` and
  ``text_encoder.text_model.<module>.lora_…``, as ``save_lora_weights`` writes them.

Shapes follow the layers: linear ``(rank, in)`` / ``(out, rank)``; 1×1 convolutions ``(rank, in, 1, 1)`` /
``(out, rank, 1, 1)``. The LDM names come from ``ldm_layout.unet_to_ldm``, the mapping the single-file
writer uses, so they are the names a real original-layout UNet has.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import save_file

from ckptbench.models.ldm_layout import unet_to_ldm

UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2")
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
KohyaStyle = Literal["diffusers", "ldm"]


def unet_lora_targets(unet: torch.nn.Module) -> list[str]:
    """The UNet layers kohya's trainer adapts: the linear and 1×1 layers of every transformer block."""
    return [name for name, module in unet.named_modules()
            if "attentions." in name and name.endswith(UNET_TARGETS)
            and isinstance(module, torch.nn.Linear | torch.nn.Conv2d)]


def text_lora_targets(text_encoder: torch.nn.Module) -> list[str]:
    """Text-encoder layers, named as in real files (``text_model.encoder…``) whatever transformers' nesting."""
    names = [name for name, module in text_encoder.named_modules()
             if name.endswith(TEXT_TARGETS) and isinstance(module, torch.nn.Linear)]
    return [name if name.startswith("text_model.") else f"text_model.{name}" for name in names]


def _module(root: torch.nn.Module, name: str) -> torch.nn.Module:
    if not hasattr(root, "text_model"):
        name = name.removeprefix("text_model.")
    return root.get_submodule(name)


def _factors(layer: torch.nn.Module, rank: int, scale: float, generator: torch.Generator
             ) -> tuple[torch.Tensor, torch.Tensor]:
    weight = layer.weight
    out_features, in_features = weight.shape[0], weight.shape[1]
    down = torch.randn(rank, in_features, generator=generator) * scale
    up = torch.randn(out_features, rank, generator=generator) * scale
    if weight.ndim == 4:  # 1×1 convolution
        down, up = down[:, :, None, None], up[:, :, None, None]
    return down.contiguous(), up.contiguous()


def ldm_unet_names(unet: torch.nn.Module) -> dict[str, str]:
    """diffusers module name → original (LDM) UNet module name, for every weight-bearing module."""
    state = unet.state_dict()
    ldm = unet_to_ldm(state, unet.config)  # type: ignore[arg-type]
    by_tensor = {id(tensor): key for key, tensor in ldm.items()}
    return {key.removesuffix(".weight"): by_tensor[id(tensor)].removesuffix(".weight")
            for key, tensor in state.items() if key.endswith(".weight")}


def kohya_lora(unet: torch.nn.Module, text_encoder: torch.nn.Module | None, style: KohyaStyle = "diffusers",
               rank: int = 4, alpha: float = 2.0, scale: float = 0.3, seed: int = 0,
               extra_unet_names: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """A random kohya LoRA; ``extra_unet_names`` adds layers (diffusers names) the model may not have."""
    generator = torch.Generator().manual_seed(seed)
    ldm_names = ldm_unet_names(unet) if style == "ldm" else {}
    state: dict[str, torch.Tensor] = {}
    for name in unet_lora_targets(unet):
        down, up = _factors(unet.get_submodule(name), rank, scale, generator)
        kohya = "lora_unet_" + ldm_names.get(name, name).replace(".", "_")
        state.update({f"{kohya}.lora_down.weight": down, f"{kohya}.lora_up.weight": up,
                      f"{kohya}.alpha": torch.tensor(float(alpha))})
    for name in extra_unet_names:
        kohya = "lora_unet_" + name.replace(".", "_")
        state.update({f"{kohya}.lora_down.weight": torch.randn(rank, 8, generator=generator) * scale,
                      f"{kohya}.lora_up.weight": torch.randn(8, rank, generator=generator) * scale,
                      f"{kohya}.alpha": torch.tensor(float(alpha))})
    if text_encoder is not None:
        for name in text_lora_targets(text_encoder):
            down, up = _factors(_module(text_encoder, name), rank, scale, generator)
            kohya = "lora_te_" + name.replace(".", "_")
            state.update({f"{kohya}.lora_down.weight": down, f"{kohya}.lora_up.weight": up,
                          f"{kohya}.alpha": torch.tensor(float(alpha))})
    return state


def peft_lora(unet: torch.nn.Module, text_encoder: torch.nn.Module | None, rank: int = 4, scale: float = 0.3,
              seed: int = 0, kohya_alpha: float | None = None) -> dict[str, torch.Tensor]:
    """A random LoRA in the peft/diffusers layout (``lora_A``/``lora_B``; no alpha stored, so scaling 1).

    With ``kohya_alpha``, ``lora_B`` is multiplied by ``alpha / rank``: the same seed then gives exactly
    the LoRA that ``kohya_lora`` makes with that alpha, written in the other format.
    """
    generator = torch.Generator().manual_seed(seed)
    factor = 1.0 if kohya_alpha is None else kohya_alpha / rank
    state: dict[str, torch.Tensor] = {}
    for name in unet_lora_targets(unet):
        down, up = _factors(unet.get_submodule(name), rank, scale, generator)
        state.update({f"unet.{name}.lora_A.weight": down, f"unet.{name}.lora_B.weight": up * factor})
    if text_encoder is not None:
        for name in text_lora_targets(text_encoder):
            down, up = _factors(_module(text_encoder, name), rank, scale, generator)
            state.update({f"text_encoder.{name}.lora_A.weight": down,
                          f"text_encoder.{name}.lora_B.weight": up * factor})
    return state


def save_lora(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({key: tensor.contiguous() for key, tensor in state.items()}, str(path), metadata=metadata)
    return path
