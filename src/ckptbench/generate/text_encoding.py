"""CLIP text encoders as A1111 uses them: 77-token chunks in, weighted hidden states out.

Each text is cut into chunks (``chunks.py``), every chunk is encoded, each token's hidden state is scaled
by its emphasis weight and the result rescaled so its mean is unchanged (A1111's "Original" emphasis:
``z = z * w; z = z * (mean_before / mean_after)``), and the chunks are joined along the sequence.

A1111 encodes all texts of one prompt's schedule (prompt editing, alternation: one text per schedule entry,
repeats included) as one batch, chunk position by chunk position: a text with fewer chunks than the longest
gets the empty chunk there, and the mean is restored over the whole batch of that position. ``encode_schedules``
does the same per schedule, so a text's conditioning depends on the other texts of its own schedule as in
A1111, and on nothing else (A1111 with batch size 1).

Clip skip (A1111 meaning: 1 = the last layer) applies to SD1.x/SD2.x: ``clip_skip = n`` takes the n-th
hidden state from the end and passes it through the encoder's final layer norm, as A1111 does for SD1.x.
(diffusers' SD2.x text encoder already ends at the penultimate layer, which is what A1111 always uses for
SD2.x; A1111 ignores clip skip there, ckptbench applies it, as ComfyUI does.)
SDXL follows A1111's defaults: the penultimate hidden state of both encoders without the final norm,
clip skip ignored (logged), and the pooled vector from encoder 2's first chunk.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from ckptbench.errors import CkptbenchError
from ckptbench.generate.chunks import TokenChunk, embedding_lookup, empty_chunk, prompt_chunks
from ckptbench.generate.embeddings import SINGLE, TextualInversion
from ckptbench.prompt import ParsedPrompt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncoderRecipe:
    """One CLIP text encoder of a pipeline and how A1111 reads its output."""

    tokenizer: Any
    encoder: Any
    layer_from_end: int  # 1 = last hidden state
    final_norm: bool  # pass a hidden state other than the last through the final layer norm
    embedding_part: str  # which vectors of a textual-inversion file belong to this encoder
    pooled: bool = False  # also return the projected pooled output (SDXL encoder 2)


def encoder_recipes(pipeline: Any, clip_skip: int) -> list[EncoderRecipe]:
    """Dispatch on the pipeline's text encoders: SDXL has two, SD1.x/SD2.x one."""
    if getattr(pipeline, "text_encoder_2", None) is not None:
        if pipeline.text_encoder is None:
            raise CkptbenchError("SDXL pipelines without the first text encoder (refiners) are not supported.")
        if clip_skip != 1:
            log.warning("clip_skip = %d is ignored for SDXL, as in A1111 (which always takes the penultimate "
                        "layer of both text encoders)", clip_skip)
        return [EncoderRecipe(pipeline.tokenizer, pipeline.text_encoder, 2, False, "clip_l"),
                EncoderRecipe(pipeline.tokenizer_2, pipeline.text_encoder_2, 2, False, "clip_g", pooled=True)]
    layers = pipeline.text_encoder.config.num_hidden_layers
    if not 1 <= clip_skip <= layers:
        raise CkptbenchError(f"clip_skip = {clip_skip} is out of range: this text encoder has {layers} layers; "
                             f"use 1 to {layers}.")
    return [EncoderRecipe(pipeline.tokenizer, pipeline.text_encoder, clip_skip, True, SINGLE)]


@dataclass(frozen=True)
class EncodedTexts:
    """Per schedule, each entry's hidden states, (tokens, width) with SDXL's two encoders side by side
    (entries of one schedule have equal length); the encoding of the empty chunk alone (what A1111 pads
    shorter prompts with); SDXL's pooled vectors (entries, width) per schedule; the textual-inversion
    embeddings that were applied."""

    hidden: list[list[torch.Tensor]]
    padding: torch.Tensor
    pooled: list[torch.Tensor] | None
    embeddings_used: tuple[str, ...]


