"""kenjiqq heads: the .pth + .config format, the reference MLP by hand, and the backbone named by the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ckptbench.demo.tiny_scorers import save_tiny_kenjiqq_head
from ckptbench.errors import ModelFileError
from ckptbench.metrics.base import FeatureBatch
from ckptbench.metrics.kenjiqq import KenjiqqArtifacts, KenjiqqRating
from ckptbench.spec import ScorerOptions


@pytest.mark.parametrize(("relu", "sigmoid"), [(False, False), (True, True)])
def test_head_equals_reference_mlp(tmp_path: Path, relu: bool, sigmoid: bool) -> None:
    path = save_tiny_kenjiqq_head(tmp_path / "aesthetics_scorer_rating_openclip_vit_h_14.pth", 1280, seed=3,
                                  relu=relu, sigmoid=sigmoid)
    scorer = KenjiqqRating(ScorerOptions(head=str(path)))
    assert scorer.model_source == "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"  # named by the file
    scorer.load(torch.device("cpu"))
    pooled = np.random.default_rng(0).normal(size=(5, 1280)) * 3
    ours = scorer.score(FeatureBatch(features={"pooled": torch.from_numpy(pooled).float()}, texts=[""] * 5))
    state = torch.load(path, weights_only=True)
    x = pooled.astype(np.float32).astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    indices = (0, 3, 6, 9, 11) if relu else (0, 2, 4, 6, 7)
    for position, index in enumerate(indices):
        x = x @ state[f"layers.{index}.weight"].double().numpy().T + state[f"layers.{index}.bias"].double().numpy()
        if relu and position < 4:
            x = np.maximum(x, 0)
    expected = 1 + 9 / (1 + np.exp(-x[:, 0])) if sigmoid else x[:, 0]
    assert np.max(np.abs(ours - expected)) < 1e-5
    assert set(scorer.head_files()) == {f"head/{path.name}", f"head/{path.with_suffix('.config').name}"}


def test_backbone_from_input_size_and_errors(tmp_path: Path) -> None:
    path = save_tiny_kenjiqq_head(tmp_path / "my_head.pth", 1024)
    assert KenjiqqArtifacts(ScorerOptions(head=str(path))).model_source == "laion/CLIP-ViT-L-14-laion2B-s32B-b82K"
    config = json.loads(path.with_suffix(".config").read_text())
    path.with_suffix(".config").write_text(json.dumps({**config, "input_size": 768}))
    with pytest.raises(ModelFileError, match="disagree"):
        KenjiqqArtifacts(ScorerOptions(head=str(path))).load(torch.device("cpu"))
    path.with_suffix(".config").unlink()
    with pytest.raises(ModelFileError, match=r"\.config"):
        KenjiqqArtifacts(ScorerOptions(head=str(path))).load(torch.device("cpu"))
