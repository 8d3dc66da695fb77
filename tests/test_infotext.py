"""A1111 infotext: real-world layouts parse as A1111 parses them, and what we write reads back."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ckptbench.generate.samplers import SAMPLER_TABLE, SCHEDULES
from ckptbench.infotext import (
    InfotextError,
    format_hashes,
    format_infotext,
    parse_hashes,
    parse_infotext,
    quote,
    sampler_name,
)

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
    assert (info.sampler, info.schedule_type, info.rng) == ("DPM++ 2M", "Karras", "GPU")
    assert info.size == (512, 768)
    assert info.clip_skip == 2
    assert info.lora_hashes == {"add_detail": "7c6bad76eb54"}
    assert info.ti_hashes == {"EasyNegative": "c74b4e810b03", "bad-hands-5": "aa7651be154c"}


def test_a1111_infotext_round_trips_exactly() -> None:
    info = parse_infotext(A1111_TEXT)
    assert format_infotext(info.prompt, info.negative_prompt, info.parameters) == A1111_TEXT


def test_without_negative_or_parameters() -> None:
    info = parse_infotext("a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7")
    assert (info.prompt, info.negative_prompt, info.sampler, info.schedule_type) == ("a cat", "", "Euler a", "Uniform")
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
    ("DPM++ 2M", None, "DPM++ 2M Karras"),  # A1111 ≥ 1.9: no schedule type = Automatic
    ("DPM2 a", None, "DPM2 a Karras"),
    ("DPM++ 2M SDE", "Automatic", "DPM++ 2M SDE Exponential"),
    ("Euler a", "Automatic", "Euler a Uniform"),
    ("Euler", "Uniform", "Euler Uniform"),
    ("DPM++ 2M Karras", "Karras", "DPM++ 2M Karras"),
    ("Euler", "SGM Uniform", "Euler SGM Uniform"),
    ("UniPC", None, "UniPC"),
])
def test_sampler_and_schedule_type_map_to_one_name(sampler: str, schedule: str | None, name: str) -> None:
    assert sampler_name(sampler, schedule) == name


def test_samplers_ckptbench_does_not_run_are_named_in_the_error() -> None:
    with pytest.raises(InfotextError, match="'Sampler: DPM adaptive' is not a sampler ckptbench runs"):
        parse_infotext("a cat\nSteps: 20, Sampler: DPM adaptive, CFG scale: 7").sampler_settings()


# --- A1111 v1.10's reading, restated: modules/infotext_utils.py parse_generation_parameters (the defaults
# for missing keys) and modules/sd_samplers.py get_sampler_and_scheduler, with 1.10's sampler and scheduler
# lists (sd_samplers_kdiffusion, sd_samplers_timesteps, sd_samplers_lcm, sd_schedulers). -----------------
A1111_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
A1111_SAMPLER_DEFAULTS = {  # label → options['scheduler'], in A1111's order (the first is the fallback)
    "DPM++ 2M": "karras", "DPM++ SDE": "karras", "DPM++ 2M SDE": "exponential", "DPM++ 2M SDE Heun": "exponential",
    "DPM++ 2S a": "karras", "DPM++ 3M SDE": "exponential", "Euler a": None, "Euler": None, "LMS": None,
    "Heun": None, "DPM2": "karras", "DPM2 a": "karras", "DPM fast": None, "DPM adaptive": None,
    "Restart": "karras", "DDIM": None, "DDIM CFG++": None, "PLMS": None, "UniPC": None, "LCM": None,
}
A1111_SCHEDULERS = [("automatic", "Automatic", ()), ("uniform", "Uniform", ()), ("karras", "Karras", ()),
                    ("exponential", "Exponential", ()), ("polyexponential", "Polyexponential", ()),
                    ("sgm_uniform", "SGM Uniform", ("SGMUniform",)), ("kl_optimal", "KL Optimal", ()),
                    ("align_your_steps", "Align Your Steps", ()), ("simple", "Simple", ()),
                    ("normal", "Normal", ()), ("ddim", "DDIM", ()), ("beta", "Beta", ())]


def a1111_parse_generation_parameters(text: str) -> dict[str, str]:
    res: dict[str, str] = {}
    *lines, lastline = text.strip().split("\n")
    if len(A1111_PARAM.findall(lastline)) < 3:
        lines.append(lastline)
        lastline = ""
    for key, value in A1111_PARAM.findall(lastline):
        if value[0] == '"' and value[-1] == '"':
            value = json.loads(value)
        size = re.match(r"^(\d+)x(\d+)$", value)
        if size:
            res[f"{key}-1"], res[f"{key}-2"] = size.group(1), size.group(2)
        else:
            res[key] = value
    res.setdefault("Clip skip", "1")
    res.setdefault("RNG", "GPU")  # "Missing RNG means the default was set, which is GPU RNG"
    res.setdefault("Schedule type", "Automatic")
    return res


def a1111_get_sampler_and_scheduler(sampler_name: str, scheduler_name: str) -> tuple[str, str]:
    by_name = {name: label for name, label, _ in A1111_SCHEDULERS} | {label: label for _, label, _ in A1111_SCHEDULERS}
    found = by_name.get(scheduler_name, "Automatic")
    name = sampler_name or "DPM++ 2M"
    for _, label, aliases in A1111_SCHEDULERS:
        for option in (label, *aliases):
            if name.endswith(" " + option):
                found = label
                name = name[0 : -(len(option) + 1)]
                break
    sampler = name if name in A1111_SAMPLER_DEFAULTS else "DPM++ 2M"
    default = A1111_SAMPLER_DEFAULTS[sampler]
    if default is not None and by_name[default] == found:  # convert_automatic
        found = "Automatic"
    return sampler, found


def a1111_runs(infotext: str) -> tuple[str, str | None]:
    """The sampler and the schedule A1111 1.10 samples with after pasting ``infotext``."""
    res = a1111_parse_generation_parameters(infotext)
    sampler, schedule = a1111_get_sampler_and_scheduler(res["Sampler"], res["Schedule type"])
    if sampler in ("DDIM", "PLMS", "UniPC"):
        return sampler, None  # the timestep samplers have no schedule
    if schedule == "Automatic":  # KDiffusionSampler.get_sigmas: the sampler's option, else the uniform sigmas
        default = A1111_SAMPLER_DEFAULTS[sampler]
        schedule = dict((name, label) for name, label, _ in A1111_SCHEDULERS)[default] if default else "Uniform"
    return sampler, schedule


def every_sampler_and_schedule() -> list[tuple[str, str | None]]:
    return [(info.name, schedule) for info in SAMPLER_TABLE
            for schedule in ([*SCHEDULES] if info.grid == "sigmas" else [None])]


def test_every_png_we_write_pastes_back_into_a1111_as_generated(make_job, tiny_checkpoint) -> None:
    """Issue 12: A1111 ≥ 1.9 must run what we ran, for every sampler × schedule type."""
    from ckptbench.generate.diffusers_backend import infotext_for

    for sampler, schedule in every_sampler_and_schedule():
        job = make_job("a (cat:1.2)", sampler=sampler, schedule=schedule)
        text = infotext_for(job, tiny_checkpoint)
        assert a1111_runs(text) == (sampler, schedule), text
        parsed = a1111_parse_generation_parameters(text)
        assert parsed["RNG"] == "CPU" and parsed["Sampler"] == sampler
        info = parse_infotext(text)
        assert (info.sampler, info.schedule_type, info.rng) == (sampler, schedule, "CPU")


def test_the_old_names_ckptbench_wrote_mean_another_sampler_to_a1111_19() -> None:
    """Why we write `Schedule type`: a bare pre-1.9 name pastes into A1111 1.10 as another schedule."""
    assert a1111_runs("a\nSteps: 20, Sampler: DPM++ 2M, CFG scale: 7") == ("DPM++ 2M", "Karras")
    assert a1111_runs("a\nSteps: 20, Sampler: DPM++ 2M SDE, CFG scale: 7") == ("DPM++ 2M SDE", "Exponential")
    assert a1111_runs("a\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Uniform, CFG scale: 7") == (
        "DPM++ 2M", "Uniform")


@pytest.mark.parametrize(("old", "new"), [
    ("Sampler: DPM++ 2M Karras", "Sampler: DPM++ 2M, Schedule type: Karras"),
    ("Sampler: DPM++ SDE Karras", "Sampler: DPM++ SDE, Schedule type: Karras"),
    ("Sampler: DPM++ 2M SDE Exponential", "Sampler: DPM++ 2M SDE, Schedule type: Exponential"),
    ("Sampler: Euler a", "Sampler: Euler a, Schedule type: Automatic"),
    ("Sampler: LMS Karras", "Sampler: LMS, Schedule type: Karras"),
    ("Sampler: DDIM", "Sampler: DDIM, Schedule type: Automatic"),
])
def test_civitai_style_old_and_new_formats_read_the_same(old: str, new: str) -> None:
    settings = []
    for sampler_part in (old, new):
        text = (f"masterpiece, 1girl\nNegative prompt: lowres\nSteps: 30, {sampler_part}, CFG scale: 5, "
                "Seed: 42, Size: 832x1216, Model hash: 7f96a1a9ca, Model: some_model, Version: v1.10.1")
        info = parse_infotext(text)
        settings.append((info.sampler, info.schedule_type, info.size, info.parameters["Steps"], info.rng))
        assert a1111_runs(text) == settings[-1][:2]
    assert settings[0] == settings[1]


def test_a1111_before_19_meant_the_uniform_schedule_by_a_bare_name() -> None:
    old = parse_infotext("a\nSteps: 20, Sampler: DPM++ 2M, CFG scale: 7, Version: v1.6.0")
    assert (old.sampler, old.schedule_type) == ("DPM++ 2M", "Uniform")
    combined = parse_infotext("a\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Version: v1.6.0")
    assert (combined.sampler, combined.schedule_type) == ("DPM++ 2M", "Karras")
    new = parse_infotext("a\nSteps: 20, Sampler: DPM++ 2M, CFG scale: 7, Version: v1.9.4")
    assert (new.sampler, new.schedule_type) == ("DPM++ 2M", "Karras")


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
    assert "Sampler: Euler, Schedule type: Uniform, CFG scale: 7" in text and "RNG: CPU" in text
