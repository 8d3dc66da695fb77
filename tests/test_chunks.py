"""A1111's 75-token chunks: boundaries, BREAK, the comma backtrack, weights and embedding positions."""

from __future__ import annotations

import pytest

from ckptbench.generate.chunks import (
    PLACEHOLDER_TOKEN,
    embedding_lookup,
    empty_chunk,
    prompt_chunks,
)
from ckptbench.models.tokenizer import clip_tokenizer
from ckptbench.prompt import parse_prompt

BOS, EOS, COMMA = 49406, 49407, 267


@pytest.fixture(scope="module")
def tokenizer():
    return clip_tokenizer()


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def content(chunk) -> list[int]:
    """The chunk's tokens between BOS and the first padding EOS."""
    assert chunk.tokens[0] == BOS and len(chunk.tokens) == 77 and chunk.tokens[-1] == EOS
    body = list(chunk.tokens[1:-1])
    return body[: body.index(EOS)] if EOS in body else body


def test_short_prompt_is_one_padded_chunk(tokenizer) -> None:
    (chunk,) = prompt_chunks(parse_prompt("a red cube"), tokenizer)
    assert content(chunk) == ids(tokenizer, "a red cube")
    assert chunk.tokens == (BOS, *ids(tokenizer, "a red cube"), *[EOS] * 72, EOS)
    assert chunk.weights == (1.0,) * 77


def test_empty_prompt_is_the_empty_chunk(tokenizer) -> None:
    assert prompt_chunks(parse_prompt(""), tokenizer) == [empty_chunk(tokenizer)]
    assert empty_chunk(tokenizer).tokens == (BOS, *[EOS] * 76)


def test_weights_follow_their_tokens(tokenizer) -> None:
    (chunk,) = prompt_chunks(parse_prompt("a (red cube:1.5) [on] grass"), tokenizer)
    words = ["a", "red", "cube", "on", "grass"]
    assert content(chunk) == [ids(tokenizer, w)[0] for w in words]
    assert chunk.weights[:7] == pytest.approx([1.0, 1.0, 1.5, 1.5, 1 / 1.1, 1.0, 1.0])


def test_long_prompt_without_commas_is_cut_at_75(tokenizer) -> None:
    chunks = prompt_chunks(parse_prompt("cat " * 80), tokenizer)
    assert [len(content(c)) for c in chunks] == [75, 5]


def test_exactly_75_tokens_is_one_chunk(tokenizer) -> None:
    assert [len(content(c)) for c in prompt_chunks(parse_prompt("cat " * 75), tokenizer)] == [75]
    assert [len(content(c)) for c in prompt_chunks(parse_prompt("cat " * 76), tokenizer)] == [75, 1]


def test_a_comma_within_20_tokens_moves_the_phrase_to_the_next_chunk(tokenizer) -> None:
    # 70 words, a comma (token 71), 10 words: the chunk fills at 75 with its last comma 5 tokens back,
    # so the 4 words after the comma move on with the rest of their phrase.
    chunks = prompt_chunks(parse_prompt("cat " * 70 + ", " + "dog " * 10), tokenizer)
    assert [len(content(c)) for c in chunks] == [71, 10]
    assert content(chunks[0])[-1] == COMMA
    assert content(chunks[1]) == [ids(tokenizer, "dog")[0]] * 10


def test_a_comma_further_back_than_20_tokens_does_not_move_anything(tokenizer) -> None:
    chunks = prompt_chunks(parse_prompt("cat " * 50 + ", " + "dog " * 30), tokenizer)
    assert [len(content(c)) for c in chunks] == [75, 6]


def test_the_moved_tokens_keep_their_weights(tokenizer) -> None:
    chunks = prompt_chunks(parse_prompt("cat " * 70 + ", (dog:1.3) " * 1 + "(dog:1.3) " * 9), tokenizer)
    assert [len(content(c)) for c in chunks] == [71, 10]
    assert chunks[1].weights[1:11] == pytest.approx([1.3] * 10)


def test_break_pads_the_chunk_and_starts_another(tokenizer) -> None:
    chunks = prompt_chunks(parse_prompt("a cat BREAK a dog"), tokenizer)
    assert [content(c) for c in chunks] == [ids(tokenizer, "a cat"), ids(tokenizer, "a dog")]
    assert len(prompt_chunks(parse_prompt("a cat BREAK"), tokenizer)) == 1  # nothing after it: no empty chunk


def test_embedding_names_become_placeholder_positions(tokenizer) -> None:
    lookup = embedding_lookup(tokenizer, [("EasyNegative", 3), ("easy", 2)])
    (chunk,) = prompt_chunks(parse_prompt("lowres, (easynegative:1.2), easy"), tokenizer, lookup)
    lowres = ids(tokenizer, "lowres")
    start = 1 + len(lowres) + 1  # BOS, lowres, comma
    # The longer name wins where both match; the name's tokens give way to one position per vector.
    assert chunk.embeddings == ((start, "EasyNegative"), (start + 4, "easy"))
    assert chunk.tokens[start : start + 3] == (PLACEHOLDER_TOKEN,) * 3
    assert chunk.weights[start : start + 3] == pytest.approx([1.2] * 3)
    assert chunk.tokens[start + 3] == COMMA


def test_an_embedding_that_does_not_fit_starts_a_new_chunk(tokenizer) -> None:
    lookup = embedding_lookup(tokenizer, [("EasyNegative", 8)])
    chunks = prompt_chunks(parse_prompt("cat " * 70 + "EasyNegative"), tokenizer, lookup)
    assert [len(content(c)) for c in chunks] == [70, 8]
    assert chunks[1].embeddings == ((1, "EasyNegative"),)


def test_embeddings_move_with_the_phrase_after_a_comma(tokenizer) -> None:
    lookup = embedding_lookup(tokenizer, [("EasyNegative", 2)])
    chunks = prompt_chunks(parse_prompt("cat " * 70 + ", dog EasyNegative dog dog dog"), tokenizer, lookup)
    assert [len(content(c)) for c in chunks] == [71, 6]
    assert chunks[0].embeddings == ()
    assert chunks[1].embeddings == ((2, "EasyNegative"),)
