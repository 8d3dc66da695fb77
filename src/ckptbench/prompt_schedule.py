"""A1111 prompt editing ``[from:to:when]`` and alternation ``[a|b]``: the prompt text at each step.

A1111 reads these with a small grammar before it reads emphasis; this module implements the same
language with a recursive-descent parser:

* ``[from:to:when]`` uses ``from`` up to step ``when`` and ``to`` after it; ``[to:when]`` adds ``to``
  after ``when``; ``[from::when]`` removes ``from`` after it. ``when`` with a decimal point is a fraction
  of the steps (``0.5``), without one a step number (``10``).
* ``[a|b|c]`` switches option every step (``[a|]`` alternates with nothing).
* ``(…)``, ``(…:w)`` and ``[…]`` are kept as written (emphasis is read later), with any editing or
  alternation inside them resolved.
* Outside brackets, unmatched ``( ) [ ] :`` are plain text. A prompt the grammar cannot read at all
  (e.g. a ``|`` outside brackets) is used as written for every step, as A1111 does.
* A backslash takes the next character with it as plain text; A1111's grammar has no reading for a
  backslash at the end of the prompt or before a line break (its ``\\.`` does not match a newline), so
  such a prompt is used as written too.

The result is A1111's schedule: ``[(last step, text), …]`` with steps counted from 1; a sampler at model
call ``i`` (from 0) uses the first entry whose last step is ``≥ i``. For the hires-fix pass A1111 counts
``when`` past the base steps (``[a:b:25]`` with 20 base steps switches at hires step 5; ``1.5`` is half
way through the hires steps).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from ckptbench.errors import CkptbenchError

_Entry = TypeVar("_Entry")  # what a schedule lists per step range: a text, or the index of an encoded text
MAX_NESTING = 100  # brackets inside brackets; the parser recurses once per level

_NUMBER = re.compile(r"\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*")
_STRUCTURE = set("[]():|")

@dataclass(frozen=True)
class _Group:
    """Emphasis brackets, kept as written: literal pieces and nested sequences in order."""

    parts: tuple[str | tuple, ...]


@dataclass(frozen=True)
class _Scheduled:
    before: tuple | None
    after: tuple
    when: str


@dataclass(frozen=True)
class _Alternate:
    options: tuple[tuple, ...]


class PromptSyntaxError(CkptbenchError, ValueError):
    """A prompt uses A1111 syntax that ckptbench cannot reproduce faithfully, or malformed syntax."""


class _Unreadable(Exception):
    pass


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.depth = 0

    def start(self) -> tuple:
        """The whole prompt: groups where they parse, other brackets and colons as plain text."""
        nodes: list = []
        index = 0
        while index < len(self.text):
            char = self.text[index]
            if char in "([":
                try:
                    node, index = self.bracket(index)
                    nodes.append(node)
                    continue
                except _Unreadable:
                    pass
            if char == "|":
                raise _Unreadable
            step = self.plain_length(index)
            nodes.append(self.text[index : index + step])
            index += step
        return tuple(nodes)

    def plain_length(self, index: int) -> int:
        """Characters of plain text at ``index``: an escape is two, and must escape something on its line."""
        if self.text[index] != "\\":
            return 1
        if index + 1 >= len(self.text) or self.text[index + 1] == "\n":
            raise _Unreadable
        return 2

    def sequence(self, index: int) -> tuple[tuple, int]:
        """Plain text and groups, up to the next structural character that is not an opening bracket."""
        nodes: list = []
        while index < len(self.text):
            char = self.text[index]
            if char in "([":
                node, index = self.bracket(index)
                nodes.append(node)
            elif char in _STRUCTURE:
                break
            else:
                step = self.plain_length(index)
                nodes.append(self.text[index : index + step])
                index += step
        return tuple(nodes), index

    def expect(self, index: int) -> str:
        if index >= len(self.text):
            raise _Unreadable
        return self.text[index]

    def bracket(self, index: int) -> tuple[object, int]:
        self.depth += 1
        try:
            if self.depth > MAX_NESTING:
                raise PromptSyntaxError(f"the prompt nests brackets more than {MAX_NESTING} deep; ckptbench reads at "
                                        f"most {MAX_NESTING} levels (A1111 itself fails on such prompts).")
            return self._bracket(index)
        finally:
            self.depth -= 1

    def _bracket(self, index: int) -> tuple[object, int]:
        if self.text[index] == "(":
            first, end = self.sequence(index + 1)
            if self.expect(end) == ")":
                return _Group(("(", first, ")")), end + 1
            if self.expect(end) != ":":
                raise _Unreadable
            second, close = self.sequence(end + 1)
            if self.expect(close) != ")":
                raise _Unreadable
            return _Group(("(", first, ":", second, ")")), close + 1
        first, end = self.sequence(index + 1)
        mark = self.expect(end)
        if mark == "]":
            return _Group(("[", first, "]")), end + 1
        if mark == "|":
            options = [first]
            while mark == "|":
                option, end = self.sequence(end + 1)
                options.append(option)
                mark = self.expect(end)
            if mark != "]":
                raise _Unreadable
            return _Alternate(tuple(options)), end + 1
        if mark != ":":
            raise _Unreadable
        # "[to:when]" or "[from:to:when]"
        number = self.number_then_close(end + 1)
        if number is not None:
            return _Scheduled(None, first, number[0]), number[1]
        second, end = self.sequence(end + 1)
        if self.expect(end) != ":":
            raise _Unreadable
        number = self.number_then_close(end + 1)
        if number is None:
            raise _Unreadable
        return _Scheduled(first, second, number[0]), number[1]

    def number_then_close(self, index: int) -> tuple[str, int] | None:
        match = _NUMBER.match(self.text, index)
        if match and match.end() < len(self.text) and self.text[match.end()] == "]":
            return match.group(1), match.end() + 1
        return None


def _when(number: str, steps: int, base_steps: int | None) -> int:
    """A1111's step for ``when``: a fraction of the steps with a decimal point, else a step number."""
    value = float(number)
    if "." in number:
        value = (value - (1.0 if base_steps is not None else 0.0)) * steps
    else:
        value -= base_steps or 0
    # Clamped before int(): an exponent can make it infinite ("[a:b:1e400]", where A1111 itself crashes);
    # past the last step it never switches, below 1 it switches at once, as for any other such value.
    return int(min(max(value, -1.0), float(steps)))


