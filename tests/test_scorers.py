from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPModel, CLIPProcessor

from ckptbench.hashing import sha256_file
from ckptbench.metrics import hf_clip
from ckptbench.metrics.aesthetic import LINEAR_MSE_SHA256, LaionAestheticV2, load_aesthetic_head
from ckptbench.metrics.base import BackboneRequest, BackboneSpec, FeatureBatch
from ckptbench.metrics.clip_score import ClipScore
from ckptbench.metrics.hf_clip import HFClipBackbone
from ckptbench.spec import ScorerOptions
from tests.hand_computed import aesthetic_mlp


def resolve_hf_clip(model: str, dtype: str, scorer: str, cache: None) -> BackboneSpec:
    return hf_clip.resolve(BackboneRequest(hf_clip.KIND, model), dtype, scorer, cache)


@pytest.mark.parametrize(
    ("file", "indices", "relu"),
    [("sac+logos+ava1-l14-linearMSE.pth", (0, 2, 4, 6, 7), False),
     ("ava+logos-l14-reluMSE.pth", (0, 3, 6, 9, 11), True)],
)
def test_real_laion_heads_match_hand_computation(shared_data, file, indices, relu) -> None:
    path = shared_data / "weights" / file
    state = torch.load(path, map_location="cpu", weights_only=True)
    embeddings = np.random.default_rng(0).normal(size=(5, 768))
    expected = aesthetic_mlp(state, embeddings, indices, relu)

    scorer = LaionAestheticV2(ScorerOptions(head=str(path)))
    scorer.load(torch.device("cpu"))
    got = scorer.score(FeatureBatch(features={"image": torch.from_numpy(embeddings).float()}, texts=[""] * 5))
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5)
    # The real heads give scores on the AVA scale for unit embeddings, not 20–30 as for raw ones.
    assert np.all(np.abs(got) < 15)


def test_standard_head_hash_is_pinned(shared_data) -> None:
    assert sha256_file(shared_data / "weights" / "sac+logos+ava1-l14-linearMSE.pth") == LINEAR_MSE_SHA256


def test_head_with_wrong_layout_is_refused(tmp_path) -> None:
    from ckptbench.errors import ModelFileError

    bad = tmp_path / "bad.pth"
    torch.save({"layers.0.weight": torch.zeros(4, 768), "layers.1.weight": torch.zeros(1, 4)}, bad)
    with pytest.raises(ModelFileError, match="layout"):
        load_aesthetic_head(str(bad))


def _images(count: int) -> list[Image.Image]:
    rng = np.random.default_rng(1)
    return [Image.fromarray(rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)) for _ in range(count)]


def test_clip_score_matches_hand_computation_from_clip_forward(tiny_models) -> None:
    images = _images(3)
    texts = ["a red cube", "a blue sphere on a table", "portrait of an old man"]
    spec = resolve_hf_clip(str(tiny_models["clip"]), "fp32", "clip-score", None)
    backbone = HFClipBackbone(spec, torch.device("cpu"))
    scorer = ClipScore(ScorerOptions(model=str(tiny_models["clip"])))
    image_embeds = torch.from_numpy(backbone.embed_images(images, {"image"})["image"])
    got = scorer.score(FeatureBatch(features={"image": image_embeds}, texts=texts,
                                    text_embeds=torch.from_numpy(backbone.embed_texts(texts))))

    # Independent path: CLIPModel.forward gives normalised embeddings and logit_scale·cos.
    model = CLIPModel.from_pretrained(tiny_models["clip"]).eval()
    processor = CLIPProcessor.from_pretrained(tiny_models["clip"])
    with torch.no_grad():
        out = model(**processor(text=texts, images=images, return_tensors="pt", padding=True))
        cosines = (out.logits_per_image / model.logit_scale.exp()).diagonal().double().numpy()
    expected = 100.0 * np.maximum(cosines, 0.0)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert scorer.text_for("(masterpiece:1.2), a <lora:x:0.5> cat") == "masterpiece, a cat"


def test_backbone_identity_is_by_content(tiny_models, tmp_path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_models["clip"], copy)
    first = resolve_hf_clip(str(tiny_models["clip"]), "fp32", "x", None)
    second = resolve_hf_clip(str(copy), "fp32", "x", None)
    assert first.key == second.key
    assert resolve_hf_clip(str(copy), "bf16", "x", None).key != first.key


def test_missing_hub_weights_give_one_clear_message() -> None:
    from ckptbench.errors import WeightsUnavailableError
    from ckptbench.metrics.weights import resolve_file, resolve_folder

    with pytest.raises(WeightsUnavailableError, match=r"hf download org-that/does-not-exist.*\[scorers.clip-score\]"):
        resolve_folder("org-that/does-not-exist", "clip-score")
    with pytest.raises(WeightsUnavailableError, match="head weights"):
        resolve_file("hf:org-that/does-not-exist/head.pth", "laion-aesthetic-v2")
