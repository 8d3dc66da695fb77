"""Stable Diffusion 1.x: one OpenAI CLIP-L text encoder (``cond_stage_model.transformer.*``), 768 wide."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ckptbench.models.detect import CLIP_SD1, UNET
from ckptbench.models.families.base import FamilyMatch
from ckptbench.models.families.unet import TextEncoderPart, UnetFamily, tensor_width, text_activation

if TYPE_CHECKING:
    from ckptbench.models.state_dict import ModelFile


@dataclass(frozen=True)
class Sd15Family(UnetFamily):
    def match_text_encoders(self, model: ModelFile) -> FamilyMatch | None:
        if not model.has_prefix(CLIP_SD1):
            return None
        t = model.tensors
        notes: tuple[str, ...] = ()
        if any(n.startswith(CLIP_SD1) and not n.startswith(CLIP_SD1 + "text_model.") for n in t):
            notes = ("old text-encoder key layout (cond_stage_model.transformer.* without text_model.): renamed "
                     "when loading",)
        width = (tensor_width(t, CLIP_SD1 + "text_model.embeddings.token_embedding.weight")
                 or tensor_width(t, CLIP_SD1 + "embeddings.token_embedding.weight"))
        return FamilyMatch(self.name, ("OpenAI CLIP-L text encoder (cond_stage_model.transformer.*) → sd15",),
                           text_width=width, notes=notes)

    def folder_family_evidence(self, folder: Path, class_name: str) -> str | None:
        if class_name != "StableDiffusionPipeline" or (act := text_activation(folder)) == "gelu":
            return None
        return f"StableDiffusionPipeline with a {act} text encoder (OpenAI CLIP) → sd15"

    def assemble(self, modules: dict[str, Any]) -> Any:
        from ckptbench.models.tokenizer import clip_tokenizer

        return super().assemble({"tokenizer": clip_tokenizer(), **modules})

    def unet_problem(self, t: dict) -> str | None:
        if UNET + "label_emb.0.0.weight" in t:
            return ("the UNet has a class/image embedding (label_emb) with an SD1/SD2 text encoder: an unCLIP "
                    "variant, which ckptbench does not support")
        return super().unet_problem(t)


FAMILY = Sd15Family(
    name="sd15", title="Stable Diffusion 1.x", config_name="sd15",
    pipeline_class="StableDiffusionPipeline",
    components={UNET: "unet", "first_stage_model.": "vae", CLIP_SD1: "text_encoder"},
    bytes_per_image_512=0.9e9, predictions=("epsilon", "v"),
    text_parts=(TextEncoderPart("text_encoder", "CLIPTextModel", CLIP_SD1),),
    cross_attention_width=768, proj_in_linear=False,
    example='[[checkpoints]]\nname = "dreamshaper-8"\npath = "models/dreamshaper_8.safetensors"',
)
