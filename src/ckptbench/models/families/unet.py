"""What the UNet families (SD1.x, SD2.x, SDXL) share: the LDM/SGM single-file layout and its checks.

Their files hold ``model.diffusion_model.*`` (the UNet), ``first_stage_model.*`` (the VAE) and their
text encoders under family-specific prefixes; a bare UNet is told apart by its cross-attention width.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ckptbench.models.detect import UNET, VAE, cross_attention_width, tensor_width
from ckptbench.models.families.base import FamilyMatch, ModelFamily, State

__all__ = ["TextEncoderPart", "UnetFamily", "cross_attention_width", "tensor_width", "text_activation"]

if TYPE_CHECKING:
    import torch

    from ckptbench.models.state_dict import ModelFile, TensorInfo


@dataclass(frozen=True)
class TextEncoderPart:
    component: str  # the diffusers pipeline component it fills
    model_class: str  # transformers class name
    prefix: str  # original-layout key prefix


@dataclass(frozen=True)
class UnetFamily(ModelFamily):
    text_parts: tuple[TextEncoderPart, ...] = ()
    cross_attention_width: int = 0  # of the released models: names a bare UNet's family
    proj_in_linear: bool = True  # transformer proj_in: linear (SD2, SDXL) or a 1×1 convolution (SD1)

    def match_denoiser(self, model: ModelFile) -> FamilyMatch | None:
        width = cross_attention_width(model.tensors)
        if width != self.cross_attention_width:
            return None
        return FamilyMatch(self.name, (f"no text encoder; UNet cross-attention width {width} → {self.name}",),
                           has_text_encoder=False)

    def check(self, model: ModelFile, match: FamilyMatch) -> FamilyMatch:
        t = model.tensors
        evidence, warnings = list(match.evidence), list(match.warnings)
        context = cross_attention_width(t)
        if context is not None and match.text_width is not None and context != match.text_width:
            warnings.append(f"the UNet cross-attention width ({context}) differs from the text encoder width "
                            f"({match.text_width}); loading will likely fail")
        proj_in = next((info for name, info in t.items() if name.startswith(UNET)
                        and name.endswith(".proj_in.weight")), None)
        if proj_in is not None:
            linear = len(proj_in.shape) == 2
            evidence.append(f"transformer proj_in is {'linear' if linear else 'a 1×1 convolution'}")
            if linear != self.proj_in_linear:
                warnings.append(f"proj_in is {'linear' if linear else 'convolutional'}, unusual for {self.name}")
        problem = match.problem or self.unet_problem(t)
        return FamilyMatch(match.family, tuple(evidence), match.has_text_encoder, match.text_width, problem,
                           tuple(warnings), match.notes)

    def unet_problem(self, t: dict[str, TensorInfo]) -> str | None:
        conv_in = t.get(UNET + "input_blocks.0.0.weight")
        if conv_in is not None and len(conv_in.shape) == 4 and conv_in.shape[1] != 4:
            channels = conv_in.shape[1]
            what = {9: "an inpainting model", 8: "an instruct-pix2pix model"}.get(channels,
                                                                                  "not a text-to-image UNet")
            return (f"the UNet takes {channels} input channels: {what}; ckptbench benchmarks text-to-image "
                    "checkpoints")
        return None

    def size_problem(self, model: ModelFile, config: Path, baked_vae: bool) -> str | None:
        from ckptbench.models.sizes import unet_checkpoint_size_problem

        return unet_checkpoint_size_problem(model, config, self.text_parts, baked_vae)

    # --- loading -----------------------------------------------------------------------------------------
    def build_modules(self, state: State, config: Path, dtype: torch.dtype) -> dict[str, Any]:
        from ckptbench.models.components import build_text_encoders, build_unet

        modules = build_text_encoders(state, self.text_parts, config, dtype)
        modules["unet"] = build_unet(state, config, dtype)
        return modules

    def vae_state(self, state: State) -> State:
        return {name: tensor for name, tensor in state.items() if name.startswith(VAE)}

    def assemble(self, modules: dict[str, Any]) -> Any:
        from diffusers import StableDiffusionPipeline

        return StableDiffusionPipeline(**modules, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)

    def load_folder(self, path: Path, options: dict[str, Any]) -> Any:
        from diffusers import StableDiffusionPipeline

        return StableDiffusionPipeline.from_pretrained(str(path), safety_checker=None, feature_extractor=None,
                                                       requires_safety_checker=False, **options)


def text_activation(folder: Path) -> str | None:
    """The ``hidden_act`` of a diffusers folder's text encoder: gelu (OpenCLIP, SD2) or quick_gelu (OpenAI CLIP)."""
    text_config = folder / "text_encoder" / "config.json"
    return json.loads(text_config.read_text(encoding="utf-8")).get("hidden_act") if text_config.is_file() else None
