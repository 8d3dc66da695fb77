"""A1111 prompt syntax: emphasis weights, escapes, BREAK, tags, refused constructs, plain text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ckptbench.errors import CkptbenchError
from ckptbench.prompt import (
    BREAK,
    LoraTag,
    PromptSyntaxError,
    WeightedText,
    extract_lora_tags,
    parse_prompt,
    scheduled_prompts,
    strip_prompt_syntax,
)


def pairs(prompt: str, **kwargs: bool) -> list[tuple[str, float] | str]:
    return [(s.text, s.weight) if isinstance(s, WeightedText) else "BREAK"
            for s in parse_prompt(prompt, **kwargs).segments]


# The examples A1111 documents for its own parser, with the weights it documents.
@pytest.mark.parametrize(("prompt", "expected"), [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    (r"\(literal\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).", [
        ("a ", 1.0), ("house", 1.3 * 1.1 * 1.1), (" ", 1.1), ("on", 1.0), (" a ", 1.1), ("hill", 0.55),
        (", sun, ", 1.1), ("sky", 1.1 ** 4), (".", 1.1)]),
])
def test_a1111_documented_examples(prompt: str, expected: list[tuple[str, float]]) -> None:
    got = pairs(prompt)
    assert [text for text, _ in got] == [text for text, _ in expected]
    assert [weight for _, weight in got] == pytest.approx([weight for _, weight in expected], rel=1e-12)


@pytest.mark.parametrize(("prompt", "expected"), [
    ("((a))", [("a", 1.21)]),
    ("[[a]]", [("a", 1 / 1.21)]),
    ("((a:1.5))", [("a", 1.65)]),
    ("[(a:1.5)]", [("a", 1.5 / 1.1)]),
    ("(a:0)", [("a", 0.0)]),
    ("(a (b:2) c:0.5)", [("a ", 0.5), ("b", 1.0), (" c", 0.5)]),
    ("(a:-1.5)", [("a", -1.5)]),
    ("x (a : 1.3 ) y", [("x ", 1.0), ("a ", 1.3), (" y", 1.0)]),
    ("a:b", [("a:b", 1.0)]),  # a colon outside brackets is text
    ("a) b] c", [("a) b] c", 1.0)]),  # stray closing brackets are text
    ("word:1.2)", [("word:1.2)", 1.0)]),  # a weight with no open bracket is text
    ("(a:b:1.2)", [("a:b", 1.2)]),
    (r"a \\ b", [("a \\ b", 1.0)]),
    (r"\(a:1.2\)", [("(a:1.2)", 1.0)]),
    (r"(\(a\):1.2)", [("(a)", 1.2)]),
    ("", []),
])
def test_nesting_escapes_and_edge_cases(prompt: str, expected: list[tuple[str, float]]) -> None:
    got = pairs(prompt)
    assert [text for text, _ in got] == [text for text, _ in expected]
    assert [weight for _, weight in got] == pytest.approx([weight for _, weight in expected], rel=1e-12)


def test_break_splits_into_chunks_and_only_as_a_word() -> None:
    assert pairs("a cat BREAK a dog") == [("a cat", 1.0), "BREAK", ("a dog", 1.0)]
    assert pairs("(red) BREAK blue") == [("red", 1.1), "BREAK", ("blue", 1.0)]
    assert pairs("BREAKFAST, break") == [("BREAKFAST, break", 1.0)]
    assert parse_prompt("a BREAK BREAK b").segments == (WeightedText("a", 1.0), BREAK, BREAK, WeightedText("b", 1.0))


def test_break_inside_brackets_is_refused() -> None:
    with pytest.raises(PromptSyntaxError, match="BREAK inside brackets"):
        parse_prompt("(a BREAK b:1.2)")


def test_extra_network_tags_are_cut_out_like_a1111() -> None:
    parsed = parse_prompt("a cat, <lora:film_grain:0.6>, (sharp:1.2) <lora:detail>")
    # A1111 removes the tag and nothing else: the comma and spaces around it stay in the encoded text.
    assert [(s.text, s.weight) for s in parsed.segments if isinstance(s, WeightedText)] == [
        ("a cat, , ", 1.0), ("sharp", 1.2), (" ", 1.0)]
    assert parsed.loras == (LoraTag("film_grain", 0.6), LoraTag("detail", None))


def test_unsupported_extra_network_is_refused() -> None:
    with pytest.raises(PromptSyntaxError, match="hypernet"):
        parse_prompt("a cat <hypernet:anime:1>")


@pytest.mark.parametrize(("prompt", "construct"), [
    ("a cat AND a dog", "AND"),
    ("a cat:1.4", "composable-diffusion weight"),
])
def test_composable_diffusion_is_refused_by_name(prompt: str, construct: str) -> None:
    with pytest.raises(PromptSyntaxError, match=construct) as raised:
        scheduled_prompts(prompt, 20)
    assert isinstance(raised.value, CkptbenchError)


@pytest.mark.parametrize("prompt", [
    "a [cat:dog:0.5] on a mat", "a [cat:10] on a mat", "a [cat::0.25]", "a [(cat:1.2):dog:5]",
    "a ([cat:dog:0.5]:1.2)", "a [cat|dog] on a mat", "a [cat|dog|] on a mat",
])
def test_editing_and_alternation_need_the_steps(prompt: str) -> None:
    with pytest.raises(PromptSyntaxError, match="scheduled_prompts"):
        parse_prompt(prompt)
    assert len(scheduled_prompts(prompt, 20)) > 1


def test_scheduled_prompts_parse_each_steps_text() -> None:
    schedule = scheduled_prompts("a ([red:blue:0.5] cube:1.2) <lora:shiny:0.5>", 10)
    assert [last for last, _ in schedule] == [5, 10]
    assert [[(s.text, s.weight) for s in parsed.segments] for _, parsed in schedule] == [
        [("a ", 1.0), ("red cube", 1.2), (" ", 1.0)], [("a ", 1.0), ("blue cube", 1.2), (" ", 1.0)]]
    assert all(parsed.loras == (LoraTag("shiny", 0.5),) for _, parsed in schedule)
    assert scheduled_prompts("a cat", 10) == [(10, parse_prompt("a cat"))]


@pytest.mark.parametrize("prompt", [
    "a [cat] on a mat", "a [(cat:1.2)]", r"a \[cat:dog:0.5\]", "a [cat:dog]", "a cat and a dog", "a (cat:1.4)",
    "a | b [c:d:5]",  # a '|' outside brackets: A1111 cannot parse the schedule and uses the text as written
])
def test_look_alikes_are_plain_prompts(prompt: str) -> None:
    parse_prompt(prompt)
    assert len(scheduled_prompts(prompt, 20)) == 1


def test_negative_prompt_reads_and_and_trailing_weight_as_text() -> None:
    assert pairs("blurry AND ugly:1.5", negative=True) == [("blurry AND ugly:1.5", 1.0)]
    assert [last for last, _ in scheduled_prompts("[blurry:ugly:3]", 10, negative=True)] == [3, 10]


def test_a_whole_prompt_weight_of_one_is_dropped_like_a1111() -> None:
    assert pairs("a cat:1") == [("a cat", 1.0)]


def test_bad_weights_are_clear_errors() -> None:
    with pytest.raises(PromptSyntaxError, match="not a valid emphasis weight"):
        parse_prompt("(a:1.2.3)")
    with pytest.raises(PromptSyntaxError, match="not a number"):
        parse_prompt("a <lora:x:strong>")


# A1111 v1.10's LoRA tag rules, restated from modules/extra_networks.py (the pattern <(\w+):([^>]+)>, arguments
# split at ':', an argument with one '=' is named) and extensions-builtin/Lora/extra_networks_lora.py (positional
# name, te, unet (default: te after te=), dyn; te=/unet=/dyn= override; float()/int() parse them). None means
# "not given": ckptbench's default weight where A1111 has 1.0.
@pytest.mark.parametrize(("prompt", "tag"), [
    ("<lora:a>", LoraTag("a")),
    ("<lora:a:0.6>", LoraTag("a", 0.6)),
    ("<lora:a:0.6:0.3>", LoraTag("a", 0.6, 0.3)),  # first multiplier: text encoder, second: UNet
    ("<lora:a:1:unet=0.2>", LoraTag("a", 1.0, 0.2)),
    ("<lora:a:unet=0.2:te=0.7>", LoraTag("a", 0.7, 0.2)),  # named arguments in any order
    ("<lora:a:unet=0.5>", LoraTag("a", None, 0.5)),
    ("<lora:a:0.6:te=0.3>", LoraTag("a", 0.3)),  # te= overrides, and the UNet follows the final te
    ("<lora:a:0.6:0.3:te=1>", LoraTag("a", 1.0, 0.3)),
    ("<lora:a:0.6:unet=0.1:0.3>", LoraTag("a", 0.6, 0.1)),  # unet= overrides the positional UNet weight
    ("<lora:a:1:1:8>", LoraTag("a", 1.0, 1.0, 8)),
    ("<lora:a:1:dyn=4>", LoraTag("a", 1.0, None, 4)),
    ("<lyco:a:0.5>", LoraTag("a", 0.5)),  # 'lyco' is A1111's alias of 'lora'
    ("<lora: a :1>", LoraTag(" a ", 1.0)),  # the name exactly as written: A1111 looks up ' a '
    ("<lora:a: 0.5 >", LoraTag("a", 0.5)),  # float() accepts surrounding spaces
    ("<lora:a:1e-1:-2>", LoraTag("a", 0.1, -2.0)),
    ("<lora:my:lora:1>", None),  # 'lora' is a value, not a number: refused below
])
def test_lora_tag_arguments_follow_a1111(prompt: str, tag: LoraTag | None) -> None:
    if tag is None:
        with pytest.raises(PromptSyntaxError, match="not a number"):
            parse_prompt(prompt)
        return
    assert parse_prompt(f"x {prompt} y").loras == (tag,)
    assert [s.text for s in parse_prompt(f"x {prompt} y").segments] == ["x  y"]  # the tag is cut out, nothing else


@pytest.mark.parametrize(("prompt", "message"), [
    ("<LORA:a:1>", "case-sensitively"),  # A1111 skips an unknown extra-network type: no LoRA applied
    ("<Lora:a>", "case-sensitively"),
    ("<LYCO:a>", "case-sensitively"),
    ("<lora::1>", "names no LoRA"),
    ("<lora:te=1>", "names no LoRA"),  # no positional name: A1111 fails on positional[0]
    ("<lora:a:>", "not a number"),  # float('') fails in A1111 too
    ("<lora:a:te=1=2>", "not a number"),  # two '=': positional for A1111, then float() fails
    ("<lora:a:nan>", "not a finite number"),
    ("<lora:a:lbw=ALL>", "'lbw='"),  # A1111 ignores unknown names; extensions read them: refused, named
    ("<lora:a:te = 0.5>", "'te ='"),  # the key 'te ' is not 'te' for A1111 (it would ignore it)
    ("<lora:a:1:1:4:5>", "at most three"),
    ("<lora:a:1:dyn=0>", "dyn 0"),
    ("<lora:a:1:dyn=1.5>", "not a whole number"),
])
def test_lora_tags_a1111_would_misread_are_refused_with_the_reason(prompt: str, message: str) -> None:
    with pytest.raises(PromptSyntaxError, match=message):
        parse_prompt(prompt)


def test_text_that_only_looks_like_a_tag_is_text() -> None:
    """A1111's pattern needs a word right after '<' and a colon right after it: anything else is prompt text."""
    for prompt in ("a < lora:x:1> b", "a <lora :x> b", "a <lora> b"):
        parsed = parse_prompt(prompt)
        assert parsed.loras == () and "".join(s.text for s in parsed.segments) == prompt


