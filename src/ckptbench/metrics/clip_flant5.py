"""CLIP-FlanT5 (zhiqiulin/clip-flant5-xxl / -xl), VQAScore's original model, built from transformers parts.

Restated from linzhiqiu/t2v_metrics ``models/vqascore_models/clip_t5_model.py`` and its ``clip_t5`` model
code: a CLIP ViT-L/14-336 vision tower (``CLIPVisionModel``; the second-to-last layer's patch tokens, class
token dropped), a two-layer GELU MLP projector (``mm_projector``, CLIP width → T5 width), and FlanT5
(``T5ForConditionalGeneration``) whose *encoder* reads the text embeddings with the image tokens spliced in
where ``<image>`` stands. The question goes in as ``SYSTEM_MSG + " USER: <image>\\n" + question +
" ASSISTANT: "``; each text piece on either side of ``<image>`` is tokenized on its own, so each ends with
T5's ``</s>`` (the reference's ``t5_tokenizer_image_token``). The answer "Yes" is tokenized the same way
(``▁Yes``, ``</s>``) and scored as the decoder's labels: the score is exp(−mean cross-entropy) over those
tokens, i.e. the geometric mean of P(Yes) and P(</s> | Yes). Images are padded to a square with the CLIP
mean colour (``expand2square``), then go through the vision tower's CLIP image processor (336 px).

Files: the model folder's ``config.json`` (``model_type`` ``clip_t5``, T5's settings plus ``mm_vision_tower``,
``mm_projector_type`` = ``mlp2x_gelu``, ``mm_vision_select_layer``) and weights in the reference's key layout
(T5's own keys, ``vision_tower.vision_tower.*``, ``mm_projector.*``; safetensors, or ``.bin`` shards with
``allow_pickle``); the vision tower folder named by ``mm_vision_tower`` (its image processor, and its
weights when the checkpoint has none); the T5 tokenizer from the model folder, else FlanT5's own repo.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file
from torch import nn
from transformers import (
    AutoTokenizer,
    CLIPImageProcessor,
    CLIPVisionConfig,
    CLIPVisionModel,
    T5Config,
    T5ForConditionalGeneration,
)

from ckptbench.errors import ModelFileError
from ckptbench.metrics.clip_folder import weight_files
from ckptbench.models.safety import load_pickle_tensors

SYSTEM_MSG = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
              "detailed, and polite answers to the user's questions.")
IMAGE_PLACEHOLDER = "<image>"
TOKENIZERS_BY_WIDTH = {4096: "google/flan-t5-xxl", 2048: "google/flan-t5-xl"}  # the reference's tokenizer paths
_VISION_PREFIX = "vision_tower.vision_tower."
_PROJECTOR_PREFIX = "mm_projector."


def chat_question(question: str) -> str:
    """The reference's 't5_chat' conversation around one question."""
    return f"{SYSTEM_MSG} USER: {IMAGE_PLACEHOLDER}\n{question} ASSISTANT: "


