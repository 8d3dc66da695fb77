"""Arbitrary prompts and infotexts: a result or a clean CkptbenchError, never another exception or a hang.

Inputs are drawn from A1111's own syntax (brackets, weights, editing, alternation, extra-network tags,
BREAK, AND, escapes, numbers of every shape) mixed with arbitrary text, so that most examples reach deep
into the parsers instead of being plain words. A per-example deadline turns a pathological slowdown
(catastrophic regex backtracking, a runaway schedule) into a failure.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ckptbench.errors import CkptbenchError
from ckptbench.infotext import (
    Infotext,
    format_infotext,
    parameter_pairs,
    parse_hashes,
    parse_infotext,
    sampler_name,
)
from ckptbench.prompt import (
    Break,
    WeightedText,
    extract_lora_tags,
    parse_prompt,
    scheduled_prompts,
    strip_prompt_syntax,
)
from ckptbench.prompt_schedule import MAX_NESTING, final_text, prompt_schedule, text_at_call, uses_schedule

EXAMPLES = 600
FUZZ = settings(max_examples=EXAMPLES, deadline=timedelta(seconds=2),
                suppress_health_check=[HealthCheck.too_slow])

PROMPT_PIECES = [
    "(", ")", "[", "]", ":", "|", "\\", "<", ">", ",", " ", "\n", "a", "cat", "BREAK", "AND", "and", ":1.2", ":0",
    ":-1", ":1e309", ":" + "9" * 400, ":.", ":1.5.5", "[a:b:3]", "[a:b:0.5]", "[:b:2]", "[a::2]", "[a|b|]", "[a|b]",
    "[a:b:1e400]", "[a:b:" + "9" * 40 + "]", "[a:b:-3]", "[a:b:nan]", "<lora:x>", "<lora:x:0.5>", "<lora:x:abc>",
    "<lora: >", "<lyco:y:1:2>", "<hypernet:z:1>", "<lora:", "\\(", "\\)", "\\[", "\\]", "\\\\", "1", "0.5", ".",
    "é", "🙂", "\x00",
]
numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers(-10**6, 10**6).map(str),
                    st.text("0123456789.-+e", min_size=1, max_size=12), st.just("9" * 400))
words = st.sampled_from(PROMPT_PIECES) | st.text(max_size=8)


def _structured(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A1111 constructs around smaller prompts: emphasis with and without weights, editing, alternation."""
    return st.one_of(
        st.tuples(inner, numbers).map(lambda p: f"({p[0]}:{p[1]})"),
        inner.map(lambda p: f"({p})"), inner.map(lambda p: f"[{p}]"),
        st.tuples(inner, inner, numbers).map(lambda p: f"[{p[0]}:{p[1]}:{p[2]}]"),
        st.tuples(inner, numbers).map(lambda p: f"[{p[0]}:{p[1]}]"),
        st.lists(inner, min_size=1, max_size=4).map(lambda p: "[" + "|".join(p) + "]"),
        st.lists(inner, min_size=1, max_size=4).map(" ".join),
        st.tuples(words, numbers).map(lambda p: f"<lora:{p[0]}:{p[1]}>"),
    )


structured = st.recursive(words, _structured, max_leaves=12)
prompts = st.one_of(st.lists(st.sampled_from(PROMPT_PIECES), max_size=60).map("".join), st.text(max_size=300),
                    structured)

INFOTEXT_PIECES = [
    "\n", "Negative prompt:", "Negative prompt: ", "Steps: 20", "Sampler: Euler a", "Sampler: DPM++ 2M",
    "Schedule type: Automatic", "Schedule type: Karras", "CFG scale: 7", "Seed: 1", "Size: 512x768", "Size: x",
    "Size: 99999999999999999999x1", "Clip skip: 2", "Clip skip: two", "Clip skip: ", "Model hash: abc",
    'Lora hashes: "a: 1234, b: 5678"', 'Lora hashes: "', 'TI hashes: "x: 1"', "Hires upscale: 2", ", ", ": ",
    '"', '\\"', "a prompt", "(cat:1.2)", "Steps: ", "Version: v1.6.0", "\r\n", " ",
]
infotexts = st.one_of(st.lists(st.sampled_from(INFOTEXT_PIECES), max_size=40).map("".join), st.text(max_size=400))
steps = st.integers(min_value=1, max_value=150)

# Inputs that once took seconds to minutes or overflowed the stack: cubic backtracking on an unclosed
# <lora: tag, quadratic searches for a trailing weight, recursion on deep brackets, an infinite [a:b:when].
LONG_PROMPTS = ["<lora:" + " " * 5000, "<lora:a:" + " " * 5000, " " * 20000 + ":", ":" + " " * 20000 + "x",
                "(" * 5000, "[" * 5000, "[a:" * 2000 + "b", "[a|" * 2000, "(cat:" + "9" * 400 + ")", "[a:b:1e400]"]


def long_examples(test):
    for prompt in LONG_PROMPTS:
        test = example(prompt=prompt)(test)
    return test


def _check_segments(segments: tuple) -> None:
    for segment in segments:
        assert isinstance(segment, WeightedText | Break)
        if isinstance(segment, WeightedText):
            assert math.isfinite(segment.weight), segment  # an infinite weight would make NaN images silently


