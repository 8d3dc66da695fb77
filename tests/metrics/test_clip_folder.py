"""Every CLIP folder layout the pinned transformers writes and reads is accepted, scores identically and is
described by the preprocessing that actually runs; incomplete folders get one sentence naming what is missing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ckptbench.demo.tiny_scorers import save_clip_layout
from ckptbench.errors import WeightsUnavailableError
from ckptbench.metrics import hf_clip
from ckptbench.metrics.base import BackboneRequest
from ckptbench.metrics.clip_folder import clip_folder_problem, locate_clip_folder
from ckptbench.score_folder import score_folder
from ckptbench.spec import ScorerOptions, ScorersSpec
from ckptbench.store import Store

SCORERS = ("clip-score", "clip-cosine", "laion-aesthetic-v2")


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("clip-layouts")
    return {layout: save_clip_layout(root / layout, layout) for layout in ("hub", "processor")}


def test_the_layouts_are_what_each_writer_makes(layouts: dict[str, Path]) -> None:
    hub = {p.name for p in layouts["hub"].iterdir()}
    transformers5 = {p.name for p in layouts["processor"].iterdir()}
    assert {"preprocessor_config.json", "vocab.json", "merges.txt"} <= hub
    assert not {"processor_config.json", "tokenizer.json"} & hub
    assert {"processor_config.json", "tokenizer.json"} <= transformers5
    assert not {"preprocessor_config.json", "vocab.json"} & transformers5
    for folder in layouts.values():
        assert clip_folder_problem(folder) is None


def test_transformers5_folders_score_identically_to_hub_folders(layouts, tiny_scorer_models, tmp_path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for index, source in enumerate(sorted(tiny_scorer_models["images"].glob("*.png"))):
        (images / source.name).write_bytes(source.read_bytes())
        (images / source.with_suffix(".txt").name).write_text(f"a red cube number {index}")
    frames, specs = {}, {}
    for layout, folder in layouts.items():
        options = {name: ScorerOptions(model=str(folder)) for name in SCORERS}
        options["laion-aesthetic-v2"] = ScorerOptions(model=str(folder), head=str(tiny_scorer_models["head"]))
        result = score_folder(images, ScorersSpec(use=SCORERS, options=options), Store(tmp_path / layout),
                              torch.device("cpu"))
        assert not result.failures, result.failures
        frames[layout] = result.frame.set_index(["image", "scorer"])["value"].sort_index()
        specs[layout] = hf_clip.resolve(BackboneRequest(hf_clip.KIND, str(folder)), "fp32", "clip-score", None)
    assert len(frames["hub"]) == len(frames["processor"]) == 6 * len(SCORERS)
    assert frames["hub"].to_dict() == frames["processor"].to_dict()  # bit-identical
    # The same weights and the same preprocessing: one backbone, whichever layout it came in.
    assert specs["hub"].preprocessing == specs["processor"].preprocessing
    assert specs["hub"].key == specs["processor"].key
    # The preprocessing recorded is the one that runs (the folder's 32 px), not the class defaults (224).
    assert "shortest side to 32" in specs["processor"].preprocessing
    assert "center crop 32×32" in specs["processor"].preprocessing


def test_the_image_backend_is_part_of_the_backbone_key(layouts) -> None:
    """transformers' PIL and torchvision image processors give slightly different pixels (≈2e-5 in LAION
    scores), and which one loads by default changed with transformers 5: cached features must not mix."""
    from transformers import AutoImageProcessor

    descriptions = {}
    for fast in (False, True):
        processor = AutoImageProcessor.from_pretrained(str(layouts["processor"]), use_fast=fast)
        descriptions[hf_clip.image_backend(processor)] = hf_clip.describe_preprocessing(processor)
    assert set(descriptions) == {"PIL", "torchvision"}
    assert "(PIL backend)" in descriptions["PIL"] and "(torchvision backend)" in descriptions["torchvision"]
    assert descriptions["PIL"].split(", ", 1)[1] == descriptions["torchvision"].split(", ", 1)[1]


@pytest.mark.parametrize(("remove", "named"), [(("tokenizer.json",), "tokenizer"),
                                               (("processor_config.json",), "image processor"),
                                               (("model.safetensors",), "weights")])
def test_incomplete_folders_get_one_sentence(layouts, tmp_path: Path, remove: tuple[str, ...], named: str) -> None:
    folder = tmp_path / "clip"
    folder.mkdir()
    for path in layouts["processor"].iterdir():
        if path.name not in remove:
            (folder / path.name).write_bytes(path.read_bytes())
    problem = clip_folder_problem(folder)
    assert problem is not None and named in problem and "\n" not in problem
    with pytest.raises(WeightsUnavailableError, match=r"scorer 'clip-score'.*\[scorers.clip-score\] model"):
        locate_clip_folder(folder, None, "clip-score")


def test_weights_only_folder_takes_the_processor_from_elsewhere(layouts, tmp_path: Path) -> None:
    folder = tmp_path / "weights-only"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        (folder / name).write_bytes((layouts["hub"] / name).read_bytes())
    assert clip_folder_problem(folder) is not None
    assert clip_folder_problem(folder, layouts["processor"]) is None
    assert locate_clip_folder(folder, layouts["processor"], "pickscore").processor == layouts["processor"]


def test_the_validate_check_names_the_scorer_and_the_key(layouts, tmp_path: Path) -> None:
    from ckptbench.metrics.clip_folder import scorer_folder_problem

    assert scorer_folder_problem(str(layouts["processor"]), None, "clip-score") is None
    assert scorer_folder_problem(str(layouts["hub"]), None, "clip-score") is None
    empty = tmp_path / "empty"
    empty.mkdir()
    problem = scorer_folder_problem(str(empty), None, "laion-aesthetic-v2")
    assert problem is not None and "config.json" in problem and "[scorers.laion-aesthetic-v2] model" in problem
    missing = scorer_folder_problem(str(tmp_path / "nowhere"), None, "clip-score")
    assert missing is not None and "does not exist" in missing