def _walk(nodes: tuple, visit) -> None:
    for node in nodes:
        visit(node)
        if isinstance(node, _Group):
            for part in node.parts:
                if isinstance(part, tuple):
                    _walk(part, visit)
        elif isinstance(node, _Scheduled):
            _walk(node.before or (), visit)
            _walk(node.after, visit)
        elif isinstance(node, _Alternate):
            for option in node.options:
                _walk(option, visit)


def _render(nodes: tuple, step: int, steps: int, base_steps: int | None) -> str:
    text = []
    for node in nodes:
        if isinstance(node, str):
            text.append(node)
        elif isinstance(node, _Group):
            text.extend(part if isinstance(part, str) else _render(part, step, steps, base_steps)
                        for part in node.parts)
        elif isinstance(node, _Scheduled):
            chosen = (node.before or ()) if step <= _when(node.when, steps, base_steps) else node.after
            text.append(_render(chosen, step, steps, base_steps))
        else:
            text.append(_render(node.options[(step - 1) % len(node.options)], step, steps, base_steps))
    return "".join(text)


def prompt_schedule(prompt: str, steps: int, *, hires_steps: int | None = None) -> list[tuple[int, str]]:
    """A1111's schedule of a prompt over ``steps`` (or the hires pass's ``hires_steps``, counting
    ``when`` past ``steps``): ``[(last step, text), …]``, ending at the last step. Raises
    ``PromptSyntaxError`` only for brackets nested deeper than ``MAX_NESTING``."""
    tree = _tree(prompt)
    if tree is None:
        return [(hires_steps or steps, prompt)]
    base_steps = steps if hires_steps is not None else None
    total = hires_steps if hires_steps is not None else steps
    boundaries = {total}

    def collect(node: object) -> None:
        if isinstance(node, _Scheduled):
            when = _when(node.when, total, base_steps)
            if when >= 1:
                boundaries.add(when)
        elif isinstance(node, _Alternate):
            boundaries.update(range(1, total + 1))

    _walk(tree, collect)
    return [(step, _render(tree, step, total, base_steps)) for step in sorted(boundaries)]


def text_at_call(schedule: Sequence[tuple[int, _Entry]], call: int) -> _Entry:
    """The text (or text index) a sampler uses at model call ``call`` (from 0): the first entry ending at or
    after it."""
    return next((text for last, text in schedule if call <= last), schedule[-1][1])


def _tree(prompt: str) -> tuple | None:
    try:
        return _Parser(prompt).start()
    except _Unreadable:
        return None


def uses_schedule(prompt: str) -> bool:
    """Whether the prompt has prompt editing or alternation that A1111 would apply."""
    found = False

    def visit(node: object) -> None:
        nonlocal found
        found = found or isinstance(node, _Scheduled | _Alternate)

    _walk(_tree(prompt) or (), visit)
    return found


def final_text(prompt: str) -> str:
    """One text for the whole schedule, for scorers: editing as it ends, alternation with every option."""

    def render(nodes: tuple) -> str:
        text = []
        for node in nodes:
            if isinstance(node, str):
                text.append(node)
            elif isinstance(node, _Group):
                text.extend(part if isinstance(part, str) else render(part) for part in node.parts)
            elif isinstance(node, _Scheduled):
                text.append(render(node.after))
            else:
                text.append(" ".join(render(option) for option in node.options))
        return "".join(text)

    tree = _tree(prompt)
    return prompt if tree is None else render(tree)
