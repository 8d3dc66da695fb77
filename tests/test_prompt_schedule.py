"""A1111 prompt editing and alternation: the text at each step, against A1111's documented schedules."""

from __future__ import annotations

import pytest

from ckptbench.prompt_schedule import final_text, prompt_schedule, text_at_call, uses_schedule


# A1111's own examples (10 steps), with the schedules it documents for them.
@pytest.mark.parametrize(("prompt", "schedule"), [
    ("test", [(10, "test")]),
    ("a [b:3]", [(3, "a "), (10, "a b")]),
    ("a [b: 3]", [(3, "a "), (10, "a b")]),
    ("a [[[b]]:2]", [(2, "a "), (10, "a [[b]]")]),
    ("[(a:2):3]", [(3, ""), (10, "(a:2)")]),
    ("a [b : c : 1] d", [(1, "a b  d"), (10, "a  c  d")]),
    ("a[b:[c:d:2]:1]e", [(1, "abe"), (2, "ace"), (10, "ade")]),
    ("a [unbalanced", [(10, "a [unbalanced")]),
    ("a [b:.5] c", [(5, "a  c"), (10, "a b c")]),
    ("((a][:b:c [d:3]", [(3, "((a][:b:c "), (10, "((a][:b:c d")]),
    ("[a|(b:1.1)]", [(step, "a" if step % 2 else "(b:1.1)") for step in range(1, 11)]),
    ("[fe|]male", [(step, "female" if step % 2 else "male") for step in range(1, 11)]),
    ("[fe|||]male", [(step, "female" if step % 4 == 1 else "male") for step in range(1, 11)]),
    ("a [b:1.0] c", [(10, "a  c")]),  # "1.0" is the whole run: b is never added
    ("a [b:c:0.01]", [(10, "a c")]),  # switches before the first step
    (r"a \[b:c:5\]", [(10, r"a \[b:c:5\]")]),  # escaped brackets are text
    ("a | b [c:d:5]", [(10, "a | b [c:d:5]")]),  # unreadable for A1111's grammar: used as written
])
def test_a1111_documented_schedules(prompt: str, schedule: list[tuple[int, str]]) -> None:
    assert prompt_schedule(prompt, 10) == schedule


def test_hires_pass_counts_on_from_the_base_steps() -> None:
    assert prompt_schedule("a [b:.5] c", 10, hires_steps=10) == [(10, "a b c")]
    assert prompt_schedule("a [b:1.5] c", 10, hires_steps=10) == [(5, "a  c"), (10, "a b c")]
    assert prompt_schedule("a [b:15] c", 10, hires_steps=10) == [(5, "a  c"), (10, "a b c")]


def test_a_sampler_uses_the_first_entry_that_ends_at_or_after_its_call() -> None:
    schedule = prompt_schedule("a [red:blue:2] cube", 4)
    assert schedule == [(2, "a red cube"), (4, "a blue cube")]
    # A1111 counts model calls from 0, so "red" is used for calls 0, 1 and 2.
    assert [text_at_call(schedule, call) for call in range(5)] == ["a red cube"] * 3 + ["a blue cube"] * 2


def test_the_ghostreview_prompts_that_use_it() -> None:
    removed = "[(white background:1.5),::5] (isometric:1.0), double exposure"
    assert prompt_schedule(removed, 20) == [(5, "(white background:1.5), (isometric:1.0), double exposure"),
                                            (20, " (isometric:1.0), double exposure")]
    alternating = "a kitten, ([tail | detailed wire]:1.3)"
    assert prompt_schedule(alternating, 3) == [(1, "a kitten, (tail :1.3)"), (2, "a kitten, ( detailed wire:1.3)"),
                                               (3, "a kitten, (tail :1.3)")]
    assert uses_schedule(removed) and uses_schedule(alternating) and not uses_schedule("a (b:1.2) [c]")
    assert final_text(alternating) == "a kitten, (tail   detailed wire:1.3)"
    assert final_text(removed) == " (isometric:1.0), double exposure"
