"""Parsed prompts → CLIP token chunks, exactly as A1111 cuts them.

A1111 encodes a prompt in chunks of 75 tokens, each wrapped as ``BOS + 75 + EOS`` (77 tokens, padded
with EOS) and encoded separately. A chunk closes when it is full or at ``BREAK``; when it fills up
within 20 tokens after a comma, the tokens after that comma move on to the next chunk, so a phrase is
not cut in half ("comma padding backtrack", 20 by default in A1111). Every token carries the emphasis
weight of the text it came from. A textual-inversion embedding whose name's tokens appear in the text
takes as many positions as it has vectors; those positions hold a placeholder token id that the
encoder replaces by the embedding's vectors.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ckptbench.prompt import ParsedPrompt, WeightedText

CHUNK_TOKENS = 75
COMMA_BACKTRACK = 20
PLACEHOLDER_TOKEN = 0  # what A1111 puts where an embedding's vectors go


@dataclass(frozen=True)
class EmbeddingName:
    """How a textual-inversion embedding is recognised in token ids, and how many positions it takes."""

    name: str
    token_ids: tuple[int, ...]
    vector_count: int


@dataclass(frozen=True)
class TokenChunk:
    """77 token ids, their emphasis weights, and where embeddings' vectors start: (position, name)."""

    tokens: tuple[int, ...]
    weights: tuple[float, ...]
    embeddings: tuple[tuple[int, str], ...] = ()


@dataclass
class _OpenChunk:
    tokens: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    embeddings: list[tuple[int, str]] = field(default_factory=list)

    def split_at(self, cut: int) -> _OpenChunk:
        """Move the tokens from ``cut`` on (with the embeddings among them) into a new chunk."""
        moved = _OpenChunk(self.tokens[cut:], self.weights[cut:],
                           [(position - cut, name) for position, name in self.embeddings if position >= cut])
        self.tokens, self.weights = self.tokens[:cut], self.weights[:cut]
        self.embeddings = [(position, name) for position, name in self.embeddings if position < cut]
        return moved


def special_ids(tokenizer: Any) -> tuple[int, int, int | None]:
    """(BOS, EOS, comma) token ids of a CLIP tokenizer."""
    # convert_tokens_to_ids looks one token up; get_vocab() would copy the 49,408-entry vocabulary per call.
    comma = tokenizer.convert_tokens_to_ids(",</w>")
    return tokenizer.bos_token_id, tokenizer.eos_token_id, None if comma == tokenizer.unk_token_id else comma


def tokenize_segments(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text, without special tokens or truncation (A1111 tokenizes weight runs apart)."""
    if not texts:
        return []
    encoded = tokenizer(list(texts), add_special_tokens=False, truncation=False, verbose=False)
    return [list(ids) for ids in encoded["input_ids"]]


def embedding_lookup(tokenizer: Any, embeddings: Sequence[tuple[str, int]]) -> dict[int, list[EmbeddingName]]:
    """Embeddings by the first token of their name, longest name first (A1111's matching order)."""
    lookup: dict[int, list[EmbeddingName]] = {}
    names = [name for name, _ in embeddings]
    for (name, count), ids in zip(embeddings, tokenize_segments(tokenizer, names), strict=True):
        if ids:
            lookup.setdefault(ids[0], []).append(EmbeddingName(name, tuple(ids), count))
    for candidates in lookup.values():
        candidates.sort(key=lambda e: len(e.token_ids), reverse=True)
    return lookup


def embedding_at(tokens: Sequence[int], position: int, lookup: dict[int, list[EmbeddingName]]
                 ) -> EmbeddingName | None:
    for candidate in lookup.get(tokens[position], ()):
        if tuple(tokens[position : position + len(candidate.token_ids)]) == candidate.token_ids:
            return candidate
    return None


def embeddings_in_tokens(tokens: Sequence[int], lookup: dict[int, list[EmbeddingName]]) -> Iterator[EmbeddingName]:
    """The embeddings a run of tokens uses, scanning as the chunker does."""
    position = 0
    while position < len(tokens):
        found = embedding_at(tokens, position, lookup)
        if found is not None:
            yield found
        position += len(found.token_ids) if found else 1


def prompt_chunks(parsed: ParsedPrompt, tokenizer: Any,
                  lookup: dict[int, list[EmbeddingName]] | None = None) -> list[TokenChunk]:
    """Cut a parsed prompt into A1111's 77-token chunks (at least one, even for an empty prompt)."""
    bos, eos, comma = special_ids(tokenizer)
    lookup = lookup or {}
    chunks: list[TokenChunk] = []
    chunk = _OpenChunk()
    last_comma = -1

    def close(current: _OpenChunk) -> None:
        nonlocal last_comma
        padding = CHUNK_TOKENS - len(current.tokens)
        chunks.append(TokenChunk(
            tokens=(bos, *current.tokens, *[eos] * padding, eos),
            weights=(1.0, *current.weights, *[1.0] * padding, 1.0),
            embeddings=tuple((position + 1, name) for position, name in current.embeddings),
        ))
        last_comma = -1

    segments = list(parsed.segments)
    texts = [s.text for s in segments if isinstance(s, WeightedText)]
    token_runs = iter(tokenize_segments(tokenizer, texts))
    for segment in segments:
        if not isinstance(segment, WeightedText):  # BREAK
            close(chunk)
            chunk = _OpenChunk()
            continue
        tokens = next(token_runs)
        position = 0
        while position < len(tokens):
            token = tokens[position]
            if token == comma:
                last_comma = len(chunk.tokens)
            elif (len(chunk.tokens) == CHUNK_TOKENS and last_comma != -1
                  and len(chunk.tokens) - last_comma <= COMMA_BACKTRACK):
                moved = chunk.split_at(last_comma + 1)
                close(chunk)
                chunk = moved
            if len(chunk.tokens) == CHUNK_TOKENS:
                close(chunk)
                chunk = _OpenChunk()
            embedding = embedding_at(tokens, position, lookup)
            if embedding is None:
                chunk.tokens.append(token)
                chunk.weights.append(segment.weight)
                position += 1
                continue
            if len(chunk.tokens) + embedding.vector_count > CHUNK_TOKENS:
                close(chunk)
                chunk = _OpenChunk()
            chunk.embeddings.append((len(chunk.tokens), embedding.name))
            chunk.tokens += [PLACEHOLDER_TOKEN] * embedding.vector_count
            chunk.weights += [segment.weight] * embedding.vector_count
            position += len(embedding.token_ids)
    if chunk.tokens or not chunks:
        close(chunk)
    return chunks


def empty_chunk(tokenizer: Any) -> TokenChunk:
    """The chunk of an empty prompt: what A1111 pads shorter prompts with."""
    bos, eos, _ = special_ids(tokenizer)
    return TokenChunk((bos, *[eos] * (CHUNK_TOKENS + 1)), (1.0,) * (CHUNK_TOKENS + 2))
