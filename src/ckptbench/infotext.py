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

Samplers are read as A1111 1.10 reads them (``sd_samplers.get_sampler_and_scheduler``): ``Sampler`` plus
``Schedule type``, where a missing schedule type is "Automatic", the sampler's own default (Karras for
"DPM++ 2M"), and an old combined name ("DPM++ 2M Karras") carries its schedule as a suffix. One exception
makes the reading true to what ran: an infotext whose ``Version`` is A1111 before 1.9 (which had no
schedule types) means the uniform schedule by a bare "DPM++ 2M". A missing ``RNG`` means A1111's GPU noise.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ckptbench.errors import CkptbenchError, SpecError
from ckptbench.generate.samplers.registry import ResolvedSampler, resolve_sampler

_NEGATIVE = "Negative prompt:"
_WORD = re.compile(r"\w")
_SPACE = re.compile(r"\s")
_SIZE = re.compile(r"^(\d+)x(\d+)$")
_A1111_BEFORE_SCHEDULE_TYPES = re.compile(r"^v?1\.[0-8]\.")  # A1111 1.0 – 1.8 wrote "v1.8.0"


class InfotextError(CkptbenchError, ValueError):
    """A parameter of an infotext does not have the form A1111 writes."""


@dataclass(frozen=True)
class Infotext:
    prompt: str
    negative_prompt: str = ""
    parameters: dict[str, str] = field(default_factory=dict)

    @property
    def sampler(self) -> str | None:
        """The A1111 sampler that ran (``Sampler`` as A1111 ≥ 1.9 names it: "DPM++ 2M"), or None."""
        resolved = self.sampler_settings()
        return resolved.name if resolved else None

    @property
    def schedule_type(self) -> str | None:
        """The noise schedule that ran ("Karras"); None without a sampler or for DDIM/PLMS/UniPC."""
        resolved = self.sampler_settings()
        return resolved.schedule_label if resolved else None

    @property
    def rng(self) -> str:
        """Where the noise was drawn: "CPU", "GPU" (A1111's default, written as no field) or "NV"."""
        return self.parameters.get("RNG", "GPU")

    def sampler_settings(self) -> ResolvedSampler | None:
        """Sampler and schedule as A1111 1.10 reads them (see the module's note on pre-1.9 versions)."""
        if "Sampler" not in self.parameters:
            return None
        sampler, schedule = self.parameters["Sampler"], self.parameters.get("Schedule type")
        if schedule is None and _A1111_BEFORE_SCHEDULE_TYPES.match(self.parameters.get("Version", "")):
            schedule = _uniform_unless_named(sampler)
        try:
            return resolve_sampler(sampler, schedule)
        except SpecError as error:
            raise InfotextError(f"the infotext's 'Sampler: {sampler}'"
                                f"{f', Schedule type: {schedule}' if schedule else ''} is not a sampler ckptbench "
                                f"runs: {error}") from None

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
    """A1111 ``Sampler`` (+ ``Schedule type``) → one name in the pre-1.9 style ("DPM++ 2M Karras"), as A1111
    1.10 reads them; raises ``InfotextError`` for a sampler ckptbench does not run."""
    return Infotext("", "", {"Sampler": sampler, **({"Schedule type": schedule_type} if schedule_type else {})}
                    ).sampler_settings().label  # type: ignore[union-attr]


def _uniform_unless_named(sampler: str) -> str | None:
    """Before 1.9, A1111 sampled a bare sigma-sampler name on its uniform schedule."""
    try:
        resolved = resolve_sampler(sampler)
    except SpecError:
        return None
    if resolved.schedule is None or sampler != resolved.name:  # timestep sampler, or the name has a suffix
        return None
    return "Uniform"

