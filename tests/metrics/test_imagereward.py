"""imagereward against ImageReward's own model code, restated on tiny random weights saved in the released
file's key layout; the pickle opt-in; the safetensors copy scores the same."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tests.hand_computed import parity
from torchvision import transforms
from transformers import AutoTokenizer

from ckptbench.demo.tiny_scorers import save_tiny_imagereward
from ckptbench.errors import ModelFileError
from ckptbench.score_folder import score_folder
from ckptbench.spec import ScorerOptions, ScorersSpec
from ckptbench.store import Store

PROMPTS = ["a red cube on a table", "portrait of an old fisherman", "a (cute:1.3) corgi", "isometric room",
           "a lighthouse at dusk, " * 12, "watercolor fox"]  # the fifth is longer than 35 tokens


@pytest.fixture(scope="module")
def imagereward(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_imagereward(tmp_path_factory.mktemp("imagereward") / "ImageReward", seed=21)


def _layer_norm(x: torch.Tensor, state: dict[str, torch.Tensor], prefix: str, eps: float) -> torch.Tensor:
    return torch.nn.functional.layer_norm(x, x.shape[-1:], state[f"{prefix}.weight"], state[f"{prefix}.bias"], eps)


def _linear(x: torch.Tensor, state: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    return x @ state[f"{prefix}.weight"].T + state[f"{prefix}.bias"]


def _vit(pixels: torch.Tensor, s: dict[str, torch.Tensor], heads: int) -> torch.Tensor:
    """BLIP ``models/BLIP/vit.py`` VisionTransformer.forward (eval; LayerNorm eps 1e-6)."""
    p = "blip.visual_encoder"
    x = torch.nn.functional.conv2d(pixels, s[f"{p}.patch_embed.proj.weight"], s[f"{p}.patch_embed.proj.bias"],
                                   stride=s[f"{p}.patch_embed.proj.weight"].shape[-1])
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([s[f"{p}.cls_token"].expand(x.shape[0], -1, -1), x], dim=1)
    x = x + s[f"{p}.pos_embed"][:, : x.shape[1]]
    blocks = len({k.split(".")[3] for k in s if k.startswith(f"{p}.blocks.")})
    for i in range(blocks):
        b = f"{p}.blocks.{i}"
        h = _layer_norm(x, s, f"{b}.norm1", 1e-6)
        batch, tokens, width = h.shape
        qkv = _linear(h, s, f"{b}.attn.qkv").reshape(batch, tokens, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attention = (q @ k.transpose(-2, -1) * (width // heads) ** -0.5).softmax(dim=-1)
        x = x + _linear((attention @ v).transpose(1, 2).reshape(batch, tokens, width), s, f"{b}.attn.proj")
        h = _layer_norm(x, s, f"{b}.norm2", 1e-6)
        x = x + _linear(torch.nn.functional.gelu(_linear(h, s, f"{b}.mlp.fc1")), s, f"{b}.mlp.fc2")
    return _layer_norm(x, s, f"{p}.norm", 1e-6)


def _attention(x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor, s: dict[str, torch.Tensor], prefix: str,
               heads: int) -> torch.Tensor:
    """med.py BertAttention: BertSelfAttention (additive mask (1 − m)·−10000) + BertSelfOutput."""
    def split(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(t.shape[0], t.shape[1], heads, -1).permute(0, 2, 1, 3)

    q, k, v = (split(_linear(source, s, f"{prefix}.self.{name}"))
               for name, source in (("query", x), ("key", context), ("value", context)))
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + (1.0 - mask[:, None, None, :].float()) * -10000.0
    out = (scores.softmax(dim=-1) @ v).permute(0, 2, 1, 3).reshape(x.shape)
    return _layer_norm(_linear(out, s, f"{prefix}.output.dense") + x, s, f"{prefix}.output.LayerNorm", 1e-12)


def _reference_rewards(folder: Path, images: list[Image.Image], prompts: list[str]) -> np.ndarray:
    """ImageReward/ImageReward.py ``score`` with its BLIP modules (models/BLIP/vit.py, med.py), restated."""
    s = torch.load(folder / "ImageReward.pt", map_location="cpu", weights_only=True)
    config = json.loads((folder / "med_config.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(folder)
    width = s["blip.visual_encoder.cls_token"].shape[-1]
    size = s["blip.visual_encoder.patch_embed.proj.weight"].shape[-1] * math.isqrt(
        s["blip.visual_encoder.pos_embed"].shape[1] - 1)
    transform = transforms.Compose([  # ImageReward.py _transform(224), at the tiny model's size
        transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC), transforms.CenterCrop(size),
        transforms.ToTensor(),
        transforms.Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))])
    rewards = []
    with torch.no_grad():
        for image, prompt in zip(images, prompts, strict=True):
            tokens = tokenizer(prompt, padding="max_length", truncation=True, max_length=35, return_tensors="pt")
            image_embeds = _vit(transform(image).unsqueeze(0), s, heads=width // 64)
            t = "blip.text_encoder"
            ids = tokens["input_ids"]
            x = s[f"{t}.embeddings.word_embeddings.weight"][ids] + s[f"{t}.embeddings.position_embeddings.weight"][
                : ids.shape[1]]
            x = _layer_norm(x, s, f"{t}.embeddings.LayerNorm", 1e-12)
            image_mask = torch.ones(image_embeds.shape[:-1])
            for i in range(config["num_hidden_layers"]):
                layer = f"{t}.encoder.layer.{i}"
                x = _attention(x, x, tokens["attention_mask"], s, f"{layer}.attention", config["num_attention_heads"])
                x = _attention(x, image_embeds, image_mask, s, f"{layer}.crossattention",
                               config["num_attention_heads"])
                h = torch.nn.functional.gelu(_linear(x, s, f"{layer}.intermediate.dense"))
                x = _layer_norm(_linear(h, s, f"{layer}.output.dense") + x, s, f"{layer}.output.LayerNorm", 1e-12)
            r = x[:, 0, :]
            for index in (0, 2, 4, 6, 7):  # MLP: Linear layers at these indices, dropouts between, no activation
                r = _linear(r, s, f"mlp.layers.{index}")
            rewards.append(float((r[0, 0] - 0.16717362830052426) / 1.0333394966054072))
    return np.array(rewards)


def _score(images: Path, model: Path, store: Path, allow_pickle: bool = True):
    options = ScorerOptions(model=str(model), allow_pickle=allow_pickle)
    return score_folder(images, ScorersSpec(use=("imagereward",), options={"imagereward": options}), Store(store),
                        torch.device("cpu"))


def test_imagereward_equals_the_reference_model_code(imagereward: Path, prompted: Path, tmp_path: Path) -> None:
    """Reference: THUDM/ImageReward ImageReward/ImageReward.py + models/BLIP (restated in this file)."""
    from ckptbench.prompt import strip_prompt_syntax

    result = _score(prompted, imagereward, tmp_path / "store")
    assert not result.failures, result.failures
    frame = result.frame.sort_values("image")
    images = [Image.open(path).convert("RGB") for path in frame["image"]]
    # The reference receives the prompt as written; ours strips A1111 syntax first, so compare on that text.
    expected = _reference_rewards(imagereward, images, [strip_prompt_syntax(p) for p in frame["prompt"]])
    ours = frame["value"].to_numpy(dtype=float)
    assert len(ours) == len(PROMPTS)
    assert np.std(expected) > 0.05  # the random model tells the images apart
    parity("imagereward", ours, expected)
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5)
    assert result.truncated == {"imagereward": {"images": 1}}  # the long prompt, over 35 tokens


def test_the_pickle_needs_the_opt_in_and_the_safetensors_copy_does_not(imagereward, prompted, tmp_path) -> None:
    from ckptbench.models.convert import convert_to_safetensors

    with pytest.raises(ModelFileError, match=r"ImageReward.pt: .*pickles.*\[scorers.imagereward\] allow_pickle = true"):
        _score(prompted, imagereward, tmp_path / "a", allow_pickle=False)
    copy = tmp_path / "converted"
    copy.mkdir()
    for name in ("med_config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        (copy / name).write_bytes((imagereward / name).read_bytes())
    convert_to_safetensors(imagereward / "ImageReward.pt", copy / "ImageReward.safetensors", allow_pickle=True)
    pickled = _score(prompted, imagereward, tmp_path / "b").frame.set_index("image")["value"]
    safe = _score(prompted, copy, tmp_path / "c", allow_pickle=False).frame.set_index("image")["value"]
    assert safe.to_dict() == pickled.to_dict()


def test_a_file_of_another_model_is_refused_in_one_sentence(imagereward: Path, tmp_path: Path) -> None:
    from ckptbench.metrics.imagereward_model import load_imagereward

    wrong = tmp_path / "ImageReward.pt"
    state = torch.load(imagereward / "ImageReward.pt", weights_only=True)
    state = {key: value for key, value in state.items() if not key.startswith("blip.text_encoder.encoder.layer.1.")}
    torch.save(state, wrong)
    with pytest.raises(ModelFileError, match=r"lacks \d+ of the ImageReward model's weights"):
        load_imagereward(wrong, imagereward / "med_config.json")
    assert AutoTokenizer.from_pretrained(imagereward)("a red cube")["input_ids"][0] == 2  # [CLS]
