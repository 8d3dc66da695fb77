"""Stable Diffusion 2.x: OpenCLIP-H (``cond_stage_model.model.*``, 1024 wide), ε at 512 px or v at 768 px.

SD2 files carry OpenCLIP's last transformer layer, which SD2 skips (it conditions on the penultimate
layer): it is dropped before conversion. Files without a prediction marker get A1111's test on the UNet.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ckptbench.models.detect import OPENCLIP_SD2, UNET
from ckptbench.models.families.base import CONFIGS, FamilyMatch, Prediction, State
from ckptbench.models.families.sd15 import Sd15Family
from ckptbench.models.families.unet import TextEncoderPart, tensor_width, text_activation

if TYPE_CHECKING:
    from ckptbench.models.state_dict import ModelFile


@dataclass(frozen=True)
class Sd2Family(Sd15Family):
    def match_text_encoders(self, model: ModelFile) -> FamilyMatch | None:
        if not model.has_prefix(OPENCLIP_SD2):
            return None
        return FamilyMatch(self.name, ("OpenCLIP-H text encoder (cond_stage_model.model.*) → sd2",),
                           text_width=tensor_width(model.tensors, OPENCLIP_SD2 + "token_embedding.weight"))

    def config_dir(self, prediction: Prediction, variant: str | None = None) -> Path:
        return CONFIGS / ("sd2-v" if prediction == "v" else "sd2")

    def undecided_prediction(self, model: ModelFile, config: Path, allow_pickle: bool) -> tuple[Prediction, str]:
        from ckptbench.models.checkpoint import a1111_prediction_test

        return a1111_prediction_test(model.path, config, allow_pickle)

    def folder_family_evidence(self, folder: Path, class_name: str) -> str | None:
        if class_name != "StableDiffusionPipeline":
            return None
        act = text_activation(folder)
        if act != "gelu":
            return None
        return f"StableDiffusionPipeline with a {act} text encoder (OpenCLIP) → sd2"

    def normalise_state(self, state: State, config: Path) -> State:
        from transformers import CLIPTextConfig

        from ckptbench.models.components import normalise_clip_keys

        keep_layers = CLIPTextConfig.from_pretrained(str(config), subfolder="text_encoder").num_hidden_layers
        resblock = re.compile(re.escape(OPENCLIP_SD2) + r"transformer\.resblocks\.(\d+)\.")
        # OpenCLIP's last layer(s): SD2 takes the penultimate layer's output.
        return {name: tensor for name, tensor in normalise_clip_keys(state).items()
                if not ((match := resblock.match(name)) and int(match.group(1)) >= keep_layers)}

    def assemble(self, modules: dict) -> object:
        from ckptbench.models.tokenizer import OPEN_CLIP_PAD, clip_tokenizer

        return super().assemble({**modules, "tokenizer": clip_tokenizer(OPEN_CLIP_PAD)})


FAMILY = Sd2Family(
    name="sd2", title="Stable Diffusion 2.x", config_name="sd2", pipeline_class="StableDiffusionPipeline",
    components={UNET: "unet", "first_stage_model.": "vae", OPENCLIP_SD2: "text_encoder"},
    bytes_per_image_512=1.0e9, predictions=("epsilon", "v"),
    text_parts=(TextEncoderPart("text_encoder", "CLIPTextModel", OPENCLIP_SD2),),
    cross_attention_width=1024, proj_in_linear=True,
    example='[[checkpoints]]\nname = "sd21"\npath = "models/v2-1_768-ema-pruned.safetensors"   # v-prediction '
            'found by A1111\'s test',
)
