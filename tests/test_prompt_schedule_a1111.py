"""Prompt editing and alternation against A1111 v1.10's own grammar, run with lark (A1111 pins lark 1.1.2).

``a1111_schedules`` restates ``modules/prompt_parser.py``'s ``schedule_parser`` grammar and
``get_learned_conditioning_prompt_schedules`` (new scheduling, hires offsets); ckptbench's recursive-descent
parser must give the same schedule for every prompt, including those A1111's grammar cannot read (which it
uses as written: a ``|`` outside brackets, a backslash at the end or before a line break).
"""

from __future__ import annotations

import functools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ckptbench.prompt_schedule import prompt_schedule

lark = pytest.importorskip("lark")

GRAMMAR = r"""
!start: (prompt | /[][():]/+)*
prompt: (emphasized | scheduled | alternate | plain | WHITESPACE)*
!emphasized: "(" prompt ")"
        | "(" prompt ":" prompt ")"
        | "[" prompt "]"
scheduled: "[" [prompt ":"] prompt ":" [WHITESPACE] NUMBER [WHITESPACE] "]"
alternate: "[" prompt ("|" [prompt])+ "]"
WHITESPACE: /\s+/
plain: /([^\\\[\]():|]|\\.)+/
%import common.SIGNED_NUMBER -> NUMBER
"""


@functools.cache
def _parser():
    return lark.Lark(GRAMMAR)


def a1111_schedules(prompt: str, base_steps: int, hires_steps: int | None = None) -> list[tuple[int, str]]:
    if hires_steps is None:
        int_offset, flt_offset, steps = 0, 0.0, base_steps
    else:
        int_offset, flt_offset, steps = base_steps, 1.0, hires_steps

    def collect_steps(tree) -> list[int]:
        found = [steps]

        class CollectSteps(lark.Visitor):
            def scheduled(self, tree):
                text = tree.children[-2]
                value = float(text)
                value = (value - flt_offset) * steps if "." in text else value - int_offset
                tree.children[-2] = min(steps, int(value))
                if tree.children[-2] >= 1:
                    found.append(tree.children[-2])

            def alternate(self, tree):
                found.extend(range(1, steps + 1))

        CollectSteps().visit(tree)
        return sorted(set(found))

    def at_step(step: int, tree) -> str:
        class AtStep(lark.Transformer):
            def scheduled(self, args):
                before, after, _, when, _ = args
                yield before or () if step <= when else after

            def alternate(self, args):
                args = [arg or "" for arg in args]
                yield args[(step - 1) % len(args)]

            def start(self, args):
                def flatten(x):
                    if isinstance(x, str):
                        yield x
                    else:
                        for gen in x:
                            yield from flatten(gen)

                return "".join(flatten(args))

            def plain(self, args):
                yield args[0].value

            def __default__(self, data, children, meta):
                yield from children

        return AtStep().transform(tree)

    try:
        tree = _parser().parse(prompt)
    except lark.exceptions.LarkError:
        return [(steps, prompt)]
    return [(t, at_step(t, tree)) for t in collect_steps(tree)]


BACKSLASHES = [
    "a [red:blue:3] cube\\", "a [red:blue:3] cube \\\n second line", "[a|b]\\", "\\", "a \\\\", "a [b:c:3] \\\\\\",
    "(a:1.2) \\\nb [c|d]", "a [b\\\n:c:3]", "a \\[b:c:3\\] [d:e:2]", "\\\\\n[a:b:2]", "x\\\r[a:b:2]",
]
CASES = [
    "test", "a [b:3]", "a [b: 3]", "a [[[b]]:2]", "[(a:2):3]", "a [b : c : 1] d", "a[b:[c:d:2]:1]e", "a [unbalanced",
    "a [b:.5] c", "((a][:b:c [d:3]", "[a|(b:1.1)]", "[fe|]male", "[fe|||]male", "a [b:1.0] c", "a [b:c:0.01]",
    "a | b [c:d:5]", "[(white background:1.5),::5] (isometric:1.0), double exposure",
    "a kitten, ([tail | detailed wire]:1.3)", "[a:b:-3]", "[a:b:25]", "[a:b:1.5]", "[a:[b|c]:4]", *BACKSLASHES,
]


@pytest.mark.parametrize("prompt", CASES)
@pytest.mark.parametrize(("steps", "hires"), [(10, None), (20, 10), (7, None)])
def test_schedules_are_a1111s(prompt: str, steps: int, hires: int | None) -> None:
    assert prompt_schedule(prompt, steps, hires_steps=hires) == a1111_schedules(prompt, steps, hires)


@pytest.mark.parametrize("prompt", BACKSLASHES[:3])
def test_a_dangling_backslash_makes_the_whole_prompt_literal(prompt: str) -> None:
    assert prompt_schedule(prompt, 10) == [(10, prompt)]


PIECES = ["[", "]", "(", ")", ":", "|", "\\", "\n", " ", "a", "b", "2", ".5", "1.5", "-1", "3", ",", "\\\\", "\\[",
          "[a:b:2]", "[x|y]", "(c:1.2)"]


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(PIECES), max_size=12).map("".join), st.sampled_from([(6, None), (8, 4)]))
def test_arbitrary_prompts_schedule_as_a1111(prompt: str, steps: tuple[int, int | None]) -> None:
    assert prompt_schedule(prompt, steps[0], hires_steps=steps[1]) == a1111_schedules(prompt, *steps)
