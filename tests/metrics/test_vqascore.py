"""vqascore against t2v_metrics' Qwen2-VL VQAScore computation, restated on tiny random Qwen2-VL and Qwen2.5-VL
models built with the real transformers classes and saved as real model folders."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tests.hand_computed import parity
from transformers import AutoModelForImageTextToText, AutoProcessor

from ckptbench.demo.tiny_vlm import save_tiny_qwen_vl
from ckptbench.errors import WeightsUnavailableError
from ckptbench.score_folder import score_folder
from ckptbench.spec import ScorerOptions, ScorersSpec
from ckptbench.store import Store

PROMPTS = ["a red cube on a table", "portrait of an old fisherman", "a (cute:1.3) corgi", "isometric room",
           "a lighthouse at dusk", "watercolor fox"]
QUESTION = 'Does this figure show "{}"? Please answer yes or no.'


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vlm")
    return {family: save_tiny_qwen_vl(root / family, seed=31, family=family) for family in ("qwen2_vl", "qwen2_5_vl")}


def _fetch_image(image: Image.Image, factor: int = 28) -> Image.Image:
    """qwen_vl_utils ``fetch_image`` with its defaults (MIN_PIXELS 4·28², MAX_PIXELS 16384·28²), restated."""
    min_pixels, max_pixels = 4 * 28 * 28, 16384 * 28 * 28
    image = image.convert("RGB")
    width, height = image.size
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar, w_bar = math.floor(height / beta / factor) * factor, math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar, w_bar = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return image.resize((w_bar, h_bar))


def _reference_inputs(processor, image: Image.Image, prompt: str):
    messages = [{"role": "user", "content": [{"type": "image", "image": image},
                                             {"type": "text", "text": QUESTION.format(prompt)}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return processor(text=[text], images=[_fetch_image(image)], videos=None, padding=True, return_tensors="pt")


def _reference_vqascore(folder: Path, images: list[Image.Image], prompts: list[str]) -> np.ndarray:
    """t2v_metrics ``qwen2vl_model.py`` Qwen2VLModel.forward(question_template=QUESTION, answer_template="Yes"):
    chat template, process_vision_info, generate one token greedily with its scores, softmax, P(first token
    of "Yes")."""
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    processor = AutoProcessor.from_pretrained(folder)
    values = []
    with torch.inference_mode():
        for image, prompt in zip(images, prompts, strict=True):
            inputs = _reference_inputs(processor, image, prompt)
            outputs = model.generate(**inputs, max_new_tokens=1, do_sample=False, output_scores=True,
                                     return_dict_in_generate=True)
            probs = torch.nn.functional.softmax(outputs.scores[0], dim=-1)
            values.append(probs[0, processor.tokenizer.encode("Yes")[0]].item())
    return np.array(values)


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_vqascore_equals_t2v_metrics(family: str, models: dict[str, Path], prompted: Path, tmp_path: Path) -> None:
    """Reference: linzhiqiu/t2v_metrics t2v_metrics/models/vqascore_models/qwen2vl_model.py (restated above)."""
    from ckptbench.prompt import strip_prompt_syntax

    options = ScorerOptions(model=str(models[family]))
    result = score_folder(prompted, ScorersSpec(use=("vqascore",), options={"vqascore": options}),
                          Store(tmp_path / "store"), torch.device("cpu"))
    assert not result.failures, result.failures
    frame = result.frame.sort_values("image")
    images = [Image.open(path) for path in frame["image"]]
    expected = _reference_vqascore(models[family], images, [strip_prompt_syntax(p) for p in frame["prompt"]])
    ours = frame["value"].to_numpy(dtype=float)
    assert len(ours) == len(PROMPTS) and np.all((ours > 0) & (ours < 1))
    assert np.std(np.log(expected)) > 0.1  # the random model's answers depend on image and prompt
    parity(f"vqascore ({family})", ours, expected)
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-9)


def test_the_answer_probability_by_hand(models: dict[str, Path], tiny_scorer_models) -> None:
    """P(Yes) = softmax of the last position's logits after the model's repetition penalty (1.05 in the tiny
    model's generation_config.json, as in some Qwen releases): a logit of a token already in the input is
    divided by 1.05 if positive, multiplied by it if negative."""
    from ckptbench.metrics.backbones import load_backbone, resolve_backbone
    from ckptbench.metrics.base import BackboneRequest

    folder = models["qwen2_vl"]
    spec = resolve_backbone(BackboneRequest("vqa", str(folder)), "fp32", "vqascore", None)
    backbone = load_backbone(spec, torch.device("cpu"))
    image = Image.open(sorted(tiny_scorer_models["images"].glob("*.png"))[0])
    (ours,) = backbone.score_pairs([image.convert("RGB")], ["a red cube"])
    model, processor = backbone.scorer.model, backbone.scorer.processor
    inputs = _reference_inputs(processor, image, "a red cube")
    with torch.no_grad():
        logits = model(**inputs).logits[0, -1].double()
    seen = torch.unique(inputs["input_ids"][0])
    penalty = json.loads((folder / "generation_config.json").read_text())["repetition_penalty"]
    logits[seen] = torch.where(logits[seen] > 0, logits[seen] / penalty, logits[seen] * penalty)
    yes = processor.tokenizer.encode("Yes", add_special_tokens=False)[0]
    assert ours == pytest.approx(float(torch.softmax(logits, dim=0)[yes]), rel=1e-5)


def test_other_model_families_are_refused_in_one_sentence(models: dict[str, Path], tmp_path: Path) -> None:
    from ckptbench.metrics.engine import prepare_scorers

    folder = tmp_path / "llava"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(WeightsUnavailableError, match=r"'llava' model; VQAScore is implemented for Qwen2-VL"):
        prepare_scorers(ScorersSpec(use=("vqascore",), options={"vqascore": ScorerOptions(model=str(folder))}),
                        torch.device("cpu"), None)


def _reference_clip_flant5(folder: Path, images: list[Image.Image], prompts: list[str]) -> np.ndarray:
    """t2v_metrics ``clip_t5_model.py`` CLIPT5Model.forward with its ``clip_t5`` model code, restated from the
    released file layout: format_question('t5_chat'), expand2square + the tower's image processor,
    t5_tokenizer_image_token (each text chunk tokenized with its own </s>, IMAGE_TOKEN_INDEX between),
    prepare_inputs_labels_for_multimodal (image features = mm_projector(hidden_states[-2][:, 1:]) spliced in),
    T5 with labels = tokens of "Yes", then exp(−CrossEntropyLoss(mean))."""
    from safetensors.torch import load_file
    from transformers import (
        AutoTokenizer,
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModel,
        T5Config,
        T5ForConditionalGeneration,
    )

    config = json.loads((folder / "config.json").read_text())
    state = load_file(str(folder / "model.safetensors"))
    t5 = T5ForConditionalGeneration(T5Config(**{k: v for k, v in config.items() if not k.startswith("mm_")
                                                 and k not in ("model_type", "architectures")}))
    t5.load_state_dict({k: v for k, v in state.items() if not k.startswith(("vision_tower.", "mm_projector."))})
    t5.eval()  # from_pretrained in the reference leaves the model in eval mode: no dropout
    tower_folder = config["mm_vision_tower"]
    tower = CLIPVisionModel(CLIPVisionConfig.from_pretrained(tower_folder))
    tower.load_state_dict({k.removeprefix("vision_tower.vision_tower."): v for k, v in state.items()
                           if k.startswith("vision_tower.")})
    tower.eval()
    projector = torch.nn.Sequential(torch.nn.Linear(config["mm_hidden_size"], config["d_model"]), torch.nn.GELU(),
                                    torch.nn.Linear(config["d_model"], config["d_model"]))
    projector.load_state_dict({k.removeprefix("mm_projector."): v for k, v in state.items()
                               if k.startswith("mm_projector.")})
    tokenizer = AutoTokenizer.from_pretrained(folder)
    image_processor = CLIPImageProcessor.from_pretrained(tower_folder)
    system = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
              "detailed, and polite answers to the user's questions.")

    def image_token(prompt: str) -> list[int]:
        chunks = [tokenizer(chunk).input_ids for chunk in prompt.split("<image>")]
        ids = list(chunks[0])
        for chunk in chunks[1:]:
            ids += [-200, *chunk]
        return ids

    def expand2square(image: Image.Image, background: tuple[int, ...]) -> Image.Image:
        width, height = image.size
        if width == height:
            return image
        side = max(width, height)
        result = Image.new(image.mode, (side, side), background)
        result.paste(image, (0, (side - height) // 2) if width > height else ((side - width) // 2, 0))
        return result

    values = []
    with torch.no_grad():
        for image, prompt in zip(images, prompts, strict=True):
            question = system + " USER: " + "<image>" + "\n" + QUESTION.format(prompt) + " ASSISTANT: "
            square = expand2square(image.convert("RGB"), tuple(int(x * 255) for x in image_processor.image_mean))
            pixels = image_processor.preprocess(square, return_tensors="pt")["pixel_values"]
            ids = torch.tensor(image_token(question))
            labels = torch.tensor(image_token("Yes"))[None]
            features = projector(tower(pixels, output_hidden_states=True).hidden_states[-2][:, 1:])[0]
            where = int(torch.where(ids == -200)[0][0])
            embeds = torch.cat([t5.shared(ids[:where]), features, t5.shared(ids[where + 1:])])[None]
            logits = t5(inputs_embeds=embeds, attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long),
                        decoder_attention_mask=labels.ne(-100), labels=labels).logits
            loss = torch.nn.CrossEntropyLoss(reduction="mean")(logits[0], labels[0])
            values.append(float((-loss).exp()))
    return np.array(values)


@pytest.mark.parametrize("vision_in_checkpoint", [True, False])
def test_clip_flant5_equals_t2v_metrics(vision_in_checkpoint: bool, prompted: Path, tmp_path: Path) -> None:
    """Reference: linzhiqiu/t2v_metrics clip_t5_model.py + clip_t5 model code (restated above); the vision tower
    from the checkpoint, or (LLaVA-style) from its own folder."""
    from ckptbench.demo.tiny_vlm import save_tiny_clip_flant5
    from ckptbench.prompt import strip_prompt_syntax

    full = save_tiny_clip_flant5(tmp_path / "clip-flant5", tmp_path / "clip-vit-336", seed=41)
    folder = full
    if not vision_in_checkpoint:  # the same model, its tower left to the folder mm_vision_tower names
        from safetensors.torch import load_file, save_file

        folder = tmp_path / "without-tower"
        folder.mkdir()
        for path in full.iterdir():
            (folder / path.name).write_bytes(path.read_bytes())
        save_file({key: value for key, value in load_file(str(full / "model.safetensors")).items()
                   if not key.startswith("vision_tower.")}, str(folder / "model.safetensors"))
    result = score_folder(prompted, ScorersSpec(use=("vqascore",), options={"vqascore": ScorerOptions(
        model=str(folder))}), Store(tmp_path / "store"), torch.device("cpu"))
    assert not result.failures, result.failures
    frame = result.frame.sort_values("image")
    expected = _reference_clip_flant5(full, [Image.open(p) for p in frame["image"]],
                                      [strip_prompt_syntax(p) for p in frame["prompt"]])
    ours = frame["value"].to_numpy(dtype=float)
    assert np.all((ours > 1e-4) & (ours < 1)) and np.std(np.log(expected)) > 1e-3  # images tell apart
    parity(f"vqascore (clip_t5, tower {'in checkpoint' if vision_in_checkpoint else 'from its folder'})", ours,
           expected)
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-9)
