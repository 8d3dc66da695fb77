"""A1111 "parameters" infotext: the text block every A1111/Forge/Civitai PNG carries.

Layout::

    <prompt, possibly several lines>
    Negative prompt: <negative, possibly several lines>
    Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, Model hash: 0123456789, Model: name

Written and read as A1111 does (``create_infotext``, ``parse_generation_parameters``): a value with a
comma, colon or line break is written as a JSON string; the last line holds the parameters when at least
three ``key: value`` pairs are found on it; prompt lines are stripped of surrounding whitespace; an empty
negative prompt has no line. Lists of hashes (``Lora hashes``, ``TI hashes``) are one quoted value
``"name: hash, name2: hash2"``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ckptbench.errors import CkptbenchError

_NEGATIVE = "Negative prompt:"
_WORD = re.compile(r"\w")
_SPACE = re.compile(r"\s")
_SIZE = re.compile(r"^(\d+)x(\d+)$")

# The schedule A1111 1.9+ picks for "Schedule type: Automatic" when a sampler names its own default.
_AUTOMATIC_SCHEDULE = {
    "DPM++ 2M": "Karras", "DPM++ SDE": "Karras", "DPM++ 2S a": "Karras", "DPM2": "Karras", "DPM2 a": "Karras",
    "Restart": "Karras", "DPM++ 2M SDE": "Exponential", "DPM++ 2M SDE Heun": "Exponential",
    "DPM++ 3M SDE": "Exponential",
}


class InfotextError(CkptbenchError, ValueError):
    """A parameter of an infotext does not have the form A1111 writes."""


@dataclass(frozen=True)
class Infotext:
    prompt: str
    negative_prompt: str = ""
    parameters: dict[str, str] = field(default_factory=dict)

    @property
    def sampler(self) -> str | None:
        """The sampler in ckptbench's (A1111 ≤1.8) naming, e.g. 'DPM++ 2M Karras'."""
        if "Sampler" not in self.parameters:
            return None
        return sampler_name(self.parameters["Sampler"], self.parameters.get("Schedule type"))

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) from ``Size: WxH``."""
        match = _SIZE.match(self.parameters.get("Size", ""))
        return (int(match.group(1)), int(match.group(2))) if match else None

    @property
    def clip_skip(self) -> int:
        value = self.parameters.get("Clip skip", "1")
        if not value.strip().isdecimal():
            raise InfotextError(f"the infotext's 'Clip skip: {value}' is not a whole number; fix or remove it.")
        return int(value)

    @property
    def lora_hashes(self) -> dict[str, str]:
        return parse_hashes(self.parameters.get("Lora hashes", ""))

    @property
    def ti_hashes(self) -> dict[str, str]:
        return parse_hashes(self.parameters.get("TI hashes", ""))


def quote(value: str) -> str:
    """JSON-quote a value when it holds a comma, colon or line break (as A1111 does), or when it would not
    read back as itself (surrounding spaces, a leading quote); A1111 reads both forms."""
    if not any(char in value for char in ",:\n") and value == value.strip() and not value.startswith('"'):
        return value
    return json.dumps(value, ensure_ascii=False)


def unquote(value: str) -> str:
    if len(value) < 2 or value[0] != '"' or value[-1] != '"':
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def format_infotext(prompt: str, negative_prompt: str, parameters: Mapping[str, object]) -> str:
    """Parameters whose value is None or empty are left out; the order of ``parameters`` is kept."""
    pairs = ", ".join(f"{key}: {quote(str(value))}" for key, value in parameters.items()
                      if value is not None and str(value) != "")
    negative = f"\n{_NEGATIVE} {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative}\n{pairs}".strip()


def parse_infotext(text: str) -> Infotext:
    """Parse an A1111 parameters block; lines before the parameters line belong to the prompts."""
    *lines, last = text.strip().split("\n")
    pairs = parameter_pairs(last)
    if len(pairs) < 3:
        lines.append(last)
        pairs = []
    prompt: list[str] = []
    negative: list[str] = []
    target = prompt
    for line in lines:
        line = line.strip()
        if line.startswith(_NEGATIVE):
            target = negative
            line = line[len(_NEGATIVE) :].strip()
        target.append(line)
    parameters = {key: unquote(value) for key, value in pairs}
    return Infotext("\n".join(prompt), "\n".join(negative), parameters)


def parameter_pairs(line: str) -> list[tuple[str, str]]:
    """The ``(key, value)`` pairs A1111 finds in a parameters line, exactly as
    ``re.findall(r'\\s*(\\w[\\w \\-/]+):\\s*("(?:\\\\.|[^\\\\"])+"|[^,]*)(?:,|$)', line)`` (A1111's own pattern) finds
    them, in linear time: the pattern rescans a run of key characters from each of its positions, so a long
    line (a PNG text chunk may hold a megabyte) would take hours.
    """
    n = len(line)
    word = [bool(_WORD.match(char)) for char in line]
    space_end = [n] * (n + 1)  # first position at or after i that is not whitespace
    key_end = [n] * (n + 1)  # first position at or after i that cannot be in a key ([\w \-/])
    next_comma = [n] * (n + 1)
    quote_end = [-1] * (n + 2)  # the quote that ends a quoted value's body begun at i (-1: none)
    for i in range(n - 1, -1, -1):
        char = line[i]
        space_end[i] = space_end[i + 1] if _SPACE.match(char) else i
        key_end[i] = key_end[i + 1] if word[i] or char in " -/" else i
        next_comma[i] = i if char == "," else next_comma[i + 1]
        if char == '"':
            quote_end[i] = i
        elif char == "\\":  # a backslash takes the next character with it (not a line break)
            quote_end[i] = quote_end[i + 2] if i + 1 < n and line[i + 1] != "\n" else -1
        else:
            quote_end[i] = quote_end[i + 1]
    pairs: list[tuple[str, str]] = []
    position = 0
    while position < n:
        start = space_end[position]
        end = key_end[start] if start < n and word[start] else start
        if end - start < 2 or end >= n or line[end] != ":":  # no key of two or more characters and a colon
            position += 1
            continue
        value = space_end[end + 1]
        close = quote_end[value + 1] if value < n and line[value] == '"' else -1
        if close > value + 1 and (close + 1 == n or line[close + 1] == ","):
            pairs.append((line[start:end], line[value : close + 1]))
            position = close + 2
        else:
            comma = next_comma[value]
            pairs.append((line[start:end], line[value:comma]))
            position = comma + 1
    return pairs


def parse_hashes(value: str) -> dict[str, str]:
    """``"name: hash, name2: hash2"`` → {name: hash}."""
    hashes: dict[str, str] = {}
    for item in value.split(","):
        name, _, digest = item.strip().rpartition(":")
        if name.strip() and digest.strip():
            hashes[name.strip()] = digest.strip()
    return hashes


def format_hashes(hashes: Mapping[str, str]) -> str:
    """{name: hash} → ``name: hash, name2: hash2``; commas and colons leave names, as in A1111."""
    return ", ".join(f"{name.replace(':', '').replace(',', '')}: {digest}" for name, digest in hashes.items())


def sampler_name(sampler: str, schedule_type: str | None = None) -> str:
    """A1111 1.9+ ``Sampler`` + ``Schedule type`` → one ckptbench sampler name ('DPM++ 2M Karras')."""
    schedule = (schedule_type or "").strip()
    if schedule == "Automatic":
        schedule = _AUTOMATIC_SCHEDULE.get(sampler, "Uniform")
    if schedule in ("", "Uniform") or sampler.endswith(f" {schedule}"):
        return sampler
    return f"{sampler} {schedule}"
