"""A1111 prompt syntax: extra-network tags, and stripping to the plain text scorers compare against."""

from __future__ import annotations

import re
from dataclasses import dataclass

_EXTRA_NETWORK = re.compile(r"<\s*(?:lora|lyco|hypernet|lycoris)\s*:[^>]*>", re.IGNORECASE)
_WEIGHT = re.compile(r":\s*-?\d+(?:\.\d+)?\s*(?=[)\]])")
_EDIT = re.compile(r"\[([^\[\]:|]*):([^\[\]:|]*):\s*\d+(?:\.\d+)?\s*\]")  # [from:to:when] → to
_BREAK = re.compile(r"\bBREAK\b")


_LORA_TAG = re.compile(r"<\s*(?:lora|lyco)\s*:\s*([^:>]+?)\s*(?::\s*([^:>]*?)\s*)?(?::[^>]*)?>", re.IGNORECASE)


@dataclass(frozen=True)
class LoraTag:
    """A LoRA named in a prompt (``<lora:name:weight>``) or by a suite; weight None = the spec's default."""

    name: str
    weight: float | None = None


def extract_lora_tags(prompt: str) -> tuple[str, tuple[LoraTag, ...]]:
    """Split ``<lora:name>`` / ``<lora:name:weight>`` tags off a prompt, as A1111 does before encoding."""
    tags: list[LoraTag] = []

    def take(match: re.Match[str]) -> str:
        weight_text = match.group(2)
        try:
            weight = float(weight_text) if weight_text not in (None, "") else None
        except ValueError:
            raise ValueError(f"<lora:{match.group(1)}:{weight_text}> has a weight that is not a number") from None
        tags.append(LoraTag(match.group(1), weight))
        return ""

    text = _LORA_TAG.sub(take, prompt)
    return re.sub(r"\s+,", ",", re.sub(r"[ \t]{2,}", " ", text)).strip(), tuple(tags)


def strip_prompt_syntax(prompt: str) -> str:
    """Plain text of an A1111 prompt: no <lora:…> tags, no (…:1.2) weights, no brackets, no BREAK."""
    text = _EXTRA_NETWORK.sub(" ", prompt)
    text = _BREAK.sub(",", text)
    text = _EDIT.sub(lambda match: match.group(2), text)
    text = _WEIGHT.sub("", text)
    text = re.sub(r"(?<!\\)[()\[\]]", "", text)
    text = re.sub(r"\\([()\[\]])", r"\1", text)
    text = re.sub(r"\s*,\s*(,\s*)+", ", ", text)
    text = re.sub(r"\s+", " ", text)
    return text.strip(" ,")