@FUZZ
@given(prompt=prompts, negative=st.booleans())
@example(prompt=LONG_PROMPTS[0], negative=False)
@example(prompt=LONG_PROMPTS[2], negative=False)
@example(prompt=LONG_PROMPTS[4], negative=False)
@example(prompt=LONG_PROMPTS[8], negative=False)
def test_parse_prompt_gives_segments_or_a_clean_error(prompt: str, negative: bool) -> None:
    try:
        parsed = parse_prompt(prompt, negative=negative)
    except CkptbenchError:
        return
    _check_segments(parsed.segments)


@FUZZ
@given(prompt=prompts, steps=steps, hires=st.none() | steps, negative=st.booleans())
@example(prompt=LONG_PROMPTS[6], steps=20, hires=None, negative=False)
@example(prompt=LONG_PROMPTS[9], steps=1, hires=None, negative=False)
@example(prompt=LONG_PROMPTS[3], steps=20, hires=30, negative=False)
def test_scheduled_prompts_cover_every_step_or_give_a_clean_error(prompt: str, steps: int, hires: int | None,
                                                                  negative: bool) -> None:
    try:
        schedule = scheduled_prompts(prompt, steps, negative=negative, hires_steps=hires)
    except CkptbenchError:
        return
    lasts = [last for last, _ in schedule]
    assert lasts == sorted(set(lasts)) and lasts[-1] == (hires or steps) and lasts[0] >= 1
    for _, parsed in schedule:
        _check_segments(parsed.segments)


@FUZZ
@given(prompt=prompts, steps=steps, hires=st.none() | steps, call=st.integers(0, 400))
@example(prompt=LONG_PROMPTS[5], steps=20, hires=None, call=3)
@example(prompt=LONG_PROMPTS[7], steps=150, hires=None, call=3)
@example(prompt="[" * MAX_NESTING + "a:b:5" + "]" * MAX_NESTING, steps=20, hires=None, call=3)
def test_prompt_schedule_reads_everything_but_absurd_nesting(prompt: str, steps: int, hires: int | None,
                                                             call: int) -> None:
    """prompt_schedule reads what it can and uses the rest as written; its only error is nesting deeper than
    MAX_NESTING (which would overflow the stack)."""
    try:
        schedule = prompt_schedule(prompt, steps, hires_steps=hires)
    except CkptbenchError as error:
        assert f"more than {MAX_NESTING} deep" in str(error)
        return
    assert schedule[-1][0] == (hires or steps)
    assert isinstance(text_at_call(schedule, call), str)
    assert isinstance(final_text(prompt), str) and isinstance(uses_schedule(prompt), bool)


@FUZZ
@given(prompt=prompts)
@long_examples
def test_strip_prompt_syntax_never_raises(prompt: str) -> None:
    text = strip_prompt_syntax(prompt)
    assert isinstance(text, str) and text == text.strip(" ,")


@FUZZ
@given(prompt=prompts)
@long_examples
def test_lora_tags_are_extracted_or_refused_cleanly(prompt: str) -> None:
    try:
        text, tags = extract_lora_tags(prompt)
    except CkptbenchError:
        return
    assert all(tag.name.strip() and (tag.weight is None or isinstance(tag.weight, float)) for tag in tags)
    assert extract_lora_tags(text)[1] == ()  # every tag was taken out


@FUZZ
@given(text=infotexts)
@example(text="a" * 200_000)
@example(text="ab " * 70_000)
@example(text='Steps: "' + 'x, y: "' * 30_000)
def test_parse_infotext_and_its_fields_never_fail_uncleanly(text: str) -> None:
    try:
        info = parse_infotext(text)
        _ = (info.sampler, info.size, info.clip_skip, info.lora_hashes, info.ti_hashes)
    except CkptbenchError:
        return
    assert isinstance(info, Infotext)
    assert all(isinstance(key, str) and isinstance(value, str) for key, value in info.parameters.items())
    if info.size is not None:
        assert all(side >= 0 for side in info.size)


@FUZZ
@given(prompt=st.text(max_size=200), negative=st.text(max_size=100),
       parameters=st.dictionaries(st.sampled_from(["Steps", "Sampler", "Seed", "Size", "Clip skip", "Model"]),
                                  st.text(max_size=40), max_size=6))
def test_formatted_infotext_parses_back_without_error(prompt: str, negative: str, parameters: dict[str, str]) -> None:
    try:
        info = parse_infotext(format_infotext(prompt, negative, parameters))
        _ = (info.sampler, info.size, info.clip_skip)
    except CkptbenchError:
        return


@FUZZ
@given(value=st.text(max_size=200), sampler=st.text(max_size=30), schedule=st.none() | st.text(max_size=20))
def test_hashes_never_raise_and_sampler_names_fail_cleanly(value: str, sampler: str, schedule: str | None) -> None:
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in parse_hashes(value).items())
    try:
        assert isinstance(sampler_name(sampler, schedule), str)
    except CkptbenchError:
        pass


# A1111's own pattern for a parameters line (modules/infotext_utils.py): ckptbench's reader must agree with it.
A1111_PAIR = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
LINE_PIECES = ["Steps", "Sampler", "a", "b", "_", "é", "1", " ", "  ", "\t", ":", ": ", ",", ", ", '"', "\\", '\\"',
               "-", "/", ".", "(", "x y", "\r", "\n", "\x1c", "\u00a0", "٣"]


@FUZZ
@given(line=st.one_of(st.lists(st.sampled_from(LINE_PIECES), max_size=30).map("".join), st.text(max_size=80)))
def test_parameter_pairs_find_what_a1111s_pattern_finds(line: str) -> None:
    assert parameter_pairs(line) == A1111_PAIR.findall(line)
