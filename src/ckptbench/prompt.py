"""A1111 prompt syntax: parsed into weighted text the way A1111 reads it, and stripped to plain text.

A1111 reads a prompt in four passes, and so does ``scheduled_prompts``:

1. extra-network tags ``<type:args>`` are cut out (``<lora:…>``/``<lyco:…>`` become ``LoraTag``\\ s);
2. ``AND`` splits a positive prompt into sub-prompts for composable diffusion;
3. ``[from:to:when]`` prompt editing and ``[a|b]`` alternation give the text at each step
   (``prompt_schedule``);
4. emphasis: ``(x)`` ×1.1, ``[x]`` ÷1.1, ``(x:w)`` ×w, nested multiplicatively; ``\\(`` ``\\)`` ``\\[``
   ``\\]`` are literal brackets; ``BREAK`` ends the current 75-token chunk.

Composable diffusion (pass 2) is not implemented: ckptbench refuses it with an error that names the
construct instead of encoding it as words. Unbalanced brackets are read exactly as A1111 reads them (an
unclosed ``(`` weights the rest of the prompt; a stray ``)`` is text).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ckptbench.prompt_schedule import PromptSyntaxError, final_text, prompt_schedule, uses_schedule

ROUND_MULTIPLIER = 1.1
SQUARE_MULTIPLIER = 1 / 1.1


@dataclass(frozen=True)
class LoraTag:
    """A LoRA named in a prompt (``<lora:name:te:unet:dyn>``) or by a suite.

    ``weight`` is A1111's first multiplier: the text encoders', and the UNet's too unless ``unet_weight`` (the
    second) is given; None means the spec's default weight. ``dyn`` keeps only the first ``dyn`` ranks of
    plain LoRA layers (DyLoRA), as A1111 does.
    """

    name: str
    weight: float | None = None
    unet_weight: float | None = None
    dyn: int | None = None


@dataclass(frozen=True)
class WeightedText:
    """A run of prompt text and the emphasis multiplier of every token it encodes to."""

    text: str
    weight: float


@dataclass(frozen=True)
class Break:
    """``BREAK``: pad the current 75-token chunk and start a new one."""


BREAK = Break()
Segment = WeightedText | Break


@dataclass(frozen=True)
class ParsedPrompt:
    """A prompt as A1111 encodes it: weighted text runs and chunk breaks, plus the LoRAs its tags name."""

    segments: tuple[Segment, ...]
    loras: tuple[LoraTag, ...] = ()


# --- pass 1: extra networks -------------------------------------------------------------------------

# A1111's own tag pattern (``modules/extra_networks.py``): whatever it matches is removed from the text before
# encoding, without touching the whitespace or commas around it (the tokens that remain are what A1111 encodes).
# The type is matched case-sensitively: ``<LORA:x>`` is a tag of an unknown type, not a LoRA.
_EXTRA_NETWORK_TAG = re.compile(r"<(\w+):([^>]+)>")
_LORA_NETWORKS = ("lora", "lyco")  # A1111 registers 'lyco' as an alias of 'lora'
_LORA_ARGUMENTS = ("te", "unet", "dyn")
# Whitespace runs are matched from their start only ((?<!\s)): a pattern that begins with \s can otherwise be
# tried from every position of a long run, which is quadratic. The matches are the same.
_SPACE_COMMA = re.compile(r"(?<!\s)\s+,")
_SPACED_COMMAS = re.compile(r"(?<!\s)\s*,\s*(,\s*)+")


def _sub_tags(pattern: re.Pattern[str], replacement, text: str) -> str:
    """``pattern.sub`` for a tag pattern ``<…>``: only up to the last '>', since a '<' after it opens no tag and
    searching there would scan to the end from every '<' (quadratic)."""
    end = text.rfind(">") + 1
    return pattern.sub(replacement, text[:end]) + text[end:]


def extract_lora_tags(prompt: str) -> tuple[str, tuple[LoraTag, ...]]:
    """Split ``<lora:…>`` / ``<lyco:…>`` tags off a prompt, as A1111 does before encoding (``lora_tag`` reads
    their arguments).

    The returned text is tidied for display (no doubled spaces or commas left where a tag was); the
    conditioning encodes ``parse_prompt``'s segments, which keep A1111's exact remainder.
    """
    tags: list[LoraTag] = []

    def take(match: re.Match[str]) -> str:
        if match.group(1) not in _LORA_NETWORKS:
            return match.group(0)  # another kind of extra network: refused by parse_prompt, kept here
        tags.append(lora_tag(match.group(2), match.group(0)))
        return ""

    text = _sub_tags(_EXTRA_NETWORK_TAG, take, prompt)
    text = re.sub(r"[ \t]{2,}", " ", text)
    text = _SPACE_COMMA.sub(",", text)
    text = re.sub(r",(\s*,)+", ",", text)
    return text.strip().strip(",").strip(), tuple(tags)


def lora_tag(arguments: str, tag: str) -> LoraTag:
    """A LoRA tag's ``:``-separated arguments read as A1111 v1.10 reads them (``ExtraNetworkParams`` and
    ``ExtraNetworkLora.activate``).

    An argument with one ``=`` is named, every other one positional: the name (kept exactly as written,
    spaces included), the text-encoder multiplier, the UNet multiplier (default: the text encoder's, after
    ``te=``), ``dyn``. ``te=``, ``unet=`` and ``dyn=`` override the positional values. Where A1111 would
    fail (a weight that is not a number) or silently ignore an argument (an unknown name, a fifth
    positional value), ckptbench refuses the prompt with a message instead.
    """
    positional: list[str] = []
    named: dict[str, str] = {}
    for item in arguments.split(":"):
        parts = item.split("=", 2)
        if len(parts) == 2:
            named[parts[0]] = parts[1]
        else:
            positional.append(item)
    if not positional or not positional[0].strip():
        raise PromptSyntaxError(f"{tag} names no LoRA; write <lora:name> or <lora:name:weight>.")
    name = positional[0]
    unknown = [key for key in named if key not in _LORA_ARGUMENTS]
    if unknown:
        raise PromptSyntaxError(
            f"{tag} has the argument '{unknown[0]}=', which A1111 does not know (it ignores it; extensions such as "
            "LoRA Block Weight read their own); ckptbench reads only te=, unet= and dyn=: remove the argument.")
    if len(positional) > 4:
        raise PromptSyntaxError(f"{tag} has {len(positional) - 1} values after the name; A1111 reads at most three "
                                f"(<lora:{name}:te:unet:dyn>) and ignores the rest: remove the extra ones.")
    te = _multiplier(positional[1], tag, "weight") if len(positional) > 1 else None
    te = _multiplier(named["te"], tag, "te") if "te" in named else te
    unet = _multiplier(positional[2], tag, "UNet weight") if len(positional) > 2 else None
    unet = _multiplier(named["unet"], tag, "unet") if "unet" in named else unet
    dyn = _rank(positional[3], tag) if len(positional) > 3 else None
    dyn = _rank(named["dyn"], tag) if "dyn" in named else dyn
    return LoraTag(name, te, unet, dyn)


def _multiplier(text: str, tag: str, what: str) -> float:
    try:
        value = float(text)  # what A1111 calls: surrounding spaces, exponents and '_' digit groups are accepted
    except ValueError:
        raise PromptSyntaxError(f"{tag} has a {what} ('{text}') that is not a number; write e.g. 0.8.") from None
    if not math.isfinite(value):
        raise PromptSyntaxError(f"{tag} has a {what} ('{text}') that is not a finite number; write e.g. 0.8.")
    return value


def _rank(text: str, tag: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise PromptSyntaxError(f"{tag} has dyn '{text}', which is not a whole number; write e.g. dyn=8.") from None
    if value < 1:
        # A1111 slices the LoRA's ranks with it: 0 removes the LoRA's effect, a negative value drops ranks
        # from the end; neither is what anyone writing it means.
        raise PromptSyntaxError(f"{tag} has dyn {value}; dyn is the number of ranks to keep (1 or more).")
    return value


def _remove_extra_networks(prompt: str) -> str:
    for match in _EXTRA_NETWORK_TAG.finditer(prompt, 0, prompt.rfind(">") + 1):
        kind = match.group(1)
        if kind in _LORA_NETWORKS:
            continue
        if kind.lower() in _LORA_NETWORKS:
            raise PromptSyntaxError(
                f"the prompt has the tag {match.group(0)}; A1111 reads tag types case-sensitively, so it removes this "
                f"tag and applies no LoRA; write <{kind.lower()}:…> to apply it, or remove the tag.")
        raise PromptSyntaxError(
            f"the prompt names a '{kind}' extra network ({match.group(0)}); ckptbench applies only "
            "<lora:…> and <lyco:…> tags; remove the tag or replace it with a LoRA.")
    return _sub_tags(_EXTRA_NETWORK_TAG, "", prompt)


# --- pass 2: composable diffusion ---------------------------------------------------------------------

_AND = re.compile(r"\bAND\b")
# From the colon on: a leading \s* made every search quadratic in a run of spaces.
_WHOLE_PROMPT_WEIGHT = re.compile(r":\s*([-+]?(?:\d+\.?|\d*\.\d+))\s*$")


def _refuse_composable(text: str, negative: bool) -> str:
    """A1111 reads 'AND' and a trailing ':weight' of a positive prompt as composable diffusion."""
    if negative:
        return text  # A1111 encodes a negative prompt's 'AND' and trailing weight as words
    if _AND.search(text):
        raise PromptSyntaxError(
            "the prompt uses A1111's 'AND' (composable diffusion), which ckptbench does not implement; "
            "write the sub-prompts as one prompt, or 'and' in lower case if it is meant as a word.")
    if match := _WHOLE_PROMPT_WEIGHT.search(text):
        if float(match.group(1)) != 1.0:
            raise PromptSyntaxError(
                f"the prompt ends in '{match.group(0).strip()}', which A1111 reads as a composable-diffusion "
                "weight of the whole prompt (not implemented in ckptbench); remove it or wrap the text as "
                "(text:weight).")
        text = text[: match.start()].rstrip()  # a weight of 1 is dropped by A1111 and changes nothing else
    return text


# --- pass 4: emphasis ---------------------------------------------------------------------------------

_EMPHASIS_TOKEN = re.compile(
    r"""
      \\[()\[\]\\]              # an escaped bracket or backslash: the character itself
    | \\                        # a lone backslash: dropped
    | [(\[]                     # an opening bracket
    | :\s*([+-]?[.\d]+)\s*\)    # an explicit weight that closes a round bracket
    | [)\]]                     # a closing bracket
    | [^\\()\[\]:]+             # plain text
    | :                         # a colon that closes nothing
    """,
    re.VERBOSE,
)
_BREAK_WORD = re.compile(r"\bBREAK\b")  # with the whitespace around it (stripped below, not matched: linear)


@dataclass
class _Piece:
    text: str
    weight: float = 1.0
    is_break: bool = False


def _parse_emphasis(text: str, strict: bool) -> list[Segment]:
    pieces: list[_Piece] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def scale(start: int, factor: float) -> None:
        for piece in pieces[start:]:
            piece.weight *= factor

    for match in _EMPHASIS_TOKEN.finditer(text):
        token, weight = match.group(0), match.group(1)
        if token.startswith("\\"):
            pieces.append(_Piece(token[1:]))
        elif token in "([":
            (round_open if token == "(" else square_open).append(len(pieces))
        elif weight is not None and round_open:
            try:
                scale(round_open.pop(), float(weight))
            except ValueError:
                if strict:
                    raise PromptSyntaxError(f"'{token.strip()}' in the prompt is not a valid emphasis weight; "
                                            "write e.g. (word:1.2).") from None
        elif token == ")" and round_open:
            scale(round_open.pop(), ROUND_MULTIPLIER)
        elif token == "]" and square_open:
            scale(square_open.pop(), SQUARE_MULTIPLIER)
        else:
            parts = _BREAK_WORD.split(token)
            for index, part in enumerate(parts):
                if index:
                    pieces.append(_Piece("", is_break=True))
                    part = part.lstrip()
                pieces.append(_Piece(part.rstrip() if index < len(parts) - 1 else part))
    for start in round_open:  # unclosed brackets weight everything after them
        scale(start, ROUND_MULTIPLIER)
    for start in square_open:
        scale(start, SQUARE_MULTIPLIER)
    if strict and any(not math.isfinite(piece.weight) for piece in pieces):
        # A1111 multiplies the embedding by it and makes a NaN image; refusing says why.
        raise PromptSyntaxError("an emphasis weight in the prompt is too large to be a number (it overflows to "
                                "infinity); write weights like (word:1.2).")
    return _merge(pieces, strict)


def _merge(pieces: list[_Piece], strict: bool) -> list[Segment]:
    # Runs of equal weight are joined before tokenizing, as A1111 does: "(a)(b)" encodes "ab". Empty runs
    # are dropped only after merging, since they keep their neighbours apart in A1111 too.
    merged: list[_Piece] = []
    for piece in pieces:
        if piece.is_break and piece.weight != 1.0:
            if strict:
                raise PromptSyntaxError(
                    "the prompt has BREAK inside brackets, which A1111 does not read as a chunk break (it "
                    "encodes the word 'break' with a negative weight); move BREAK outside the brackets.")
            piece = _Piece("", is_break=True)
        previous = merged[-1] if merged else None
        if previous and not previous.is_break and not piece.is_break and previous.weight == piece.weight:
            previous.text += piece.text
        else:
            merged.append(_Piece(piece.text, piece.weight, piece.is_break))
    segments: list[Segment] = [BREAK if p.is_break else WeightedText(p.text, p.weight) for p in merged
                               if p.is_break or p.text]
    return segments


# --- entry points ---------------------------------------------------------------------------------------


def parse_prompt(prompt: str, *, negative: bool = False) -> ParsedPrompt:
    """Parse an A1111 prompt into weighted segments and LoRA tags; raise on syntax we cannot reproduce.

    ``negative`` prompts are read as A1111 reads them: ``AND`` and a trailing ``:weight`` are plain text.
    A prompt with editing or alternation has one parse per step: use ``scheduled_prompts``.
    """
    _, loras = extract_lora_tags(prompt)
    text = _refuse_composable(_remove_extra_networks(prompt), negative)
    if uses_schedule(text):
        raise PromptSyntaxError("the prompt uses A1111 prompt editing or alternation, which changes it during "
                                "sampling; parse it with scheduled_prompts(prompt, steps).")
    return ParsedPrompt(tuple(_parse_emphasis(text, strict=True)), loras)


def scheduled_prompts(prompt: str, steps: int, *, negative: bool = False, hires_steps: int | None = None
                      ) -> list[tuple[int, ParsedPrompt]]:
    """The prompt as A1111 encodes it at each step: ``[(last step, parsed text), …]`` (see
    ``prompt_schedule``); a prompt without editing or alternation has one entry."""
    _, loras = extract_lora_tags(prompt)
    text = _refuse_composable(_remove_extra_networks(prompt), negative)
    return [(last, ParsedPrompt(tuple(_parse_emphasis(step_text, strict=True)), loras))
            for last, step_text in prompt_schedule(text, steps, hires_steps=hires_steps)]


def strip_prompt_syntax(prompt: str) -> str:
    """Plain text of an A1111 prompt for scorers: no tags, weights, brackets or BREAK; never raises.

    Prompt editing keeps its final prompt and alternation keeps all of its options.
    """
    text = " , ".join(_WHOLE_PROMPT_WEIGHT.sub("", part) for part in _AND.split(_sub_tags(_EXTRA_NETWORK_TAG, " ",
                                                                                          prompt)))
    try:
        text = final_text(text)
    except PromptSyntaxError:  # brackets nested absurdly deep: read as written
        pass
    segments = _parse_emphasis(text, strict=False)
    text = "".join(s.text if isinstance(s, WeightedText) else ", " for s in segments)
    text = _SPACED_COMMAS.sub(", ", text)
    text = re.sub(r"\s+", " ", text)
    text = _SPACE_COMMA.sub(",", text)
    return text.strip(" ,")
