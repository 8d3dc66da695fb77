"""laion-aesthetic-v2 with the real LAION head files equals the reference MLP formula on given embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tests.hand_computed import aesthetic_mlp

from ckptbench.errors import ModelFileError
from ckptbench.hashing import sha256_file
from ckptbench.metrics.aesthetic import LINEAR_MSE_SHA256, LaionAestheticV2, load_aesthetic_head
from ckptbench.metrics.base import FeatureBatch
from ckptbench.spec import ScorerOptions


@pytest.mark.parametrize(("file", "indices", "relu"), [
    ("sac+logos+ava1-l14-linearMSE.pth", (0, 2, 4, 6, 7), False),
    ("ava+logos-l14-reluMSE.pth", (0, 3, 6, 9, 11), True),
])
def test_real_head_matches_reference_formula(shared_data: Path, file: str, indices: tuple[int, ...],
                                             relu: bool) -> None:
    path = shared_data / "weights" / file
    scorer = LaionAestheticV2(ScorerOptions(head=str(path)))
    scorer.load(torch.device("cpu"))
    # Unnormalised embeddings of CLIP-like magnitude: the scorer must normalise them itself.
    embeddings = np.random.default_rng(0).normal(size=(32, 768)) * 10
    ours = scorer.score(FeatureBatch(features={"image": torch.from_numpy(embeddings).float()}, texts=[""] * 32))
    state = torch.load(path, map_location="cpu", weights_only=True)
    expected = aesthetic_mlp(state, embeddings.astype(np.float32).astype(np.float64), indices, relu)
    assert np.max(np.abs(ours - expected)) < 1e-5
    assert scorer.head_files() == {f"head/{file}": sha256_file(path)}


def test_standard_head_hash_is_the_published_one(shared_data: Path) -> None:
    assert sha256_file(shared_data / "weights" / "sac+logos+ava1-l14-linearMSE.pth") == LINEAR_MSE_SHA256


def test_non_head_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "not-a-head.pth"
    torch.save({"weight": torch.zeros(3)}, path)
    with pytest.raises(ModelFileError, match="layout of an improved-aesthetic-predictor head"):
        load_aesthetic_head(str(path))
