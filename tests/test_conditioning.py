"""Prompt conditioning against hand-computed A1111 expectations on the tiny SD1.5-architecture encoder."""

from __future__ import annotations

import copy

import pytest
import torch

from ckptbench.demo.tiny import tiny_sd15_pipeline
from ckptbench.errors import CkptbenchError
from ckptbench.generate.conditioning import encode_prompts
from ckptbench.generate.embeddings import SINGLE, TextualInversion
from ckptbench.generate.samplers import resolve_sampler
from ckptbench.generate.samplers.run import SamplingModel, txt2img
from ckptbench.generate.text_encoding import apply_emphasis

BOS, EOS = 49406, 49407


@pytest.fixture(scope="module")
def pipe():
    return tiny_sd15_pipeline(seed=1)


def word_ids(pipe, *words: str) -> list[int]:
    return [i for w in words for i in pipe.tokenizer(w, add_special_tokens=False)["input_ids"]]


def chunk_ids(pipe, *words: str) -> torch.Tensor:
    body = word_ids(pipe, *words)
    return torch.tensor([[BOS, *body, *[EOS] * (76 - len(body))]])


@torch.inference_mode()
def hidden(pipe, ids: torch.Tensor, from_end: int = 1) -> torch.Tensor:
    encoder = pipe.text_encoder
    if from_end == 1:
        return encoder(ids).last_hidden_state[0]
    return encoder.final_layer_norm(encoder(ids, output_hidden_states=True).hidden_states[-from_end])[0]


