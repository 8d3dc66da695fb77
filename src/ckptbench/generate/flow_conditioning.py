"""Prompt conditioning of the flow families (Flux.1, SD3.5), as Forge's text engines compute it.

* A1111 prompt syntax is parsed as for the SD families: ``(word:1.2)`` weights apply to every encoder
  (Forge applies them to CLIP and T5 alike, with A1111's "Original" emphasis: scale each token's hidden
  state, then restore the chunk's mean), ``BREAK`` starts a new chunk, ``<lora:…>`` tags act as LoRAs.
  Prompt editing and alternation (``[a:b:0.5]``, ``[a|b]``) change the text during sampling, which these
  families' sampling loop here does not do: such prompts are refused with a message, never dropped.
* CLIP encoders see A1111's 77-token chunks (``chunks.py``); the pooled vector is the first chunk's.
* T5 sees the whole prompt, untruncated (Forge and ComfyUI do not cut it at 77 or 512 tokens): the tokens
  of the weighted runs, then ``</s>``, padded with ``<pad>`` to at least ``t5_min_length`` tokens (256
  for Flux as Forge and ComfyUI pad, 77 for SD3.5 as ComfyUI does).
* Flux conditions on T5's sequence and CLIP-L's pooled output; SD3.5 on [CLIP-L ‖ CLIP-G] (penultimate
  layers, zero-padded to T5's width) followed by T5 along the sequence, and [CLIP-L pooled ‖ CLIP-G
  projected pooled].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ckptbench.errors import CkptbenchError
from ckptbench.generate.chunks import prompt_chunks
from ckptbench.generate.text_encoding import apply_emphasis
from ckptbench.models.families import get_family
from ckptbench.models.families.flow import editing_refusal
from ckptbench.prompt import Break, ParsedPrompt, WeightedText, scheduled_prompts


@dataclass(frozen=True)
class FlowConditioning:
    """One text's conditioning: the sequence (tokens, width) and the pooled vector (width,)."""

    sequence: torch.Tensor
    pooled: torch.Tensor


def parse_for_flow(prompt: str, family: str, negative: bool = False) -> ParsedPrompt:
    schedule = scheduled_prompts(prompt, 1000, negative=negative)
    if len(schedule) > 1:
        raise CkptbenchError(editing_refusal(prompt, family))
    return schedule[0][1]


def t5_tokens(parsed: ParsedPrompt, tokenizer: Any, min_length: int) -> list[tuple[list[int], list[float]]]:
    """Forge's T5 chunks: each ``BREAK``-separated part's tokens and weights, ``</s>``, padding to ``min_length``."""
    chunks: list[tuple[list[int], list[float]]] = []
    tokens: list[int] = []
    weights: list[float] = []

    def close() -> None:
        nonlocal tokens, weights
        tokens, weights = [*tokens, tokenizer.eos_token_id], [*weights, 1.0]
        padding = max(0, min_length - len(tokens))
        chunks.append((tokens + [tokenizer.pad_token_id] * padding, weights + [1.0] * padding))
        tokens, weights = [], []

    for segment in parsed.segments:
        if isinstance(segment, Break):
            close()
        elif isinstance(segment, WeightedText) and segment.text:
            ids = tokenizer(segment.text, add_special_tokens=False)["input_ids"]
            tokens += ids
            weights += [segment.weight] * len(ids)
    if tokens or not chunks:
        close()
    return chunks


@torch.no_grad()
def encode_t5(encoder: Any, tokenizer: Any, parsed: ParsedPrompt, min_length: int) -> torch.Tensor:
    parts = []
    for tokens, weights in t5_tokens(parsed, tokenizer, min_length):
        z = encoder(torch.tensor([tokens], device=encoder.device)).last_hidden_state
        parts.append(apply_emphasis(z, torch.tensor([weights], device=z.device))[0])
    return torch.cat(parts)


@torch.no_grad()
def encode_clip(encoder: Any, tokenizer: Any, parsed: ParsedPrompt, layer_from_end: int, projected: bool
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """A1111 chunks through one CLIP encoder: (tokens, width) hidden states with emphasis, and the first
    chunk's pooled vector (projected by the model's text projection when ``projected``)."""
    chunks = prompt_chunks(parsed, tokenizer)
    tokens = torch.tensor([chunk.tokens for chunk in chunks], device=encoder.device)
    if tokenizer.pad_token_id != tokenizer.eos_token_id:  # OpenCLIP pads after the first end token
        first_eos = (tokens == tokenizer.eos_token_id).int().argmax(dim=1, keepdim=True)
        after = torch.arange(tokens.shape[1], device=tokens.device).unsqueeze(0) > first_eos
        tokens = tokens.masked_fill(after, tokenizer.pad_token_id)
    output = encoder(tokens, output_hidden_states=True)
    hidden = output.hidden_states[-layer_from_end] if layer_from_end > 1 else output.last_hidden_state
    weights = torch.tensor([chunk.weights for chunk in chunks], device=hidden.device)
    hidden = apply_emphasis(hidden, weights).reshape(-1, hidden.shape[-1])
    pooled = output.text_embeds if projected else output.pooler_output
    return hidden, pooled[0]


def flux_conditioning(pipeline: Any, parsed: ParsedPrompt) -> FlowConditioning:
    """Flux: T5's sequence (untruncated, min 256) and CLIP-L's pooled output (last layer, as Forge)."""
    _, pooled = encode_clip(pipeline.text_encoder, pipeline.tokenizer, parsed, 1, projected=False)
    sequence = encode_t5(pipeline.text_encoder_2, pipeline.tokenizer_2, parsed, 256)
    return FlowConditioning(sequence, pooled)


def sd35_conditioning(pipeline: Any, parsed: ParsedPrompt) -> FlowConditioning:
    """SD3.5: [CLIP-L ‖ CLIP-G] penultimate layers zero-padded to T5's width, then T5 (min 77), as ComfyUI."""
    clip_l, pooled_l = encode_clip(pipeline.text_encoder, pipeline.tokenizer, parsed, 2, projected=True)
    clip_g, pooled_g = encode_clip(pipeline.text_encoder_2, pipeline.tokenizer_2, parsed, 2, projected=True)
    t5 = encode_t5(pipeline.text_encoder_3, pipeline.tokenizer_3, parsed, 77)
    clip = torch.cat([clip_l, clip_g], dim=-1)
    clip = torch.nn.functional.pad(clip, (0, t5.shape[-1] - clip.shape[-1]))
    return FlowConditioning(torch.cat([clip, t5.to(clip.dtype)]), torch.cat([pooled_l, pooled_g]))


def encode_flow_prompts(pipeline: Any, family: str, texts: Sequence[str], negative: bool = False
                        ) -> list[FlowConditioning]:
    encode = get_family(family).condition
    cache: dict[str, FlowConditioning] = {}
    for text in texts:
        if text not in cache:
            cache[text] = encode(pipeline, parse_for_flow(text, family, negative))
    return [cache[text] for text in texts]
