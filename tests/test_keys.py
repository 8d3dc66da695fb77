from __future__ import annotations

import dataclasses

import pytest

from ckptbench.generate.base import SamplingSettings, image_key
from ckptbench.hashing import autov2, canonical_json, content_key

BASE = {
    "checkpoint_sha256": "a" * 64, "prompt": "a cat", "negative_prompt": "blurry", "seed": 1,
    "settings": SamplingSettings(sampler="Euler a", steps=20, cfg=7.0, width=512, height=512, dtype="fp32"),
    "backend": "diffusers-0.42/gen1",
}


def test_same_inputs_give_the_same_key() -> None:
    assert image_key(**BASE) == image_key(**dict(BASE))
    assert len(image_key(**BASE)) == 64


@pytest.mark.parametrize(
    "change",
    [
        {"checkpoint_sha256": "b" * 64},
        {"prompt": "a cat "},
        {"negative_prompt": ""},
        {"seed": 2},
        {"backend": "diffusers-0.43/gen1"},
        {"settings": dataclasses.replace(BASE["settings"], sampler="Euler")},
        {"settings": dataclasses.replace(BASE["settings"], steps=21)},
        {"settings": dataclasses.replace(BASE["settings"], cfg=7.5)},
        {"settings": dataclasses.replace(BASE["settings"], width=768)},
        {"settings": dataclasses.replace(BASE["settings"], height=768)},
        {"settings": dataclasses.replace(BASE["settings"], dtype="fp16")},
    ],
)
def test_any_pixel_relevant_change_gives_a_new_key(change: dict) -> None:
    assert image_key(**{**BASE, **change}) != image_key(**BASE)


def test_canonical_json_ignores_key_order() -> None:
    assert canonical_json({"b": 1, "a": [1, 2]}) == canonical_json({"a": [1, 2], "b": 1})
    assert content_key({"b": 1, "a": 2}) == content_key({"a": 2, "b": 1})
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_autov2_is_first_ten_hex_digits() -> None:
    assert autov2("6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa") == "6CE0161689"
