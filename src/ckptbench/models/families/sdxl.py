"""Stable Diffusion XL: CLIP-L and OpenCLIP-bigG (SGM ``conditioner.embedders.{0,1}``), 2048-wide context.

Files with OpenCLIP-bigG alone as embedder 0 are refiners (refused: ckptbench benchmarks text-to-image
base models). A1111 encodes an empty negative prompt like any other text and never watermarks, so the
pipeline is built with ``force_zeros_for_empty_prompt=False`` and no watermarker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ckptbench.models.detect import REFINER_OPENCLIP_G, SDXL_CLIP_L, SDXL_OPENCLIP_G, UNET
from ckptbench.models.families.base import FamilyMatch
from ckptbench.models.families.unet import TextEncoderPart, UnetFamily, tensor_width

if TYPE_CHECKING:
    from ckptbench.models.state_dict import ModelFile


@dataclass(frozen=True)
class SdxlFamily(UnetFamily):
    def match_text_encoders(self, model: ModelFile) -> FamilyMatch | None:
        t = model.tensors
        if model.has_prefix(SDXL_OPENCLIP_G) or model.has_prefix(SDXL_CLIP_L):
            widths = [tensor_width(t, SDXL_CLIP_L + "text_model.embeddings.token_embedding.weight"),
                      tensor_width(t, SDXL_OPENCLIP_G + "token_embedding.weight")]
            return FamilyMatch(self.name, (
                "SGM conditioner with CLIP-L (conditioner.embedders.0.transformer.*) and OpenCLIP-bigG "
                "(conditioner.embedders.1.model.*) text encoders → sdxl",),
                text_width=sum(w for w in widths if w) if all(widths) else None)
        if model.has_prefix(REFINER_OPENCLIP_G):
            return FamilyMatch(self.name, ("conditioner.embedders.0.model.* only → SDXL refiner",),
                               problem="an SDXL refiner (OpenCLIP-bigG alone as conditioner.embedders.0); ckptbench "
                                       "benchmarks text-to-image base checkpoints")
        return None

    def match_denoiser(self, model: ModelFile) -> FamilyMatch | None:
        if UNET + "label_emb.0.0.weight" in model.tensors:
            return FamilyMatch(self.name, ("no text encoder; the UNet has an ADM vector embedding (label_emb) → sdxl",),
                               has_text_encoder=False)
        return super().match_denoiser(model)

    def assemble(self, modules: dict[str, Any]) -> Any:
        from diffusers import StableDiffusionXLPipeline

        from ckptbench.models.tokenizer import OPEN_CLIP_PAD, clip_tokenizer

        return StableDiffusionXLPipeline(**modules, tokenizer=clip_tokenizer(),
                                         tokenizer_2=clip_tokenizer(OPEN_CLIP_PAD), force_zeros_for_empty_prompt=False,
                                         add_watermarker=False)

    def load_folder(self, path: Path, options: dict[str, Any]) -> Any:
        from diffusers import StableDiffusionXLPipeline

        return StableDiffusionXLPipeline.from_pretrained(str(path), add_watermarker=False, **options)

    def decodes_in_fp32(self, pipeline: Any) -> bool:
        import torch

        vae = pipeline.vae
        return vae.dtype == torch.float16 and bool(getattr(vae.config, "force_upcast", False))


FAMILY = SdxlFamily(
    name="sdxl", title="Stable Diffusion XL (Pony, Illustrious, NoobAI, …)", config_name="sdxl",
    pipeline_class="StableDiffusionXLPipeline",
    components={UNET: "unet", "first_stage_model.": "vae", SDXL_CLIP_L: "text_encoder",
                SDXL_OPENCLIP_G: "text_encoder_2"},
    bytes_per_image_512=1.4e9, predictions=("epsilon", "v"),
    text_parts=(TextEncoderPart("text_encoder", "CLIPTextModel", SDXL_CLIP_L),
                TextEncoderPart("text_encoder_2", "CLIPTextModelWithProjection", SDXL_OPENCLIP_G)),
    cross_attention_width=2048, proj_in_linear=True,
    example='[[checkpoints]]\nname = "noobai-vpred"\npath = "models/noobaiXLVpred10.safetensors"   # v_pred + ztsnr '
            'markers: v-prediction, zero terminal SNR',
)
