"""Textual-inversion files: every A1111/diffusers format, pickle safety, and finding names in prompts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ckptbench.errors import ModelFileError, SpecError
from ckptbench.generate.embeddings import SINGLE, EmbeddingLibrary, load_textual_inversion


def vectors(count: int, width: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(count, width, generator=torch.Generator().manual_seed(seed))


def test_a1111_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "EasyNegative.safetensors"
    save_file({"emb_params": vectors(3)}, str(path))
    embedding = load_textual_inversion(path)
    assert embedding.name == "EasyNegative" and embedding.vector_count == 3
    torch.testing.assert_close(embedding.vectors[SINGLE], vectors(3))


def test_diffusers_single_vector(tmp_path: Path) -> None:
    path = tmp_path / "cat-toy.safetensors"
    save_file({"<cat-toy>": vectors(1)[0]}, str(path))
    assert load_textual_inversion(path).vectors[SINGLE].shape == (1, 32)


def test_sdxl_embedding_has_vectors_for_both_encoders(tmp_path: Path) -> None:
    path = tmp_path / "negativeXL.safetensors"
    save_file({"clip_l": vectors(2, 768), "clip_g": vectors(2, 1280)}, str(path))
    embedding = load_textual_inversion(path)
    assert {k: tuple(v.shape) for k, v in embedding.vectors.items()} == {"clip_l": (2, 768), "clip_g": (2, 1280)}


def a1111_pt(path: Path, tensor: torch.Tensor) -> Path:
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": tensor}, "name": path.stem,
                "step": 1000, "sd_checkpoint": "abc", "sd_checkpoint_name": "model"}, path)
    return path


def test_pt_files_are_refused_without_the_opt_in(tmp_path: Path) -> None:
    path = a1111_pt(tmp_path / "old.pt", vectors(4))
    with pytest.raises(ModelFileError, match="allow_pickle_embeddings"):
        load_textual_inversion(path)
    torch.testing.assert_close(load_textual_inversion(path, allow_pickle=True).vectors[SINGLE], vectors(4))


class _Payload:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


def test_a_malicious_pickle_never_runs_even_with_the_opt_in(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"string_to_param": {"*": vectors(1)}, "payload": _Payload(target)}, path)
    with pytest.raises(ModelFileError, match="weights_only"):
        load_textual_inversion(path, allow_pickle=True)
    assert not target.exists()


@pytest.mark.parametrize(("content", "message"), [
    ({"a": vectors(1), "b": vectors(1)}, "not a textual-inversion embedding"),
    ({"emb_params": vectors(76)}, "1 to 75 vectors"),
    ({"clip_l": vectors(2, 768), "clip_g": vectors(3, 1280)}, "the same number"),
    ({"emb_params": torch.ones(2, 3, 4)}, "shape"),
])
def test_files_that_are_not_embeddings_are_clear_errors(tmp_path: Path, content, message: str) -> None:
    path = tmp_path / "bad.safetensors"
    save_file(content, str(path))
    with pytest.raises(ModelFileError, match=message):
        load_textual_inversion(path)


@pytest.fixture
def library(tmp_path: Path) -> EmbeddingLibrary:
    for name in ("EasyNegative", "bad-hands-5", "easy"):
        save_file({"emb_params": vectors(2)}, str(tmp_path / f"{name}.safetensors"))
    (tmp_path / "notes.txt").write_text("not an embedding")
    return EmbeddingLibrary((tmp_path,))


def test_names_are_found_by_their_tokens_like_a1111(library: EmbeddingLibrary) -> None:
    assert sorted(library.files) == ["EasyNegative", "bad-hands-5", "easy"]
    assert library.used_in("lowres, (easynegative:1.2), bad-hands-5") == ["EasyNegative", "bad-hands-5"]
    assert library.used_in("an easy day") == ["easy"]
    assert library.used_in("easy_negative, bad hands") == ["easy"]  # "easy" alone matches; the rest is words
    assert library.used_in("a cat AND EasyNegative") == []  # a refused prompt makes no image
    assert library.used_in("[EasyNegative:bad-hands-5:0.5]", steps=20) == ["EasyNegative", "bad-hands-5"]


def test_near_misses_are_recorded(library: EmbeddingLibrary) -> None:
    notes = library.near_misses([("masterpiece, easy_negative", True), ("badhands5", False),
                                 ("EasyNegative", True), ("a cat", False)])
    assert notes == ["'badhands5' looks like embedding 'bad-hands-5' but does not name it",
                     "'easy_negative' looks like embedding 'EasyNegative' but does not name it"]


def test_two_files_with_one_name_are_an_error(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        save_file({"emb_params": vectors(1)}, str(tmp_path / folder / "same.safetensors"))
    with pytest.raises(SpecError, match="two embeddings are named 'same'"):
        EmbeddingLibrary((tmp_path / "a", tmp_path / "b"))


def test_embedding_dirs_are_checked_when_the_spec_loads(write_spec, tmp_path: Path) -> None:
    from ckptbench.spec_load import load_spec

    with pytest.raises(SpecError, match=r"generation.embedding_dirs\[0\].*is not a folder"):
        load_spec(write_spec(generation='embedding_dirs = ["missing"]'))
    (tmp_path / "emb").mkdir()
    spec = load_spec(write_spec(generation='embedding_dirs = ["emb"]\nclip_skip = 2'))
    assert spec.generation.embedding_dirs == ((tmp_path / "emb").resolve(),)
    with pytest.raises(SpecError, match="clip_skip"):
        load_spec(write_spec(generation="clip_skip = 0"))
