"""clip-score against torchmetrics' CLIPScore on the same tiny model and images; clip-cosine; truncation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tests.hand_computed import parity
from transformers import CLIPModel, CLIPProcessor

from ckptbench.score_folder import score_folder
from ckptbench.spec import ScorerOptions, ScorersSpec
from ckptbench.store import Store

LONG_PROMPT = ", ".join(f"detailed element number {i}" for i in range(40))  # far beyond 77 tokens
PROMPTS = ["a red cube on a table", "portrait of an old fisherman", LONG_PROMPT, "isometric room",
           "a lighthouse at dusk", "watercolor fox"]


class _PooledOutputs(torch.nn.Module):
    """transformers 5 returns output objects from the feature calls; torchmetrics 1.9 expects tensors."""

    def __init__(self, model: CLIPModel) -> None:
        super().__init__()
        self.model = model
        self.config = model.config

    def get_image_features(self, *args: object, **kwargs: object) -> torch.Tensor:
        return self.model.get_image_features(*args, **kwargs).pooler_output

    def get_text_features(self, *args: object, **kwargs: object) -> torch.Tensor:
        return self.model.get_text_features(*args, **kwargs).pooler_output


@pytest.fixture
def prompted(tiny_scorer_models: dict[str, Path], tmp_path: Path) -> list[tuple[Path, str]]:
    pairs = []
    for prompt, source in zip(PROMPTS, sorted(tiny_scorer_models["images"].glob("*.png")), strict=True):
        target = tmp_path / "images" / source.name
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(source.read_bytes())
        target.with_suffix(".txt").write_text(prompt)
        pairs.append((target, prompt))
    return pairs


def _scores(folder: Path, names: tuple[str, ...], clip: Path, store: Path):
    spec = ScorersSpec(use=names, options={name: ScorerOptions(model=str(clip)) for name in names})
    return score_folder(folder, spec, Store(store), torch.device("cpu"))


def test_clip_score_equals_torchmetrics_per_image(prompted, tiny_scorer_models, tmp_path) -> None:
    from torchmetrics.multimodal.clip_score import CLIPScore

    clip = tiny_scorer_models["clip"]
    result = _scores(prompted[0][0].parent, ("clip-score", "clip-cosine"), clip, tmp_path / "store")
    frame = result.frame.set_index(["image", "scorer"])["value"]
    model = CLIPModel.from_pretrained(clip).eval()
    processor = CLIPProcessor.from_pretrained(clip)
    metric = CLIPScore(model_name_or_path=lambda: (_PooledOutputs(model), processor))
    differences, cosines, ours_all, references = [], [], [], []
    # Prompts within the 77-token context only: torchmetrics truncates a long prompt by slicing the token
    # ids, which drops the end-of-text token the pooled output is read at; we keep it (as OpenAI CLIP's
    # tokenize(truncate=True) does), so long prompts legitimately differ.
    for path, prompt in (pair for pair in prompted if pair[1] != LONG_PROMPT):
        pixels = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"))).permute(2, 0, 1)
        metric.reset()
        # One image per update: torchmetrics clamps the batch mean, which for one image is that image's score.
        reference = float(metric(pixels, prompt).detach())
        ours = frame[(str(path), "clip-score")]
        differences.append(abs(ours - reference))
        ours_all.append(ours)
        references.append(reference)
        cosines.append(frame[(str(path), "clip-cosine")])
        assert ours == pytest.approx(100 * max(cosines[-1], 0.0), abs=1e-9)
    parity("clip-score (torchmetrics, ≤ 77 tokens)", ours_all, references)
    assert max(differences) < 1e-4, differences


def test_long_prompts_are_counted_not_silently_truncated(prompted, tiny_scorer_models, tmp_path) -> None:
    result = _scores(prompted[0][0].parent, ("clip-score",), tiny_scorer_models["clip"], tmp_path / "store")
    assert result.truncated == {"clip-score": {"images": 1}}


def test_long_prompts_keep_the_end_token_as_openai_clip_does(prompted, tiny_scorer_models, tmp_path) -> None:
    """Over 77 tokens the two references differ, and we follow OpenAI's. Reference for ours: openai/CLIP
    ``clip.tokenize(truncate=True)`` (start token, the first 75 tokens, then the end token; open_clip's
    tokenizer does the same). torchmetrics (``functional/multimodal/clip_score.py`` ``_get_features``) slices
    the token ids to 77 instead, which drops the end token; CLIP's pooled text output is read at the end
    token, so torchmetrics reads position 0 instead — the start token, whose causal embedding is the same
    for every prompt: all long prompts get one text embedding."""
    import open_clip
    from torchmetrics.functional.multimodal.clip_score import _get_features

    clip = tiny_scorer_models["clip"]
    result = _scores(prompted[0][0].parent, ("clip-cosine",), clip, tmp_path / "store")
    path = next(path for path, prompt in prompted if prompt == LONG_PROMPT)
    ours = float(result.frame.set_index("image")["value"][str(path)])
    model = CLIPModel.from_pretrained(clip).eval()
    processor = CLIPProcessor.from_pretrained(clip)
    with torch.no_grad():
        image = model.get_image_features(**processor(images=Image.open(path).convert("RGB"),
                                                     return_tensors="pt")).pooler_output
        tokens = open_clip.get_tokenizer("ViT-L-14")([LONG_PROMPT])  # OpenAI's truncate=True layout
        assert int(tokens[0, -1]) == processor.tokenizer.eos_token_id
        openai_text = model.get_text_features(input_ids=tokens).pooler_output
        other_long = "a castle, " + LONG_PROMPT  # differs within the first 77 tokens
        torchmetrics_texts = _get_features([LONG_PROMPT, other_long], "text", torch.device("cpu"),
                                           _PooledOutputs(model), processor)
        ours_texts = model.get_text_features(**processor(text=[LONG_PROMPT, other_long], padding="max_length",
                                                         truncation=True, max_length=77,
                                                         return_tensors="pt")).pooler_output
    cosine = torch.nn.functional.cosine_similarity
    parity("clip-cosine (OpenAI truncate=True, > 77 tokens)", [ours], [float(cosine(image, openai_text)[0])])
    assert ours == pytest.approx(float(cosine(image, openai_text)[0]), abs=1e-6)
    # torchmetrics: one embedding for every long prompt; ours tells them apart.
    torch.testing.assert_close(torchmetrics_texts[0], torchmetrics_texts[1])
    assert float((ours_texts[0] - ours_texts[1]).abs().max()) > 1e-3
    assert abs(ours - float(cosine(image, torchmetrics_texts[:1])[0])) > 1e-4