@torch.inference_mode()
def embeds(pipe, prompt: str, negative: str = "", **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    conditioning = encode_prompts(pipe, [prompt], [negative], **kwargs)
    return conditioning.embeds["prompt_embeds"][0], conditioning.embeds["negative_prompt_embeds"][0]


def test_plain_prompts_match_diffusers_own_encoding(pipe) -> None:
    with torch.inference_mode():
        reference, negative_reference = pipe.encode_prompt("a red cube", "cpu", 1, True, "blurry, dark")
    positive, negative = embeds(pipe, "a red cube", "blurry, dark")
    torch.testing.assert_close(positive, reference[0], rtol=0, atol=0)
    torch.testing.assert_close(negative, negative_reference[0], rtol=0, atol=0)


@pytest.mark.parametrize(("prompt", "weights"), [
    ("a (red:1.5) cube", {2: 1.5}),
    ("((a)) red [cube]", {1: 1.21, 3: 1 / 1.1}),
    ("a (red cube:0.5)", {2: 0.5, 3: 0.5}),
])
def test_emphasis_is_a1111s_scale_then_restore_the_mean(pipe, prompt: str, weights: dict[int, float]) -> None:
    h = hidden(pipe, chunk_ids(pipe, "a", "red", "cube"))  # (77, width): per-token hidden states
    w = torch.ones(77)
    for position, weight in weights.items():
        w[position] = weight
    expected = h * w[:, None]
    expected = expected * (h.mean() / expected.mean())
    positive, _ = embeds(pipe, prompt)
    torch.testing.assert_close(positive, expected, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(positive, h, atol=1e-4)  # the weights did change the conditioning
    assert positive.mean().item() == pytest.approx(h.mean().item(), rel=1e-5)


def a1111_emphasis(z: torch.Tensor, multipliers: torch.Tensor) -> torch.Tensor:
    """``sd_emphasis.EmphasisOriginal.after_transformers`` (A1111 v1.10) on one chunk position's batch."""
    original_mean = z.mean()
    z = z * multipliers.reshape((*multipliers.shape, 1)).expand(z.shape)
    new_mean = z.mean()
    return z * (original_mean / new_mean)


def test_emphasis_on_a_batch_of_chunks_restores_the_batch_mean() -> None:
    z = torch.randn(3, 77, 8) + 0.3
    weights = torch.rand(3, 77) + 0.5
    out = apply_emphasis(z, weights)
    torch.testing.assert_close(out.mean(), z.mean())
    torch.testing.assert_close(out, a1111_emphasis(z, weights), rtol=0, atol=0)
    assert (out.mean(dim=(1, 2)) - z.mean(dim=(1, 2))).abs().max() > 1e-3  # not each chunk's own mean


@pytest.mark.parametrize(("prompt", "entries"), [
    # A1111 encodes a schedule's texts as one batch, one entry per schedule step, repeats included
    ("a [(red:1.5)|blue] cube", ["a (red:1.5) cube", "a blue cube", "a (red:1.5) cube", "a blue cube"]),
    ("a [(red:1.5)|blue|green] cube", ["a (red:1.5) cube", "a blue cube", "a green cube", "a (red:1.5) cube"]),
    ("a [(red:1.5):blue:3] (cube:0.8)", ["a (red:1.5) (cube:0.8)", "a blue (cube:0.8)"]),
])
def test_a_schedules_texts_share_one_emphasis_mean(pipe, prompt: str, entries: list[str]) -> None:
    """Issue 12: A1111 restores the mean over the batch of all texts of one prompt's schedule."""
    words = {"a (red:1.5) cube": (["a", "red", "cube"], {2: 1.5}), "a blue cube": (["a", "blue", "cube"], {}),
             "a green cube": (["a", "green", "cube"], {}),
             "a (red:1.5) (cube:0.8)": (["a", "red", "cube"], {2: 1.5, 3: 0.8}),
             "a blue (cube:0.8)": (["a", "blue", "cube"], {3: 0.8})}
    z = torch.stack([hidden(pipe, chunk_ids(pipe, *words[text][0])) for text in entries])
    multipliers = torch.ones(len(entries), 77)
    for row, text in enumerate(entries):
        for position, weight in words[text][1].items():
            multipliers[row, position] = weight
    expected = a1111_emphasis(z, multipliers)
    with torch.inference_mode():
        conditioning = encode_prompts(pipe, [prompt], [""], steps=4)
    ours = torch.stack([conditioning.hidden[text] for _, text in conditioning.schedules[0]])
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
    alone, _ = embeds(pipe, entries[0])
    assert (ours[0] - alone).abs().max() > 1e-4  # per text, the mean would differ


def test_texts_of_one_schedule_are_padded_like_a1111_without_a_mask(pipe) -> None:
    """A shorter text of a schedule gets the (batch-rescaled) empty chunk as real conditioning."""
    long_option = "cube " * 80
    with torch.inference_mode():
        conditioning = encode_prompts(pipe, [f"a [sphere|{long_option}]"], ["blurry"], steps=4)
    first, second = (hidden(pipe, chunk_ids(pipe, "a", "sphere")), hidden(pipe, torch.tensor(
        [[BOS, *word_ids(pipe, "a") + word_ids(pipe, "cube") * 74, EOS]])))
    empty = hidden(pipe, torch.tensor([[BOS, *[EOS] * 76]]))
    tail = hidden(pipe, torch.tensor([[BOS, *word_ids(pipe, "cube") * 6, *[EOS] * 70]]))
    expected_first_chunk = a1111_emphasis(torch.stack([first, second, first, second]), torch.ones(4, 77))
    expected_second_chunk = a1111_emphasis(torch.stack([empty, tail, empty, tail]), torch.ones(4, 77))
    sphere = conditioning.hidden[conditioning.schedules[0][0][1]]
    torch.testing.assert_close(sphere[:77], expected_first_chunk[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sphere[77:], expected_second_chunk[0], rtol=1e-5, atol=1e-6)
    # rows [prompt; negative]: the prompt's texts are all 154 tokens, the negative's padding is masked
    assert [conditioning.mask_at(call)[0].sum().item() for call in range(4)] == [154] * 4
    assert [conditioning.mask_at(call)[1].sum().item() for call in range(4)] == [77] * 4


def test_clip_skip_2_is_the_penultimate_layer_through_the_final_norm(pipe) -> None:
    ids = chunk_ids(pipe, "a", "red", "cube")
    skip1, _ = embeds(pipe, "a red cube")
    skip2, _ = embeds(pipe, "a red cube", clip_skip=2)
    skip3, _ = embeds(pipe, "a red cube", clip_skip=3)
    torch.testing.assert_close(skip1, hidden(pipe, ids, 1), rtol=0, atol=0)
    torch.testing.assert_close(skip2, hidden(pipe, ids, 2), rtol=0, atol=0)
    torch.testing.assert_close(skip3, hidden(pipe, ids, 3), rtol=0, atol=0)
    assert (skip1 - skip2).abs().max() > 0.1


def test_clip_skip_with_emphasis_weights_the_skipped_layer(pipe) -> None:
    h = hidden(pipe, chunk_ids(pipe, "a", "red", "cube"), 2)
    w = torch.ones(77)
    w[2] = 1.3
    expected = h * w[:, None] * (h.mean() / (h * w[:, None]).mean())
    positive, _ = embeds(pipe, "a (red:1.3) cube", clip_skip=2)
    torch.testing.assert_close(positive, expected, rtol=1e-6, atol=1e-6)


def test_clip_skip_beyond_the_encoder_is_an_error(pipe) -> None:
    with pytest.raises(CkptbenchError, match="clip_skip = 4 is out of range"):
        embeds(pipe, "a cat", clip_skip=4)


def test_long_prompts_are_chunks_encoded_apart_and_joined(pipe) -> None:
    prompt = "cat " * 80
    positive, negative = embeds(pipe, prompt)
    assert positive.shape == (154, 32)
    cat = word_ids(pipe, "cat")[0]
    first = torch.tensor([[BOS, *[cat] * 75, EOS]])
    second = torch.tensor([[BOS, *[cat] * 5, *[EOS] * 71]])
    torch.testing.assert_close(positive[:77], hidden(pipe, first), rtol=0, atol=1e-6)
    torch.testing.assert_close(positive[77:], hidden(pipe, second), rtol=0, atol=1e-6)
    # The one-chunk negative is padded with the empty prompt's chunk, which A1111 pads with.
    empty = hidden(pipe, torch.tensor([[BOS, *[EOS] * 76]]))
    torch.testing.assert_close(negative[:77], empty, rtol=0, atol=1e-6)
    torch.testing.assert_close(negative[77:], empty, rtol=0, atol=1e-6)


def test_padding_is_masked_so_each_prompt_is_evaluated_as_if_alone(pipe) -> None:
    with torch.inference_mode():
        conditioning = encode_prompts(pipe, ["cat " * 80, "a dog"], ["blurry", "cat " * 100])
        mask = conditioning.attention_mask
        # rows: positives then negatives, as A1111 batches them
        assert mask.shape == (4, 154)
        assert mask.sum(dim=1).tolist() == [154, 77, 77, 154]
        both = conditioning.guided_inputs(0)["encoder_hidden_states"]
        assert conditioning.guided_inputs(0)["encoder_attention_mask"].tolist() == mask.tolist()
        latents = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(0))
        timestep = torch.tensor(500)
        batched = pipe.unet(latents, timestep, encoder_hidden_states=both, encoder_attention_mask=mask).sample
        unmasked = pipe.unet(latents, timestep, encoder_hidden_states=both).sample
        for row, length in enumerate(mask.sum(dim=1).tolist()):
            alone = pipe.unet(latents[row : row + 1], timestep, encoder_hidden_states=both[row : row + 1, :length])
            # float32 batching alone moves outputs by ~5e-5; leaked padding moves them by ~1e-2
            torch.testing.assert_close(batched[row : row + 1], alone.sample, rtol=0, atol=3e-4)
            if length < 154:
                assert (unmasked[row] - alone.sample[0]).abs().max() > 5e-3


def test_equal_lengths_need_no_mask(pipe) -> None:
    with torch.inference_mode():
        assert encode_prompts(pipe, ["a cat", "cat " * 80], ["", "dog " * 80]).attention_mask is not None
        assert encode_prompts(pipe, ["a cat"], ["a dog"]).attention_mask is None


def test_an_embedding_equals_diffusers_textual_inversion(pipe) -> None:
    vectors = torch.randn(2, 32, generator=torch.Generator().manual_seed(5))
    embedding = TextualInversion("EasyNegative", None, {SINGLE: vectors})  # type: ignore[arg-type]
    ours, _ = embeds(pipe, "a cat, EasyNegative", embeddings={"EasyNegative": embedding})
    reference_pipe = copy.deepcopy(pipe)
    reference_pipe.load_textual_inversion({"<easyneg>": vectors}, token="<easyneg>")
    with torch.inference_mode():
        # diffusers expands "<easyneg>" to its two added tokens itself
        reference, _ = reference_pipe.encode_prompt("a cat, <easyneg>", "cpu", 1, False)
    torch.testing.assert_close(ours, reference[0], rtol=0, atol=1e-6)
    plain, _ = embeds(pipe, "a cat, EasyNegative")
    assert (plain - ours).abs().max() > 0.1


def test_an_embedding_of_another_width_is_left_as_words(pipe) -> None:
    embedding = TextualInversion("EasyNegative", None, {SINGLE: torch.randn(2, 768)})  # type: ignore[arg-type]
    with torch.inference_mode():
        conditioning = encode_prompts(pipe, ["EasyNegative"], [""], embeddings={"EasyNegative": embedding})
    plain, _ = embeds(pipe, "EasyNegative")
    assert conditioning.embeddings_used == ()
    torch.testing.assert_close(conditioning.embeds["prompt_embeds"][0], plain)


def test_composable_diffusion_is_refused_before_encoding(pipe) -> None:
    with pytest.raises(CkptbenchError, match="AND"):
        embeds(pipe, "a cat AND a dog")


def test_prompt_editing_switches_the_conditioning_at_its_step(pipe) -> None:
    red, _ = embeds(pipe, "a red cube")
    blue, _ = embeds(pipe, "a blue cube")
    with torch.inference_mode():
        conditioning = encode_prompts(pipe, ["a [red:blue:2] cube"], [""], steps=4)
    assert conditioning.changes and not conditioning.padded
    for call, expected in enumerate([red, red, red, blue, blue]):
        torch.testing.assert_close(conditioning.embeds_at(call)["prompt_embeds"][0], expected, rtol=0, atol=0)


def test_the_unet_sees_each_calls_conditioning(pipe) -> None:
    """Sample with Euler (one model call per step) and record what the UNet is given at every call."""
    with torch.inference_mode():
        conditioning = encode_prompts(pipe, ["a [red:blue:1] cube"], ["blurry"], steps=3)
    red, blue = (conditioning.hidden[text] for _, text in conditioning.schedules[0])
    negative = conditioning.hidden[conditioning.schedules[1][0][1]]
    seen: list[torch.Tensor] = []
    hook = pipe.unet.register_forward_pre_hook(
        lambda _m, args, kwargs: seen.append(kwargs["encoder_hidden_states"].clone()), with_kwargs=True)
    try:
        with torch.inference_mode():
            txt2img(SamplingModel.of(pipe), resolve_sampler("Euler"), conditioning, steps=3, cfg=7.0, seeds=[0],
                    width=64, height=64)
    finally:
        hook.remove()
    assert len(seen) == 3
    for call, positive in enumerate([red, red, blue]):  # calls 0 and 1 use "red", call 2 "blue"
        torch.testing.assert_close(seen[call][0], positive, rtol=0, atol=0)
        torch.testing.assert_close(seen[call][1], negative, rtol=0, atol=0)
