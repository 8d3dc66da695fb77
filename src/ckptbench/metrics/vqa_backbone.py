"""The VQAScore backbone (``vqa``): a transformers image-text-to-text model asked whether the image shows the prompt.

Reference: linzhiqiu/t2v_metrics, ``t2v_metrics/models/vqascore_models/qwen2vl_model.py`` ``forward``. For each
(image, prompt) pair, one user turn holding the image and the question (``VQA_QUESTION`` with the prompt
inserted) goes through the model's own chat template with the generation prompt appended; the image goes
through ``qwen_vl_utils.process_vision_info`` — resized with PIL's bicubic filter to the nearest size whose
sides are multiples of the vision patch × merge size (28 for Qwen2-VL and Qwen2.5-VL) with between 4·28² and
16384·28² pixels — and then the model's processor; ``model.generate(max_new_tokens=1, do_sample=False,
output_scores=True)`` gives the first answer token's scores (after the model's generation config's logits
processors, e.g. its repetition penalty, exactly as there), and the score is their softmax at the first
token of the answer "Yes". Pairs run one at a time, as in the reference, so a score never depends on what
else is in the batch. The softmax is taken in float32 (the reference takes it in the model's dtype, bf16 on
its GPUs; fp32 on CPU is identical).

Families: Qwen2-VL and Qwen2.5-VL (``config.json`` ``model_type`` ``qwen2_vl`` / ``qwen2_5_vl``), loaded with
``AutoModelForImageTextToText`` from a local folder or the hub cache; and CLIP-FlanT5 (``clip_t5``, the
paper's own model), rebuilt from transformers parts in ``clip_flant5`` with that reference's own answer
handling. Files: the weights, and every file that changes the number (config, generation config, processor
and tokenizer files, chat template; for CLIP-FlanT5 also its vision tower folder and T5 tokenizer), all
hashed into the score key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor
from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

from ckptbench.device import torch_dtype
from ckptbench.errors import ModelFileError, WeightsUnavailableError
from ckptbench.hashing import DigestCache, sha256_file
from ckptbench.metrics.base import BackboneRequest, BackboneSpec
from ckptbench.metrics.clip_folder import weight_files
from ckptbench.metrics.vqascore import ANSWER as VQA_ANSWER
from ckptbench.metrics.vqascore import QUESTION as VQA_QUESTION
from ckptbench.metrics.weights import resolve_folder

KIND = "vqa"
FAMILIES = {"qwen2_vl": "Qwen2-VL", "qwen2_5_vl": "Qwen2.5-VL", "clip_t5": "CLIP-FlanT5"}
# qwen_vl_utils' bounds on the image's pixel count before the processor sees it.
MIN_PIXELS = 4 * 28 * 28
MAX_PIXELS = 16384 * 28 * 28
# Files besides the weights whose content changes the number.
SETTINGS_FILES = ("config.json", "generation_config.json", "preprocessor_config.json", "processor_config.json",
                  "chat_template.json", "chat_template.jinja", "tokenizer.json", "tokenizer_config.json",
                  "vocab.json", "merges.txt", "special_tokens_map.json", "added_tokens.json")


def model_family(folder: Path, scorer: str) -> str:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise WeightsUnavailableError(f"scorer '{scorer}': {folder} has no config.json; give a transformers "
                                      f"image-text-to-text model folder as [scorers.{scorer}] model.")
    family = str(json.loads(config_file.read_text()).get("model_type"))
    if family not in FAMILIES:
        raise WeightsUnavailableError(
            f"scorer '{scorer}': {folder} holds a '{family}' model; VQAScore is implemented for "
            f"{', '.join(FAMILIES.values())} ({', '.join(FAMILIES)}); give one of those as [scorers.{scorer}] model.")
    return family


def resolve(request: BackboneRequest, dtype: str, scorer: str, cache: DigestCache | None) -> BackboneSpec:
    folder = resolve_folder(request.model, scorer)
    family = model_family(folder, scorer)
    weights = weight_files(folder)
    if not weights:
        raise WeightsUnavailableError(f"scorer '{scorer}': {folder} holds no model weights (*.safetensors); fix "
                                      f"[scorers.{scorer}] model.")
    if any(path.suffix != ".safetensors" for path in weights) and not request.allow_pickle:
        raise ModelFileError(f"scorer '{scorer}': {folder} has only pickle weights (*.bin); use a safetensors "
                             f"release, or set [scorers.{scorer}] allow_pickle = true if you trust it.")
    files = {path.name: sha256_file(path, cache) for path in weights}
    files.update({name: sha256_file(folder / name, cache) for name in SETTINGS_FILES if (folder / name).is_file()})
    config: dict[str, Any] = {"family": family, "question": VQA_QUESTION, "answer": VQA_ANSWER}
    paths: dict[str, str] = {}
    if family == "clip_t5":
        from ckptbench.metrics.clip_flant5 import clip_t5_config, tokenizer_for

        settings = clip_t5_config(folder)
        vision = resolve_folder(str(settings.get("mm_vision_tower", "openai/clip-vit-large-patch14-336")), scorer)
        tokenizer = Path(tokenizer_for(folder, settings))
        tokenizer = tokenizer if tokenizer.is_dir() else resolve_folder(str(tokenizer), scorer)
        for prefix, extra in (("vision", vision), ("tokenizer", tokenizer)):
            if extra != folder:
                files.update({f"{prefix}/{path.name}": sha256_file(path, cache) for path in weight_files(extra)
                              if prefix == "vision"})
                files.update({f"{prefix}/{name}": sha256_file(extra / name, cache) for name in
                              (*SETTINGS_FILES, "spiece.model") if (extra / name).is_file()})
        paths = {"vision": str(vision), "tokenizer": str(tokenizer)}
        preprocessing = (f"CLIP-FlanT5 't5_chat' prompt with question {VQA_QUESTION!r}; image padded to a square "
                         "with the CLIP mean colour, then the vision tower's CLIP image processor; score: exp(−mean "
                         f"cross-entropy) of {VQA_ANSWER!r} + </s> as decoder labels")
    else:
        preprocessing = (f"{FAMILIES[family]} chat template, question {VQA_QUESTION!r}; image: PIL bicubic resize to "
                         f"sides that are multiples of patch × merge size, {MIN_PIXELS}–{MAX_PIXELS} pixels "
                         "(qwen_vl_utils), then the model's processor; score: softmax of the first generated token's "
                         f"scores at the first token of {VQA_ANSWER!r}")
        config.update({"min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS})
    return BackboneSpec(kind=KIND, source=request.model, location=str(folder), weights=files, dtype=dtype,
                        preprocessing=preprocessing, config=config, paths=paths, cache_features=False)


def resize_for_qwen(image: Image.Image, factor: int) -> Image.Image:
    """qwen_vl_utils' ``fetch_image``: RGB, then PIL bicubic to the ``smart_resize`` size."""
    image = image.convert("RGB")
    height, width = smart_resize(image.height, image.width, factor=factor, min_pixels=MIN_PIXELS,
                                 max_pixels=MAX_PIXELS)
    return image.resize((width, height), Image.Resampling.BICUBIC)