def test_extract_lora_tags_tidies_the_text_left_behind() -> None:
    text, tags = extract_lora_tags("<lora:a:1>, a cat,  <lora:b:0.5> , on a mat, <lyco:c>")
    assert text == "a cat, on a mat"
    assert tags == (LoraTag("a", 1.0), LoraTag("b", 0.5), LoraTag("c", None))


@pytest.mark.parametrize(("prompt", "plain"), [
    ("masterpiece, (best quality:1.2), [blurry], a ((cat))", "masterpiece, best quality, blurry, a cat"),
    ("a cat <lora:x:0.5>, BREAK on a mat", "a cat, on a mat"),
    (r"a \(literal\) bracket", "a (literal) bracket"),
    ("a [cat:dog:0.5] on a [red|blue] mat", "a dog on a red blue mat"),
    ("a [cat:0.5] and a [mouse::3]", "a cat and a"),
    ("a cat AND a dog:1.2", "a cat, a dog"),
    ("(a:1.2.3) b", "a b"),
    ("(a BREAK b)", "a, b"),
    ("", ""),
])
def test_strip_prompt_syntax(prompt: str, plain: str) -> None:
    assert strip_prompt_syntax(prompt) == plain


# Property: render a random tree of emphasis groups and compare every character's weight with the
# product of its enclosing groups' multipliers.

