"""A1111 infotext: real-world layouts parse as A1111 parses them, and what we write reads back."""

from __future__ import annotations

import json

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ckptbench.infotext import format_hashes, format_infotext, parse_hashes, parse_infotext, quote, sampler_name

# An A1111 1.10 infotext as saved in a PNG: multi-line prompt with a LoRA tag, multi-line negative with an
# embedding, quoted hash lists and hires-fix keys.
A1111_TEXT = """masterpiece, best quality, (1girl:1.2), <lora:add_detail:0.6>
looking at viewer, [smile]
Negative prompt: EasyNegative, lowres,
bad hands
Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 3105713318, Size: 512x768, \
Model hash: 7f96a1a9ca, Model: anything-v5, Denoising strength: 0.45, Clip skip: 2, Hires upscale: 2, \
Hires steps: 15, Hires upscaler: R-ESRGAN 4x+ Anime6B, Lora hashes: "add_detail: 7c6bad76eb54", \
TI hashes: "EasyNegative: c74b4e810b03, bad-hands-5: aa7651be154c", Version: v1.10.1"""


def test_a1111_infotext_parses_like_a1111() -> None:
    info = parse_infotext(A1111_TEXT)
    assert info.prompt == "masterpiece, best quality, (1girl:1.2), <lora:add_detail:0.6>\nlooking at viewer, [smile]"
    assert info.negative_prompt == "EasyNegative, lowres,\nbad hands"
    assert info.parameters["Steps"] == "28"
    assert info.parameters["Hires upscaler"] == "R-ESRGAN 4x+ Anime6B"
    assert info.parameters["Denoising strength"] == "0.45"
    assert info.sampler == "DPM++ 2M Karras"
    assert info.size == (512, 768)
    assert info.clip_skip == 2
    assert info.lora_hashes == {"add_detail": "7c6bad76eb54"}
    assert info.ti_hashes == {"EasyNegative": "c74b4e810b03", "bad-hands-5": "aa7651be154c"}


def test_a1111_infotext_round_trips_exactly() -> None:
    info = parse_infotext(A1111_TEXT)
    assert format_infotext(info.prompt, info.negative_prompt, info.parameters) == A1111_TEXT


def test_without_negative_or_parameters() -> None:
    info = parse_infotext("a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7")
    assert (info.prompt, info.negative_prompt, info.sampler) == ("a cat", "", "Euler a")
    # a last line with fewer than three pairs is prompt text, as in A1111
    info = parse_infotext("a cat\nstyle: watercolor, mood: calm")
    assert info.prompt == "a cat\nstyle: watercolor, mood: calm" and info.parameters == {}
    assert parse_infotext("").clip_skip == 1


def test_quoting_matches_a1111() -> None:
    assert quote("Euler a") == "Euler a"
    assert quote("a, b") == '"a, b"'
    assert quote("x: y") == '"x: y"'
    assert quote("two\nlines") == '"two\\nlines"'
    assert quote('"quoted"') == '"\\"quoted\\""'  # A1111 writes this raw and then misreads it


@pytest.mark.parametrize(("sampler", "schedule", "name"), [
    ("DPM++ 2M Karras", None, "DPM++ 2M Karras"),
    ("DPM++ 2M", "Karras", "DPM++ 2M Karras"),
    ("DPM++ 2M", "Automatic", "DPM++ 2M Karras"),
    ("DPM++ 2M SDE", "Automatic", "DPM++ 2M SDE Exponential"),
    ("Euler a", "Automatic", "Euler a"),
    ("Euler", "Uniform", "Euler"),
    ("DPM++ 2M Karras", "Karras", "DPM++ 2M Karras"),
    ("Euler", "SGM Uniform", "Euler SGM Uniform"),  # unknown to ckptbench: refused later, by name
])
def test_sampler_and_schedule_type_map_to_one_name(sampler: str, schedule: str | None, name: str) -> None:
    assert sampler_name(sampler, schedule) == name


def test_hash_lists() -> None:
    assert parse_hashes("a: 1, b:c: 2") == {"a": "1", "b:c": "2"}
    assert format_hashes({"my,lora:v2": "abc"}) == "mylorav2: abc"
    assert parse_hashes(format_hashes({"x": "1", "y": "2"})) == {"x": "1", "y": "2"}


# Property: whatever ckptbench writes, A1111's rules read back. Prompt lines lose surrounding spaces, as in
# A1111; a prompt line may not itself start with "Negative prompt:".
_TEXT = st.text(alphabet=st.sampled_from(list("abcXYZ 019,:;()[]<>\"'\\.-_é猫\n")), max_size=40)
_KEY = st.from_regex(r"[A-Za-z][A-Za-z0-9 \-/]{0,12}[A-Za-z0-9]", fullmatch=True)
_VALUE = st.text(alphabet=st.sampled_from(list("abc 019,:\"'\\.-_é\n\t")), min_size=1, max_size=20)


def _as_a1111_reads(text: str) -> str:
    return "\n".join(line.strip() for line in text.split("\n"))


@settings(max_examples=300, deadline=None)
@given(_TEXT, _TEXT, st.dictionaries(_KEY, _VALUE, min_size=3, max_size=8))
def test_round_trip(prompt: str, negative: str, parameters: dict[str, str]) -> None:
    assume(not any(line.strip().startswith("Negative prompt:") for line in prompt.split("\n")))
    assume(all(value.strip() for value in parameters.values()))
    info = parse_infotext(format_infotext(prompt, negative, parameters))
    assert info.prompt == _as_a1111_reads(prompt).lstrip()
    assert info.negative_prompt == _as_a1111_reads(negative)
    assert info.parameters == parameters


def test_generated_pngs_carry_clip_skip(make_job, tiny_checkpoint) -> None:
    from ckptbench.generate.diffusers_backend import infotext_for

    text = infotext_for(make_job("a (cat:1.2)", negative_prompt="blurry", clip_skip=2), tiny_checkpoint)
    info = parse_infotext(text)
    assert (info.prompt, info.negative_prompt, info.clip_skip) == ("a (cat:1.2)", "blurry", 2)
    assert info.parameters["Model hash"] == tiny_checkpoint.sha256[:10]
    assert json.loads(text.split("Version: ", 1)[1]).startswith("ckptbench")
