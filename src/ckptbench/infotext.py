"""A1111 "parameters" infotext: the text block every A1111/Forge/Civitai PNG carries.

Layout::

    <prompt, possibly several lines>
    Negative prompt: <negative, possibly several lines>
    Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, Model hash: 0123456789, Model: name

Values that contain commas or colons are written JSON-quoted, as A1111 does.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

_NEGATIVE = "Negative prompt:"
# A key: value pair in the last line; values may be JSON-quoted strings.
_PAIR = re.compile(r'\s*(?P<key>[\w \-/+.()]+?):\s*(?P<value>"(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


@dataclass(frozen=True)
class Infotext:
    prompt: str
    negative_prompt: str = ""
    parameters: dict[str, str] = field(default_factory=dict)


def _quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False) if ("," in value or ":" in value or '"' in value) else value


def format_infotext(prompt: str, negative_prompt: str, parameters: Mapping[str, object]) -> str:
    lines = [prompt]
    if negative_prompt:
        lines.append(f"{_NEGATIVE} {negative_prompt}")
    lines.append(", ".join(f"{key}: {_quote(str(value))}" for key, value in parameters.items()
                           if value is not None and str(value) != ""))
    return "\n".join(lines)


def parse_infotext(text: str) -> Infotext:
    """Parse an A1111 parameters block; lines that are not parameters belong to the prompts."""
    lines = text.strip("\n").split("\n")
    parameters: dict[str, str] = {}
    if lines and _looks_like_parameters(lines[-1]):
        parameters = _parse_parameters(lines.pop())
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    target = prompt_lines
    for line in lines:
        if line.startswith(_NEGATIVE):
            target = negative_lines
            line = line[len(_NEGATIVE):].lstrip()
        target.append(line)
    return Infotext("\n".join(prompt_lines).strip(), "\n".join(negative_lines).strip(), parameters)


def _looks_like_parameters(line: str) -> bool:
    pairs = _parse_parameters(line)
    return len(pairs) >= 3 and "Steps" in pairs


def _parse_parameters(line: str) -> dict[str, str]:
    parameters: dict[str, str] = {}
    for match in _PAIR.finditer(line):
        value = match.group("value").strip()
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            with contextlib.suppress(json.JSONDecodeError):
                value = json.loads(value)
        parameters[match.group("key").strip()] = value
    return parameters
