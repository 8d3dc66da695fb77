"""Prompt features end to end on the tiny model: they change the image, its key and its infotext."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from ckptbench.generate.base import FailedImage, GeneratedImage
from ckptbench.generate.diffusers_backend import DiffusersGenerator
from ckptbench.generate.embeddings import EmbeddingLibrary
from ckptbench.infotext import parse_infotext


def generate(jobs, checkpoint, batch_size: int = 4, embeddings: EmbeddingLibrary | None = None) -> list:
    return list(DiffusersGenerator(torch.device("cpu"), batch_size, embeddings=embeddings).generate(checkpoint, jobs))


def pixels(result) -> np.ndarray:
    assert isinstance(result, GeneratedImage), getattr(result, "error", "")
    return np.asarray(result.image, dtype=np.float32)


@pytest.fixture(scope="module")
def embedding_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("embeddings")
    vectors = torch.randn(2, 32, generator=torch.Generator().manual_seed(7)) * 3
    save_file({"emb_params": vectors}, str(folder / "EasyNegative.safetensors"))
    return folder


def test_clip_skip_changes_the_image_the_key_and_the_infotext(make_job, tiny_checkpoint) -> None:
    skip1, skip2 = make_job(clip_skip=1), make_job(clip_skip=2)
    assert skip1.key != skip2.key
    first, second = generate([skip1, skip2], tiny_checkpoint)
    assert np.abs(pixels(first) - pixels(second)).max() > 5
    assert "Clip skip" not in parse_infotext(first.infotext).parameters  # A1111 writes it only when > 1
    assert parse_infotext(second.infotext).parameters["Clip skip"] == "2"


def test_emphasis_changes_the_image(make_job, tiny_checkpoint) -> None:
    # The tiny random UNet barely listens to its prompt; the exact effect is checked on the conditioning.
    plain, weighted = generate([make_job("a red cube"), make_job("a (red cube:2)")], tiny_checkpoint)
    assert np.abs(pixels(plain) - pixels(weighted)).max() >= 2


def test_an_image_does_not_depend_on_its_batch(make_job, tiny_checkpoint) -> None:
    # The long prompt makes the batch's conditioning 154 tokens wide; the short prompt's padding is masked.
    short = make_job("a red cube", negative_prompt="blurry")
    long = make_job("a red cube, " * 30, negative_prompt="blurry", seed=2)
    (alone,) = generate([short], tiny_checkpoint, batch_size=1)
    together = {r.job.key: r for r in generate([short, long], tiny_checkpoint, batch_size=2)}
    assert np.abs(pixels(alone) - pixels(together[short.key])).max() <= 1.0


def test_a_refused_prompt_fails_alone_with_the_construct_named(make_job, tiny_checkpoint) -> None:
    good, bad = make_job("a red cube"), make_job("a red cube AND a blue sphere")
    results = {r.job.key: r for r in generate([good, bad], tiny_checkpoint)}
    assert isinstance(results[good.key], GeneratedImage)
    assert isinstance(results[bad.key], FailedImage)
    assert "A1111's 'AND' (composable diffusion)" in results[bad.key].error


def test_prompt_editing_switches_during_sampling(make_job, tiny_checkpoint) -> None:
    # Which embeds each model call gets is checked in test_conditioning; here: the backend applies it.
    jobs = {name: make_job(prompt) for name, prompt in {
        "red": "a red cube", "blue": "a blue cube", "switch": "a [red:blue:1] cube"}.items()}
    # One image per batch, so only the conditioning tells them apart (the tiny random UNet barely listens
    # to its prompt: the images differ by a level or two).
    results = {r.job.key: r for r in generate(list(jobs.values()), tiny_checkpoint, batch_size=1)}
    image = {name: pixels(results[job.key]) for name, job in jobs.items()}
    assert not np.array_equal(image["switch"], image["red"]) and not np.array_equal(image["switch"], image["blue"])


def test_an_embedding_in_the_negative_prompt_changes_the_image(make_job, tiny_checkpoint, embedding_dir) -> None:
    library = EmbeddingLibrary((embedding_dir,))
    used = library.used_in("lowres, EasyNegative", negative=True)
    assert used == ["EasyNegative"]
    sha = library.sha256("EasyNegative")
    without = make_job(negative_prompt="lowres, EasyNegative")
    with_embedding = make_job(negative_prompt="lowres, EasyNegative", embeddings=(("EasyNegative", sha),))
    assert without.key != with_embedding.key
    first, second = generate([without, with_embedding], tiny_checkpoint, embeddings=library)
    assert np.abs(pixels(first) - pixels(second)).max() > 5
    assert parse_infotext(second.infotext).parameters["TI hashes"] == f"EasyNegative: {sha[:12]}"


def test_a_job_naming_an_unreadable_embedding_fails_alone(make_job, tiny_checkpoint, tmp_path: Path) -> None:
    (tmp_path / "broken.safetensors").write_bytes(b"not a safetensors file")
    library = EmbeddingLibrary((tmp_path,))
    bad = make_job("broken", embeddings=(("broken", library.sha256("broken")),))
    good = make_job("a cat")
    results = {r.job.key: r for r in generate([bad, good], tiny_checkpoint, embeddings=library)}
    assert isinstance(results[good.key], GeneratedImage)
    assert "not a readable .safetensors file" in results[bad.key].error


def test_spec_keys_reach_the_images(write_spec, tiny_models, embedding_dir: Path) -> None:
    from ckptbench.runner import run_benchmark
    from ckptbench.spec_load import load_spec
    from ckptbench.store import Store

    spec_path = write_spec(
        checkpoints=f'[[checkpoints]]\nname = "a"\npath = "{tiny_models["folder_a"]}"',
        generation=(f'sampler = "DPM++ 2M Karras"\nsteps = 3\nwidth = 64\nheight = 64\nseeds = [1]\n'
                    f'clip_skip = 2\nembedding_dirs = ["{embedding_dir}"]\nnegative_prompt = "EasyNegative"'),
        suites='[[suites]]\nname = "quality"\nprompts = ["a (red:1.2) cube", "a blue sphere, easy_negative"]',
    )
    spec = load_spec(spec_path)
    assert spec.generation.clip_skip == 2 and spec.generation.embedding_dirs == (embedding_dir,)
    outcome = run_benchmark(spec)
    assert outcome.generated == 2 and not outcome.failed_checkpoints
    store = Store(outcome.store)
    try:
        run = store.run(outcome.run_id)
    finally:
        store.close()
    pngs = sorted((outcome.store / "images").rglob("*.png"))
    assert len(pngs) == 2
    for png in pngs:  # the PNGs carry the A1111 infotext
        with Image.open(png) as image:
            text = image.text["parameters"]
        parameters = parse_infotext(text).parameters
        assert parameters["Clip skip"] == "2"
        assert parameters["TI hashes"].startswith("EasyNegative: ")
        # the spec's pre-1.9 name, written as A1111 ≥ 1.9 writes it
        assert (parameters["Sampler"], parameters["Schedule type"], parameters["RNG"]) == ("DPM++ 2M", "Karras", "CPU")
    record = run["provenance"]["embeddings"]
    assert list(record["used"]) == ["EasyNegative"]
    assert record["near_misses"] == ["'easy_negative' looks like embedding 'EasyNegative' but does not name it"]
