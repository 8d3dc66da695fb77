"""FLUX.1 [dev] and [schnell]: a 12-billion-parameter flow-matching transformer with CLIP-L and T5-XXL.

[dev] is guidance-distilled: it has a guidance embedding (``guidance_in``) fed with the "Distilled CFG
Scale" (Forge's name; 3.5 by default) and samples with a resolution-dependent shift; [schnell] has no
guidance embedding and samples with shift 1 in a few steps. Fill and depth variants (more input channels)
are refused: ckptbench benchmarks text-to-image models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ckptbench.models.detect import UNET, VAE
from ckptbench.models.families.base import FamilyMatch, State
from ckptbench.models.families.flow import TEXT_PREFIXES, FlowFamily, has_key, key_info

if TYPE_CHECKING:
    import torch

    from ckptbench.models.state_dict import ModelFile


# Forge's PredictionFlux / ComfyUI's ModelSamplingFlux: μ of [dev] fixed at a 1024² image's value; [schnell] 1.
SHIFTS = {"dev": 1.15, "schnell": 1.0}


@dataclass(frozen=True)
class FluxFamily(FlowFamily):
    def sigma(self, t: float, variant: str | None) -> float:
        mu = SHIFTS[variant or "dev"]
        return math.exp(mu) / (math.exp(mu) + (1 / t - 1)) if t > 0 else 0.0

    def condition(self, pipeline: Any, parsed: Any) -> Any:
        from ckptbench.generate.flow_conditioning import flux_conditioning

        return flux_conditioning(pipeline, parsed)

    def predict_flow(self, *args: Any) -> Any:
        from ckptbench.generate.flow_sampling import flux_flow

        return flux_flow(*args)

    def variant_of(self, model: ModelFile) -> str | None:
        return "dev" if has_key(model.tensors, "guidance_in.in_layer.weight") else "schnell"

    def folder_variant(self, folder: Path) -> str | None:
        import json

        config = json.loads((folder / "transformer" / "config.json").read_text(encoding="utf-8"))
        return "dev" if config.get("guidance_embeds") else "schnell"

    def check(self, model: ModelFile, match: FamilyMatch) -> FamilyMatch:
        img_in = key_info(model.tensors, "img_in.weight")
        channels = img_in.shape[-1] if img_in is not None and img_in.shape else 64
        found = "present → FLUX.1 [dev]" if match.variant == "dev" else "absent → FLUX.1 [schnell]"
        evidence = (*match.evidence, f"guidance_in {found}")
        problem = None
        # The released text-to-image models take 64 (16 latent channels, 2×2 packed); the image-conditioned
        # variants concatenate more.
        if channels in (128, 384):
            what = {384: "a Flux Fill (inpainting) model", 128: "a Flux Depth/Canny model"}[channels]
            problem = f"the transformer takes {channels} input channels: {what}; ckptbench benchmarks text-to-image " \
                      "checkpoints"
        return FamilyMatch(match.family, evidence, match.has_text_encoder, match.text_width, problem,
                           match.warnings, match.notes, match.variant)

    def sampling_settings(self, settings: Any, distilled_cfg: float, variant: str | None = None
                          ) -> tuple[Any, str | None]:
        """As Forge's Flux defaults: CFG scale 1 (no negative prompt), [dev]'s Distilled CFG Scale from the spec."""
        from dataclasses import replace

        adapted, note = super().sampling_settings(settings, distilled_cfg, variant)
        adapted = replace(adapted, cfg=1.0, distilled_cfg=distilled_cfg if variant != "schnell" else None)
        if settings.cfg != 1.0:
            guidance = f"distilled CFG {distilled_cfg:g}" if variant != "schnell" else "no guidance ([schnell])"
            extra = f"CFG {settings.cfg:g} → 1 with {guidance}"
            note = f"{note}; {extra}" if note else f"flux: {extra} — as Forge samples it"
        return adapted, note

    def build_modules(self, state: State, config: Path, dtype: torch.dtype) -> dict[str, Any]:
        from ckptbench.models.components import build_flow_transformer

        return {"text_encoder": self.build_text_encoder(state, "clip_l", "CLIPTextModel", "text_encoder", config,
                                                        dtype),
                "text_encoder_2": self.build_text_encoder(state, "t5xxl", "T5EncoderModel", "text_encoder_2", config,
                                                          dtype),
                "transformer": build_flow_transformer(state, "FluxTransformer2DModel", config, dtype)}

    def assemble(self, modules: dict[str, Any]) -> Any:
        from diffusers import FluxPipeline

        from ckptbench.models.tokenizer import clip_tokenizer

        t5_tokenizer = modules.pop("t5_tokenizer")
        return FluxPipeline(**modules, tokenizer=clip_tokenizer(), tokenizer_2=t5_tokenizer)

    def load_folder(self, path: Path, options: dict[str, Any]) -> Any:
        from diffusers import FluxPipeline

        return FluxPipeline.from_pretrained(str(path), **options)


FAMILY = FluxFamily(
    name="flux", title="FLUX.1 [dev] / [schnell]", config_name="flux", pipeline_class="FluxPipeline",
    components={UNET: "transformer", VAE: "vae", "vae.": "vae", TEXT_PREFIXES["clip_l"]: "text_encoder",
                TEXT_PREFIXES["t5xxl"]: "text_encoder_2"},
    bytes_per_image_512=1.6e9, predictions=("flow",),
    marker="double_blocks.0.img_attn.norm.key_norm.scale", text_roles=("clip_l", "t5xxl"),
    variants=("dev", "schnell"), sigma_table=10000,
    size_tensors=(("img_in.weight", 0, "width", ("num_attention_heads", "attention_head_dim")),
                  ("img_in.weight", 1, "input channels", ("in_channels",)),
                  ("txt_in.weight", 1, "text context width", ("joint_attention_dim",)),
                  ("vector_in.in_layer.weight", 1, "pooled text width", ("pooled_projection_dim",))),
    size_blocks=(("double_blocks", "double-stream block count", "num_layers"),
                 ("single_blocks", "single-stream block count", "num_single_layers")),
    example='[[checkpoints]]\nname = "flux-dev-finetune"\npath = "models/fluxFinetune_fp8.safetensors"   '
            '# transformer only, as most Flux files\ntext_encoders = ["models/clip_l.safetensors", '
            '"models/t5xxl_fp16.safetensors"]\nvae = "models/ae.safetensors"\nt5_tokenizer = "models/t5-tokenizer"',
)
