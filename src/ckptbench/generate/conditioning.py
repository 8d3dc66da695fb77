"""Prompt embeddings for a batch of diffusers pipeline calls, computed the way A1111 computes them.

``prompt_conditioning`` is the one call site: it parses the batch's prompts and negative prompts (A1111
syntax, prompt editing and alternation included), encodes every distinct text once
(``text_encoding.py``) and yields the keyword arguments for ``pipeline(**kwargs, …)``: the embeds of the
first step and, when a prompt changes during sampling, a ``callback_on_step_end`` that swaps in the
embeds of each next model call (A1111 counts prompt-editing steps in model calls, so second-order
samplers count two per step).

Texts of different lengths are padded with the encoding of an empty chunk (what A1111 pads with) and the
padding is hidden from the UNet's cross-attention by an attention mask. That makes each image what A1111
gives by default, where a prompt and a negative prompt of different lengths are evaluated separately, and
keeps every image independent of what else is in its batch. SDXL, like A1111, gets zero conditioning for
an empty negative prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from ckptbench.generate.embeddings import TextualInversion
from ckptbench.generate.text_encoding import encode_texts
from ckptbench.prompt import ParsedPrompt, scheduled_prompts
from ckptbench.prompt_schedule import text_at_call

EMPTY_CHUNK_TOKENS = 77


@dataclass
class Conditioning:
    """Every distinct text of a batch, encoded and padded, and which text each row uses at each call.

    Rows are the positives then the negatives; ``schedules[row]`` lists (last model call, text index).
    """

    hidden: torch.Tensor  # (texts, tokens, width)
    token_mask: torch.Tensor  # (texts, tokens): True = a real token, False = padding
    pooled: torch.Tensor | None  # (texts, width): SDXL's pooled text embeds
    schedules: list[list[tuple[int, int]]]
    batch: int
    embeddings_used: tuple[str, ...]
    call: int = field(default=0)  # the model call the pipeline is at

    def texts_at(self, call: int) -> list[int]:
        return [text_at_call(schedule, call) for schedule in self.schedules]

    def embeds_at(self, call: int) -> dict[str, torch.Tensor]:
        rows = self.texts_at(call)
        hidden = self.hidden[rows]
        embeds = {"prompt_embeds": hidden[: self.batch], "negative_prompt_embeds": hidden[self.batch :]}
        if self.pooled is not None:
            pooled = self.pooled[rows]
            embeds |= {"pooled_prompt_embeds": pooled[: self.batch],
                       "negative_pooled_prompt_embeds": pooled[self.batch :]}
        return embeds

    def mask_at(self, call: int) -> torch.Tensor:
        """(2 × batch, tokens) cross-attention mask, in the pipeline's CFG order [negatives; positives]."""
        mask = self.token_mask[self.texts_at(call)]
        return torch.cat([mask[self.batch :], mask[: self.batch]])

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

    def step_callback(self) -> Callable[..., dict[str, torch.Tensor]]:
        """diffusers ``callback_on_step_end``: the embeds of the next model call, in the CFG layout."""

        def on_step_end(_pipeline: Any, index: int, _timestep: Any, tensors: dict[str, torch.Tensor]
                        ) -> dict[str, torch.Tensor]:
            self.call = index + 1
            current = tensors["prompt_embeds"]
            embeds = self.embeds_at(self.call)
            guided = current.shape[0] == 2 * self.batch  # diffusers batches [negatives; positives] for CFG
            updates = {"prompt_embeds": _cfg_layout(embeds["negative_prompt_embeds"], embeds["prompt_embeds"],
                                                    guided).to(current.device, current.dtype)}
            if "add_text_embeds" in tensors:
                updates["add_text_embeds"] = _cfg_layout(
                    embeds["negative_pooled_prompt_embeds"], embeds["pooled_prompt_embeds"], guided
                ).to(tensors["add_text_embeds"].device, tensors["add_text_embeds"].dtype)
            return updates

        return on_step_end


def _cfg_layout(negative: torch.Tensor, positive: torch.Tensor, guided: bool) -> torch.Tensor:
    return torch.cat([negative, positive]) if guided else positive


