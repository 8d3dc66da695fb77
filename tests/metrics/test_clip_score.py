"""clip-score against torchmetrics' CLIPScore on the same tiny model and images; clip-cosine; truncation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
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
    differences, cosines = [], []
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
        cosines.append(frame[(str(path), "clip-cosine")])
        assert ours == pytest.approx(100 * max(cosines[-1], 0.0), abs=1e-9)
    assert max(differences) < 1e-4, differences


def test_long_prompts_are_counted_not_silently_truncated(prompted, tiny_scorer_models, tmp_path) -> None:
    result = _scores(prompted[0][0].parent, ("clip-score",), tiny_scorer_models["clip"], tmp_path / "store")
    assert result.truncated == {"clip-score": {"images": 1}}