def expand_to_square(image: Image.Image, background: tuple[int, ...]) -> Image.Image:
    """Pad to a square with ``background``, the image centred (the reference's ``expand2square``)."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    result = Image.new(image.mode, (side, side), background)
    result.paste(image, ((side - width) // 2, (side - height) // 2))
    return result


class ClipFlanT5(nn.Module):
    def __init__(self, t5_config: T5Config, vision_config: CLIPVisionConfig, select_layer: int) -> None:
        super().__init__()
        self.t5 = T5ForConditionalGeneration(t5_config)
        self.vision = CLIPVisionModel(vision_config)
        width = t5_config.d_model
        self.projector = nn.Sequential(nn.Linear(vision_config.hidden_size, width), nn.GELU(), nn.Linear(width, width))
        self.select_layer = select_layer

    def image_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        hidden = self.vision(pixel_values=pixel_values, output_hidden_states=True).hidden_states[self.select_layer]
        return self.projector(hidden[:, 1:])

    def answer_probability(self, pixel_values: torch.Tensor, pieces: list[torch.Tensor], answer: torch.Tensor
                           ) -> torch.Tensor:
        """exp(−mean cross-entropy) of ``answer`` (label ids) given the text pieces around one image."""
        embed = self.t5.get_input_embeddings()
        image = self.image_tokens(pixel_values)[0]
        parts = [embed(pieces[0]), *(x for piece in pieces[1:] for x in (image, embed(piece)))]
        inputs = torch.cat(parts, dim=0)[None]
        output = self.t5(inputs_embeds=inputs, attention_mask=torch.ones(inputs.shape[:2], dtype=torch.long,
                                                                        device=inputs.device),
                         labels=answer[None])
        log_probabilities = torch.log_softmax(output.logits[0].float(), dim=-1)
        return log_probabilities[torch.arange(len(answer)), answer].mean().exp()


def clip_t5_config(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "config.json").read_text())


def _state(folder: Path, allow_pickle: bool) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for path in weight_files(folder):
        if path.suffix == ".safetensors":
            state.update(load_file(str(path)))
        else:
            from ckptbench.models.safety import check_pickle_allowed

            check_pickle_allowed(path, allow_pickle, "set [scorers.vqascore] allow_pickle = true")
            state.update(load_pickle_tensors(path)[0])
    return state


def load_clip_flant5(folder: Path, vision_folder: Path, allow_pickle: bool) -> ClipFlanT5:
    """The model from the reference's files: T5 keys as they are, the vision tower and projector renamed."""
    config = clip_t5_config(folder)
    if config.get("mm_projector_type", "mlp2x_gelu") != "mlp2x_gelu":
        raise ModelFileError(f"{folder}: projector type {config['mm_projector_type']!r} is not supported (only "
                             "mlp2x_gelu, as the released CLIP-FlanT5 models use).")
    t5_config = T5Config(**{key: value for key, value in config.items() if not key.startswith("mm_")
                            and key not in ("model_type", "architectures", "transformers_version")})
    model = ClipFlanT5(t5_config, CLIPVisionConfig.from_pretrained(str(vision_folder)),
                       int(config.get("mm_vision_select_layer", -2)))
    state = _state(folder, allow_pickle)
    ours: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith(_VISION_PREFIX):
            ours["vision." + key.removeprefix(_VISION_PREFIX)] = value
        elif key.startswith(_PROJECTOR_PREFIX):
            ours["projector." + key.removeprefix(_PROJECTOR_PREFIX)] = value
        else:
            ours["t5." + key] = value
    if not any(key.startswith("vision.") for key in ours):  # LLaVA-style: the tower comes from its own repo
        ours.update({"vision." + key: value for key, value in
                     CLIPVisionModel.from_pretrained(str(vision_folder)).state_dict().items()})
    for tied in ("t5.encoder.embed_tokens.weight", "t5.decoder.embed_tokens.weight"):
        if tied not in ours and "t5.shared.weight" in ours:
            ours[tied] = ours["t5.shared.weight"]
    missing = sorted(set(model.state_dict()) - set(ours))
    if missing:
        raise ModelFileError(f"{folder} lacks {len(missing)} of CLIP-FlanT5's weights (first: {missing[0]}); give "
                             "the released clip-flant5 folder.")
    model.load_state_dict({key: ours[key] for key in model.state_dict()}, strict=True)
    return model.eval()


class ClipFlanT5Scorer:
    """Answers VQAScore's question with CLIP-FlanT5, one (image, prompt) pair at a time."""

    def __init__(self, model: ClipFlanT5, tokenizer: Any, image_processor: CLIPImageProcessor, device: torch.device,
                 question: str, answer: str) -> None:
        self.model = model.eval().to(device)
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.device = device
        self.question = question
        self.background = tuple(int(x * 255) for x in image_processor.image_mean)
        self.answer = self._ids(answer)

    def _ids(self, text: str) -> torch.Tensor:
        return torch.tensor(self.tokenizer(text).input_ids, dtype=torch.long, device=self.device)

    @torch.inference_mode()
    def score_pairs(self, images: list[Image.Image], texts: list[str]) -> np.ndarray:
        values = []
        for image, prompt in zip(images, texts, strict=True):
            square = expand_to_square(image.convert("RGB"), self.background)
            pixels = self.image_processor(images=[square], return_tensors="pt")["pixel_values"].to(self.device)
            pieces = [self._ids(piece) for piece in chat_question(self.question.format(prompt)).split(
                IMAGE_PLACEHOLDER)]
            values.append(float(self.model.answer_probability(pixels, pieces, self.answer)))
        return np.array(values, dtype=np.float64)


def tokenizer_for(folder: Path, config: dict[str, Any]) -> str:
    """Where the T5 tokenizer comes from: the model folder if it has one, else FlanT5's repo of that width."""
    if any((folder / name).is_file() for name in ("tokenizer.json", "spiece.model")):
        return str(folder)
    return TOKENIZERS_BY_WIDTH.get(int(config.get("d_model", 4096)), TOKENIZERS_BY_WIDTH[4096])


def load_tokenizer(source: Path) -> Any:
    return AutoTokenizer.from_pretrained(str(source))
