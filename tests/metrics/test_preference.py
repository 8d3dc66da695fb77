"""hps-v2 / hps-v2.1 equal HPS's own scoring (img_score.py with its transform.py, restated); pickscore equals
logit_scale · cos from transformers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import open_clip
import pytest
import torch
from PIL import Image
from tests.hand_computed import parity
from torchvision import transforms
from transformers import CLIPModel, CLIPProcessor

from ckptbench.score_folder import score_folder
from ckptbench.spec import ScorerOptions, ScorersSpec
from ckptbench.store import Store

PROMPTS = ["a red cube on a table", "portrait of an old fisherman", "a (cute:1.3) corgi", "isometric room",
           "a lighthouse at dusk", "watercolor fox"]


def _hps_transform(size: int) -> transforms.Compose:
    """HPS's evaluation transform restated from tgxs002/HPSv2 ``hpsv2/src/open_clip/transform.py``
    (``image_transform(..., resize_longest_max=True)``, which ``light_augmentation=True`` selects in
    ``img_score.py``): ToTensor, then ``ResizeMaxSize`` on the tensor — scale = size / max(H, W), new size
    rounded with Python's round, torchvision bicubic resize, pad [w//2, h//2, w − w//2, h − h//2] with 0 —
    then the OpenAI mean/std."""

    def resize_max_size(pixels: torch.Tensor) -> torch.Tensor:
        height, width = pixels.shape[1:]
        scale = size / float(max(height, width))
        if scale == 1.0:
            return pixels
        new_size = tuple(round(dim * scale) for dim in (height, width))
        pixels = transforms.functional.resize(pixels, list(new_size), transforms.InterpolationMode.BICUBIC)
        pad_h, pad_w = size - new_size[0], size - new_size[1]
        return transforms.functional.pad(pixels, [pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2],
                                         fill=0)

    return transforms.Compose([transforms.ToTensor(), transforms.Lambda(resize_max_size),
                               transforms.Normalize((0.48145466, 0.4578275, 0.40821073),
                                                    (0.26862954, 0.26130258, 0.27577711))])


def _hps_reference(architecture: Path, checkpoint: Path, image: Image.Image, prompt: str,
                   transform: Callable[[int], transforms.Compose] = _hps_transform) -> float:
    """As hpsv2/img_score.py computes it: normalised open_clip features, diag(image @ text.T)."""
    model = open_clip.create_model(f"local-dir:{architecture}", load_weights=False)
    model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"])
    model.eval()
    preprocess = transform(model.visual.image_size[0])
    tokenizer = open_clip.get_tokenizer(f"local-dir:{architecture}")
    with torch.no_grad():
        image_features = model.encode_image(preprocess(image.convert("RGB")).unsqueeze(0), normalize=True)
        text_features = model.encode_text(tokenizer([prompt]), normalize=True)
    return float(torch.diagonal(image_features @ text_features.T)[0])


def _shorter_side_crop(size: int) -> transforms.Compose:
    """The transform hps-v2 version 1 used (not HPS's): shorter side to ``size``, centre crop."""
    return transforms.Compose([
        transforms.ToTensor(), transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(size),
        transforms.Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))])


@pytest.mark.parametrize("name", ["hps-v2", "hps-v2.1"])
def test_hps_equals_the_reference_on_non_square_images(name: str, prompted: Path, tiny_scorer_models,
                                                       tmp_path: Path) -> None:
    """Reference: tgxs002/HPSv2 img_score.py with its light_augmentation transform (restated above)."""
    from ckptbench.prompt import strip_prompt_syntax

    models = tiny_scorer_models
    options = ScorerOptions(model=str(models["open_clip"]), head=str(models["hps"]))
    result = score_folder(prompted, ScorersSpec(use=(name,), options={name: options}),
                          Store(tmp_path / "store"), torch.device("cpu"))
    differences, old_differences, ours, references = [], [], [], []
    for row in result.frame.itertuples():
        image = Image.open(row.image)
        assert image.size[0] != image.size[1]  # the case where the two transforms differ
        # The reference receives the prompt as written; ours strips A1111 syntax first, so compare on that text.
        text = strip_prompt_syntax(row.prompt)
        expected = _hps_reference(models["open_clip"], models["hps"], image, text)
        ours.append(row.value)
        references.append(expected)
        differences.append(abs(row.value - expected) / abs(expected))
        old_differences.append(abs(_hps_reference(models["open_clip"], models["hps"], image, text,
                                                  _shorter_side_crop) - expected) / abs(expected))
    assert len(differences) == len(PROMPTS)
    parity(name, ours, references)
    assert max(differences) < 1e-4, differences
    assert max(old_differences) > 1e-3  # the test tells the two transforms apart


def test_hps_checkpoint_for_another_architecture_is_refused(prompted, tiny_scorer_models, tmp_path) -> None:
    wrong = tmp_path / "wrong.pt"
    torch.save({"state_dict": {"visual.proj": torch.zeros(2, 2)}}, wrong)
    options = ScorerOptions(model=str(tiny_scorer_models["open_clip"]), head=str(wrong))
    result = score_folder(prompted, ScorersSpec(use=("hps-v2",), options={"hps-v2": options}),
                          Store(tmp_path / "store"), torch.device("cpu"))
    assert result.failures and "does not fit" in result.failures[0]


def test_pickscore_is_logit_scale_times_cosine(prompted: Path, tiny_scorer_models, tmp_path: Path) -> None:
    clip = tiny_scorer_models["clip"]
    result = score_folder(prompted, ScorersSpec(use=("pickscore",), options={"pickscore": ScorerOptions(
        model=str(clip))}), Store(tmp_path / "store"), torch.device("cpu"))
    model = CLIPModel.from_pretrained(clip).eval()
    processor = CLIPProcessor.from_pretrained(clip)
    from ckptbench.prompt import strip_prompt_syntax

    for row in result.frame.itertuples():
        # PickScore's README: normalised embeddings, logit_scale.exp() * text @ image.T
        with torch.no_grad():
            image = model.get_image_features(**processor(images=Image.open(row.image).convert("RGB"),
                                                         return_tensors="pt")).pooler_output
            text = model.get_text_features(**processor(text=[strip_prompt_syntax(row.prompt)], padding=True,
                                                       truncation=True, max_length=77,
                                                       return_tensors="pt")).pooler_output
        image = image / image.norm(dim=-1, keepdim=True)
        text = text / text.norm(dim=-1, keepdim=True)
        expected = float(model.logit_scale.detach().exp() * (text @ image.T)[0, 0])
        assert row.value == pytest.approx(expected, abs=1e-4)


def test_missing_kenjiqq_head_names_where_to_get_it() -> None:
    from ckptbench.errors import WeightsUnavailableError
    from ckptbench.metrics.kenjiqq import KenjiqqRating

    with pytest.raises(WeightsUnavailableError, match=r"kenjiqq/aesthetics-scorer.*\[scorers.kenjiqq-rating\] head"):
        KenjiqqRating(ScorerOptions()).head_files()