def encode_schedules(pipeline: Any, schedules: Sequence[Sequence[ParsedPrompt]], *, clip_skip: int = 1,
                     embeddings: Mapping[str, TextualInversion] | None = None) -> EncodedTexts:
    """Encode each schedule's texts as A1111 encodes one prompt's schedule, every distinct chunk once."""
    recipes = encoder_recipes(pipeline, clip_skip)
    usable = _compatible(embeddings or {}, recipes)
    per_encoder: list[list[torch.Tensor]] = []
    pads: list[torch.Tensor] = []
    pooled: list[torch.Tensor] | None = None
    used: set[str] = set()
    for recipe in recipes:
        lookup = embedding_lookup(recipe.tokenizer, [(name, e.vector_count) for name, e in usable.items()])
        texts = {text: prompt_chunks(text, recipe.tokenizer, lookup) for schedule in schedules for text in schedule}
        used |= {name for chunks in texts.values() for chunk in chunks for _, name in chunk.embeddings}
        empty = empty_chunk(recipe.tokenizer)
        distinct = list(dict.fromkeys([empty, *(chunk for chunks in texts.values() for chunk in chunks)]))
        vectors = {name: e.vectors[recipe.embedding_part] for name, e in usable.items()}
        raw, raw_pooled = _encode_chunks(recipe, distinct, vectors)
        row = {chunk: index for index, chunk in enumerate(distinct)}
        pads.append(raw[0])  # the empty chunk alone: masked padding between texts of different schedules
        encoded, pooled_rows = [], []
        for schedule in schedules:
            chunk_lists = [texts[text] for text in schedule]
            positions = []
            for position in range(max(len(chunks) for chunks in chunk_lists)):
                batch = [chunks[position] if position < len(chunks) else empty for chunks in chunk_lists]
                weights = torch.tensor([chunk.weights for chunk in batch], dtype=torch.float32, device=raw.device)
                positions.append(apply_emphasis(raw[[row[chunk] for chunk in batch]], weights))
            encoded.append(torch.cat(positions, dim=1))  # (entries, chunks × 77, width)
            if recipe.pooled and raw_pooled is not None:  # A1111 pools the first chunk of each text
                pooled_rows.append(raw_pooled[[row[chunks[0]] for chunks in chunk_lists]])
        per_encoder.append(encoded)
        if recipe.pooled:
            pooled = pooled_rows
    hidden = [list(torch.cat([encoder[index] for encoder in per_encoder], dim=-1).unbind(0))
              for index in range(len(schedules))]
    return EncodedTexts(hidden, torch.cat(pads, dim=-1), pooled, tuple(sorted(used)))


def _compatible(embeddings: Mapping[str, TextualInversion], recipes: list[EncoderRecipe]
                ) -> dict[str, TextualInversion]:
    """Embeddings that fit these encoders; others stay words, as A1111 skips them."""
    usable: dict[str, TextualInversion] = {}
    for name, embedding in embeddings.items():
        widths = {part: tensor.shape[-1] for part, tensor in embedding.vectors.items()}
        needed = {r.embedding_part: r.encoder.get_input_embeddings().embedding_dim for r in recipes}
        if all(widths.get(part) == width for part, width in needed.items()):
            usable[name] = embedding
        else:
            log.warning("embedding '%s' does not fit this model (it has %s, the text encoder needs %s); its "
                        "name is encoded as plain words, as A1111 does", name, widths, needed)
    return usable


def _encode_chunks(recipe: EncoderRecipe, chunks: list[TokenChunk], vectors: Mapping[str, torch.Tensor]
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    encoder, tokenizer = recipe.encoder, recipe.tokenizer
    device = encoder.device
    tokens = torch.tensor([chunk.tokens for chunk in chunks], dtype=torch.long)
    if tokenizer.pad_token_id != tokenizer.eos_token_id:  # OpenCLIP encoders pad after the first EOS
        first_eos = (tokens == tokenizer.eos_token_id).int().argmax(dim=1, keepdim=True)
        after = torch.arange(tokens.shape[1]).unsqueeze(0) > first_eos
        tokens = tokens.masked_fill(after, tokenizer.pad_token_id)
    placements = [(row, position, vectors[name]) for row, chunk in enumerate(chunks)
                  for position, name in chunk.embeddings]
    want_hidden = recipe.layer_from_end > 1
    with _inserted_vectors(encoder, placements):
        output = encoder(tokens.to(device), output_hidden_states=want_hidden)
    if want_hidden:
        z = output.hidden_states[-recipe.layer_from_end]
        if recipe.final_norm:
            z = _final_layer_norm(encoder)(z)
    else:
        z = output.last_hidden_state
    return z, (output.text_embeds if recipe.pooled else None)


def apply_emphasis(z: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """A1111's emphasis on a batch of chunks (texts, tokens, width) at one chunk position: scale each token,
    then restore the mean of the whole batch (``sd_emphasis.EmphasisOriginal``)."""
    z32 = z.float()
    original_mean = z32.mean()
    scaled = z32 * weights.unsqueeze(-1).expand(z32.shape)
    return (scaled * (original_mean / scaled.mean())).to(z.dtype)


def _final_layer_norm(encoder: Any) -> torch.nn.Module:
    norm = getattr(encoder, "final_layer_norm", None)
    return norm if norm is not None else encoder.text_model.final_layer_norm


@contextmanager
def _inserted_vectors(encoder: Any, placements: list[tuple[int, int, torch.Tensor]]) -> Iterator[None]:
    """Put embedding vectors in place of placeholder tokens, as A1111's ``EmbeddingsWithFixes`` does."""
    if not placements:
        yield
        return

    def replace(_module: torch.nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        output = output.clone()
        for row, position, tensor in placements:
            output[row, position : position + tensor.shape[0]] = tensor.to(output.device, output.dtype)
        return output

    handle = encoder.get_input_embeddings().register_forward_hook(replace)
    try:
        yield
    finally:
        handle.remove()
