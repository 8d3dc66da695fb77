"""Prompt embeddings for a batch of images, computed the way A1111 computes them, per model call.

``encode_prompts`` parses the batch's prompts and negative prompts (A1111 syntax, prompt editing and
alternation included), encodes each distinct schedule once as A1111 encodes one prompt's schedule
(``text_encoding.encode_schedules``) and returns a ``Conditioning``: the UNet inputs of every model call
(A1111 counts prompt-editing steps in model calls, so second-order samplers count two per step).

Texts of different lengths are padded with the encoding of an empty chunk (what A1111 pads with) and the
padding is hidden from the UNet's cross-attention by an attention mask. That makes each image what A1111
gives by default, where a prompt and a negative prompt of different lengths are evaluated separately, and
keeps every image independent of what else is in its batch. (Within one prompt's schedule A1111 pads to a
common length without a mask; ``encode_schedules`` does that part.) SDXL, like A1111, gets zero
conditioning for an empty negative prompt.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ckptbench.generate.embeddings import TextualInversion
from ckptbench.generate.text_encoding import encode_schedules
from ckptbench.prompt import ParsedPrompt, scheduled_prompts
from ckptbench.prompt_schedule import text_at_call

EMPTY_CHUNK_TOKENS = 77


@dataclass
class Conditioning:
    """Every encoded text of a batch, padded, and which text each row uses at each call.

    Rows are the positives then the negatives; ``schedules[row]`` lists (last model call, text index).
    """

    hidden: torch.Tensor  # (texts, tokens, width)
    token_mask: torch.Tensor  # (texts, tokens): True = a real token, False = padding
    pooled: torch.Tensor | None  # (texts, width): SDXL's pooled text embeds
    schedules: list[list[tuple[int, int]]]
    batch: int
    embeddings_used: tuple[str, ...]
    _inputs: dict[tuple[int, ...], dict[str, torch.Tensor]] = field(default_factory=dict, repr=False)

    def texts_at(self, call: int) -> list[int]:
        return [text_at_call(schedule, call) for schedule in self.schedules]

    def embeds_at(self, call: int) -> dict[str, torch.Tensor]:
        """diffusers' names: prompt_embeds, negative_prompt_embeds (and SDXL's pooled ones)."""
        rows = self.texts_at(call)
        hidden = self.hidden[rows]
        embeds = {"prompt_embeds": hidden[: self.batch], "negative_prompt_embeds": hidden[self.batch :]}
        if self.pooled is not None:
            pooled = self.pooled[rows]
            embeds |= {"pooled_prompt_embeds": pooled[: self.batch],
                       "negative_pooled_prompt_embeds": pooled[self.batch :]}
        return embeds

    def mask_at(self, call: int) -> torch.Tensor:
        """(2 × batch, tokens) cross-attention mask, rows as A1111 batches them: [positives; negatives]."""
        return self.token_mask[self.texts_at(call)]

    def guided_inputs(self, call: int) -> dict[str, torch.Tensor]:
        """The UNet's text inputs at model call ``call`` for A1111's guided batch [positives; negatives]:
        ``encoder_hidden_states``, the ``encoder_attention_mask`` when texts were padded, SDXL's
        ``text_embeds``."""
        rows = tuple(self.texts_at(call))
        if rows not in self._inputs:
            inputs = {"encoder_hidden_states": self.hidden[list(rows)]}
            if self.padded:
                inputs["encoder_attention_mask"] = self.token_mask[list(rows)]
            if self.pooled is not None:
                inputs["text_embeds"] = self.pooled[list(rows)]
            self._inputs[rows] = inputs
        return self._inputs[rows]

    @property
    def changes(self) -> bool:
        return any(len({text for _, text in schedule}) > 1 for schedule in self.schedules)

    @property
    def padded(self) -> bool:
        return not bool(self.token_mask.all())

    @property
    def embeds(self) -> dict[str, torch.Tensor]:
        return self.embeds_at(0)

    @property
    def attention_mask(self) -> torch.Tensor | None:
        return self.mask_at(0) if self.padded else None


def encode_prompts(pipeline: Any, prompts: Sequence[str], negative_prompts: Sequence[str], *, steps: int = 1,
                   hires_steps: int | None = None, clip_skip: int = 1,
                   embeddings: Mapping[str, TextualInversion] | None = None) -> Conditioning:
    """Encode a batch's prompts at every step of their A1111 schedules over ``steps`` model calls
    (``hires_steps`` for a hires-fix pass, whose editing steps count on from ``steps``)."""
    if len(prompts) != len(negative_prompts):
        raise ValueError("one negative prompt per prompt")
    rows = [scheduled_prompts(p, steps, hires_steps=hires_steps) for p in prompts]
    rows += [scheduled_prompts(n, steps, negative=True, hires_steps=hires_steps) for n in negative_prompts]
    distinct: dict[tuple[ParsedPrompt, ...], int] = {}
    for row in rows:
        distinct.setdefault(tuple(parsed for _, parsed in row), len(distinct))
    encoded = encode_schedules(pipeline, list(distinct), clip_skip=clip_skip, embeddings=embeddings)
    first_text = [0]
    for texts in encoded.hidden:
        first_text.append(first_text[-1] + len(texts))
    hidden = [text for texts in encoded.hidden for text in texts]
    schedules = []
    for row in rows:
        start = first_text[distinct[tuple(parsed for _, parsed in row)]]
        schedules.append([(last, start + entry) for entry, (last, _) in enumerate(row)])
    pooled = torch.cat(encoded.pooled) if encoded.pooled is not None else None
    if pooled is not None and "" in negative_prompts:  # SDXL, as A1111: an empty negative is all zeros
        zero = len(hidden)
        hidden.append(torch.zeros_like(hidden[0][:EMPTY_CHUNK_TOKENS]))
        pooled = torch.cat([pooled, torch.zeros_like(pooled[:1])])
        for row, negative in enumerate(negative_prompts):
            if negative == "":
                schedules[len(prompts) + row] = [(steps if hires_steps is None else hires_steps, zero)]
    length = max(text.shape[0] for text in hidden)
    padded = torch.stack([_padded(text, length, encoded.padding) for text in hidden])
    token_mask = torch.stack([torch.arange(length) < text.shape[0] for text in hidden]).to(padded.device)
    return Conditioning(padded, token_mask, pooled, schedules, len(prompts), encoded.embeddings_used)


def _padded(text: torch.Tensor, length: int, padding: torch.Tensor) -> torch.Tensor:
    if text.shape[0] == length:
        return text
    return torch.cat([text, padding.to(text.dtype).repeat((length - text.shape[0]) // padding.shape[0], 1)])
