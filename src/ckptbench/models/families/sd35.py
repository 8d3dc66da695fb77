"""Stable Diffusion 3.5 (large, medium): an MMDiT flow-matching transformer with CLIP-L, OpenCLIP-bigG and T5-XXL.

Large has 38 joint blocks with QK normalisation; medium 24 blocks, the first 13 with a second (image-only)
attention (``x_block.attn2``, "MMDiT-X"). SD3.0 medium (24 blocks without either) is refused: its
architecture differs and it is not what people compare today.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ckptbench.models.detect import UNET, VAE
from ckptbench.models.families.base import FamilyMatch, State
from ckptbench.models.families.flow import TEXT_PREFIXES, FlowFamily, has_key

if TYPE_CHECKING:
    import torch

    from ckptbench.models.state_dict import ModelFile


SHIFT = 3.0  # ComfyUI's ModelSamplingSD3 default for SD3 and SD3.5


@dataclass(frozen=True)
class Sd35Family(FlowFamily):
    def sigma(self, t: float, variant: str | None) -> float:
        return SHIFT * t / (1 + (SHIFT - 1) * t)

    def condition(self, pipeline: Any, parsed: Any) -> Any:
        from ckptbench.generate.flow_conditioning import sd35_conditioning

        return sd35_conditioning(pipeline, parsed)

    def predict_flow(self, *args: Any) -> Any:
        from ckptbench.generate.flow_sampling import mmdit_flow

        return mmdit_flow(*args)

    def variant_of(self, model: ModelFile) -> str | None:
        t = model.tensors
        if has_key(t, "joint_blocks.37.x_block.mlp.fc1.weight"):
            return "large"
        if any(".x_block.attn2." in name for name in t):
            return "medium"
        return None

    def folder_variant(self, folder: Path) -> str | None:
        import json

        config = json.loads((folder / "transformer" / "config.json").read_text(encoding="utf-8"))
        return "large" if config.get("num_layers", 0) >= 38 else "medium"

    def check(self, model: ModelFile, match: FamilyMatch) -> FamilyMatch:
        blocks = len({name.split("joint_blocks.")[1].split(".")[0] for name in model.tensors
                      if "joint_blocks." in name})
        if match.variant is None:
            return FamilyMatch(match.family, (*match.evidence, f"{blocks} joint blocks without dual attention"),
                               match.has_text_encoder, problem="an SD3 (3.0) medium transformer; ckptbench loads "
                               "SD3.5 large and medium", notes=match.notes)
        what = "with QK norm → large" if match.variant == "large" else "with dual attention (x_block.attn2) → medium"
        return FamilyMatch(match.family, (*match.evidence, f"{blocks} joint blocks {what}"), match.has_text_encoder,
                           match.text_width, match.problem, match.warnings, match.notes, match.variant)

    def build_modules(self, state: State, config: Path, dtype: torch.dtype) -> dict[str, Any]:
        from ckptbench.models.components import build_flow_transformer

        projection = "CLIPTextModelWithProjection"
        return {"text_encoder": self.build_text_encoder(state, "clip_l", projection, "text_encoder", config, dtype),
                "text_encoder_2": self.build_text_encoder(state, "clip_g", projection, "text_encoder_2", config,
                                                          dtype),
                "text_encoder_3": self.build_text_encoder(state, "t5xxl", "T5EncoderModel", "text_encoder_3", config,
                                                          dtype),
                "transformer": build_flow_transformer(state, "SD3Transformer2DModel", config, dtype)}

    def assemble(self, modules: dict[str, Any]) -> Any:
        from diffusers import StableDiffusion3Pipeline

        from ckptbench.models.tokenizer import OPEN_CLIP_PAD, clip_tokenizer

        t5_tokenizer = modules.pop("t5_tokenizer")
        return StableDiffusion3Pipeline(**modules, tokenizer=clip_tokenizer(),
                                        tokenizer_2=clip_tokenizer(OPEN_CLIP_PAD), tokenizer_3=t5_tokenizer)

    def load_folder(self, path: Path, options: dict[str, Any]) -> Any:
        from diffusers import StableDiffusion3Pipeline

        return StableDiffusion3Pipeline.from_pretrained(str(path), **options)


FAMILY = Sd35Family(
    name="sd35", title="Stable Diffusion 3.5 (large, medium)", config_name="sd35",
    pipeline_class="StableDiffusion3Pipeline",
    components={UNET: "transformer", VAE: "vae", "vae.": "vae", TEXT_PREFIXES["clip_l"]: "text_encoder",
                TEXT_PREFIXES["clip_g"]: "text_encoder_2", TEXT_PREFIXES["t5xxl"]: "text_encoder_3"},
    bytes_per_image_512=1.3e9, predictions=("flow",),
    marker="joint_blocks.0.context_block.adaLN_modulation.1.bias", text_roles=("clip_l", "clip_g", "t5xxl"),
    variants=("large", "medium"),
    size_tensors=(("x_embedder.proj.weight", 0, "width", ("num_attention_heads", "attention_head_dim")),
                  ("x_embedder.proj.weight", 1, "input channels", ("in_channels",)),
                  ("context_embedder.weight", 1, "text context width", ("joint_attention_dim",)),
                  ("y_embedder.mlp.0.weight", 1, "pooled text width", ("pooled_projection_dim",))),
    size_blocks=(("joint_blocks", "block count", "num_layers"),),
    example='[[checkpoints]]\nname = "sd35-large"\npath = "models/sd3.5_large.safetensors"   # transformer + VAE\n'
            'text_encoders = ["models/clip_l.safetensors", "models/clip_g.safetensors", '
            '"models/t5xxl_fp16.safetensors"]\nt5_tokenizer = "models/t5-tokenizer"',
)