def encode_prompts(pipeline: Any, prompts: Sequence[str], negative_prompts: Sequence[str], *, steps: int = 1,
                   hires_steps: int | None = None, clip_skip: int = 1,
                   embeddings: Mapping[str, TextualInversion] | None = None) -> Conditioning:
    """Encode a batch's prompts at every step of their A1111 schedules over ``steps`` model calls
    (``hires_steps`` for a hires-fix pass, whose editing steps count on from ``steps``)."""
    if len(prompts) != len(negative_prompts):
        raise ValueError("one negative prompt per prompt")
    rows = [scheduled_prompts(p, steps, hires_steps=hires_steps) for p in prompts]
    rows += [scheduled_prompts(n, steps, negative=True, hires_steps=hires_steps) for n in negative_prompts]
    texts: dict[ParsedPrompt, int] = {}
    schedules = [[(last, texts.setdefault(parsed, len(texts))) for last, parsed in row] for row in rows]
    encoded = encode_texts(pipeline, list(texts), clip_skip=clip_skip, embeddings=embeddings)
    hidden = list(encoded.hidden)
    pooled = encoded.pooled
    if pooled is not None and "" in negative_prompts:  # SDXL, as A1111: an empty negative is all zeros
        zero = len(hidden)
        hidden.append(torch.zeros_like(hidden[0][:EMPTY_CHUNK_TOKENS]))
        pooled = torch.cat([pooled, torch.zeros_like(pooled[:1])])
        for row, negative in enumerate(negative_prompts):
            if negative == "":
                schedules[len(prompts) + row] = [(steps if hires_steps is None else hires_steps, zero)]
    length = max(text.shape[0] for text in hidden)
    padded = torch.stack([_padded(text, length, encoded.padding) for text in hidden])
    token_mask = torch.stack([torch.arange(length) < text.shape[0] for text in hidden])
    return Conditioning(padded, token_mask, pooled, schedules, len(prompts), encoded.embeddings_used)


def _padded(text: torch.Tensor, length: int, padding: torch.Tensor | None) -> torch.Tensor:
    if text.shape[0] == length:
        return text
    if padding is None:  # only SDXL's zero rows can be shorter without an encoded padding chunk
        padding = torch.zeros_like(text[:EMPTY_CHUNK_TOKENS])
    return torch.cat([text, padding.repeat((length - text.shape[0]) // padding.shape[0], 1)])


@contextmanager
def masked_cross_attention(unet: torch.nn.Module, mask_at: Callable[[], torch.Tensor] | torch.Tensor | None
                           ) -> Iterator[None]:
    """Hide padded prompt tokens from every UNet call in the block; ``mask_at`` gives the current
    (2 × batch, tokens) mask in the CFG order [negatives; positives] (or is that mask)."""
    if mask_at is None:
        yield
        return
    current = mask_at if callable(mask_at) else (lambda: mask_at)

    def add_mask(_module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        mask = current()
        batch = mask.shape[0] // 2
        hidden = kwargs.get("encoder_hidden_states", args[2] if len(args) > 2 else None)
        rows = hidden.shape[0]
        if rows not in (batch, 2 * batch) or hidden.shape[1] != mask.shape[1]:
            raise RuntimeError(f"cross-attention mask for {2 * batch}×{mask.shape[1]} tokens does not fit "
                               f"encoder_hidden_states of shape {tuple(hidden.shape)}")
        kwargs["encoder_attention_mask"] = (mask if rows == 2 * batch else mask[batch:]).to(hidden.device)
        return args, kwargs

    handle = unet.register_forward_pre_hook(add_mask, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def prompt_conditioning(pipeline: Any, prompts: Sequence[str], negative_prompts: Sequence[str], *,
                        steps: int = 1, hires_steps: int | None = None, clip_skip: int = 1,
                        embeddings: Mapping[str, TextualInversion] | None = None) -> Iterator[dict[str, Any]]:
    """Keyword arguments for ``pipeline(**kwargs, …)``: the embeds, plus a step callback when a prompt
    changes during sampling. ``steps`` is the number of model calls A1111 counts (``schedule_steps``).
    Run every pipeline call that uses them inside the block, so padded tokens stay masked."""
    with torch.inference_mode():
        conditioning = encode_prompts(pipeline, prompts, negative_prompts, steps=steps, hires_steps=hires_steps,
                                      clip_skip=clip_skip, embeddings=embeddings)
    kwargs: dict[str, Any] = conditioning.embeds_at(0)
    if conditioning.changes:
        kwargs["callback_on_step_end"] = conditioning.step_callback()
        kwargs["callback_on_step_end_tensor_inputs"] = [
            name for name in ("prompt_embeds", "add_text_embeds") if name in pipeline._callback_tensor_inputs]
    mask = (lambda: conditioning.mask_at(conditioning.call)) if conditioning.padded else None
    with masked_cross_attention(pipeline.unet, mask):
        yield kwargs
