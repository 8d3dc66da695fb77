"""A1111 prompt syntax: stripping it to the plain text that scorers compare images against."""

from __future__ import annotations

import re

_EXTRA_NETWORK = re.compile(r"<\s*(?:lora|lyco|hypernet|lycoris)\s*:[^>]*>", re.IGNORECASE)
_WEIGHT = re.compile(r":\s*-?\d+(?:\.\d+)?\s*(?=[)\]])")
_EDIT = re.compile(r"\[([^\[\]:|]*):([^\[\]:|]*):\s*\d+(?:\.\d+)?\s*\]")  # [from:to:when] → to
_BREAK = re.compile(r"\bBREAK\b")


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