class VQABackbone:
    """The whole vision-language model; ``score_pairs`` asks it one question per (image, prompt)."""

    def __init__(self, spec: BackboneSpec, device: torch.device) -> None:
        self.spec = spec
        self.meta: dict[str, Any] = {}
        if spec.config["family"] == "clip_t5":
            from transformers import CLIPImageProcessor

            from ckptbench.metrics.clip_flant5 import ClipFlanT5Scorer, load_clip_flant5, load_tokenizer

            model = load_clip_flant5(Path(spec.location), Path(spec.paths["vision"]), allow_pickle=True)
            self.scorer: Any = ClipFlanT5Scorer(
                model.to(torch_dtype(spec.dtype)), load_tokenizer(Path(spec.paths["tokenizer"])),
                CLIPImageProcessor.from_pretrained(spec.paths["vision"]), device, VQA_QUESTION, VQA_ANSWER)
            return
        use_safetensors = all(name.endswith(".safetensors") for name in spec.weights if name.startswith("model"))
        # Loaded in the run's dtype (fp32 copies of multi-billion-parameter models do not fit beside the rest).
        model = AutoModelForImageTextToText.from_pretrained(spec.location, dtype=torch_dtype(spec.dtype),
                                                            use_safetensors=use_safetensors)
        self.scorer = QwenVQA(model, AutoProcessor.from_pretrained(spec.location), device)

    @classmethod
    def from_model(cls, model: Any, processor: Any, device: torch.device) -> VQABackbone:
        """A backbone around a Qwen model already in memory (benchmarks of real-size random models)."""
        backbone = cls.__new__(cls)
        backbone.meta = {}
        backbone.scorer = QwenVQA(model, processor, device)
        return backbone

    def embed_images(self, images: list[Image.Image], wanted: set[str]) -> dict[str, np.ndarray]:
        return {}  # nothing per image: the question is read together with it

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError("VQAScore reads question and image together; use score_pairs")

    def score_pairs(self, images: list[Image.Image], texts: list[str]) -> np.ndarray:
        values: np.ndarray = self.scorer.score_pairs(images, texts)
        return values


class QwenVQA:
    """VQAScore with a Qwen2-VL / Qwen2.5-VL model, as t2v_metrics' Qwen wrapper computes it."""

    def __init__(self, model: Any, processor: Any, device: torch.device) -> None:
        self.device = device
        self.model = model.eval().to(device)
        self.processor = processor
        image_processor = processor.image_processor
        self.factor = int(image_processor.patch_size) * int(image_processor.merge_size)
        self.answer_token = int(processor.tokenizer.encode(VQA_ANSWER, add_special_tokens=False)[0])

    def question_inputs(self, image: Image.Image, prompt: str) -> Any:
        """The processor's model inputs for one (image, prompt) pair, as t2v_metrics builds them."""
        messages = [{"role": "user", "content": [{"type": "image"},
                                                 {"type": "text", "text": VQA_QUESTION.format(prompt)}]}]
        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.processor(text=[text], images=[resize_for_qwen(image, self.factor)], padding=True,
                              return_tensors="pt")

    @torch.inference_mode()
    def score_pairs(self, images: list[Image.Image], texts: list[str]) -> np.ndarray:
        values = []
        for image, prompt in zip(images, texts, strict=True):
            inputs = self.question_inputs(image, prompt).to(self.device)
            output = self.model.generate(**inputs, max_new_tokens=1, do_sample=False, output_scores=True,
                                         return_dict_in_generate=True)
            probabilities = torch.softmax(output.scores[0].float(), dim=-1)
            values.append(float(probabilities[0, self.answer_token]))
        return np.array(values, dtype=np.float64)