_WORDS = st.text(alphabet="abcxyz ,.", min_size=1, max_size=6)
_KINDS = st.sampled_from(["round", "square", "weighted"])
_WEIGHTS = st.sampled_from([0.5, 0.8, 1.25, 1.5, 2.0])


def _tree(depth: int = 0) -> st.SearchStrategy:
    leaf = _WORDS.map(lambda w: ("text", w))
    if depth >= 3:
        return leaf
    group = st.tuples(_KINDS, _WEIGHTS, st.lists(_tree(depth + 1), min_size=1, max_size=3))
    return st.one_of(leaf, group)


def _render(nodes: list, weight: float = 1.0) -> tuple[str, list[tuple[str, float]]]:
    text, expected = "", []
    for node in nodes:
        if node[0] == "text":
            text += node[1]
            expected += [(char, weight) for char in node[1]]
            continue
        kind, factor, children = node
        multiplier = {"round": 1.1, "square": 1 / 1.1, "weighted": factor}[kind]
        inner_text, inner = _render(children, weight * multiplier)
        text += {"round": f"({inner_text})", "square": f"[{inner_text}]",
                 "weighted": f"({inner_text}:{factor})"}[kind]
        expected += inner
    return text, expected


@settings(max_examples=200, deadline=None)
@given(st.lists(_tree(), min_size=1, max_size=4))
def test_weights_multiply_through_nesting(nodes: list) -> None:
    prompt, expected = _render(nodes)
    got = [(char, s.weight) for s in parse_prompt(prompt).segments if isinstance(s, WeightedText)
           for char in s.text]
    assert "".join(c for c, _ in got) == "".join(c for c, _ in expected)
    assert [w for _, w in got] == pytest.approx([w for _, w in expected], rel=1e-9)
