from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ckptbench.generate.base import FailedImage, GeneratedImage, ImageJob, SamplingSettings
from ckptbench.generate.batching import backend_id
from ckptbench.generate.diffusers_backend import DiffusersGenerator
from ckptbench.infotext import parse_infotext
from ckptbench.models.checkpoint import resolve_checkpoint
from ckptbench.spec import CheckpointSpec
from ckptbench.suites import Case

SETTINGS = SamplingSettings(sampler="Euler a", steps=4, cfg=7.0, width=64, height=64, dtype="fp32")


def _jobs(sha: str, prompts_and_seeds: list[tuple[str, int]]) -> list[ImageJob]:
    return [ImageJob(checkpoint="m", checkpoint_sha256=sha, case=Case("s", f"{i:03d}", prompt), seed=seed,
                     prompt=prompt, negative_prompt="", settings=SETTINGS, backend=backend_id())
            for i, (prompt, seed) in enumerate(prompts_and_seeds)]


def _generate(checkpoint_spec: CheckpointSpec, cells: list[tuple[str, int]], batch_size: int = 4
              ) -> list[np.ndarray]:
    checkpoint = resolve_checkpoint(checkpoint_spec)
    generator = DiffusersGenerator(torch.device("cpu"), batch_size)
    results = list(generator.generate(checkpoint, _jobs(checkpoint.sha256, cells)))
    assert all(isinstance(r, GeneratedImage) for r in results), [getattr(r, "error", "") for r in results]
    by_cell = {(r.job.prompt, r.job.seed): np.asarray(r.image) for r in results}
    return [by_cell[cell] for cell in cells]


CELLS = [("a red cube", 1), ("a red cube", 2), ("a blue sphere", 1)]


def test_single_file_and_folder_give_identical_pixels(tiny_models) -> None:
    single = _generate(CheckpointSpec(name="m", path=tiny_models["single_a"], config=tiny_models["config"]), CELLS)
    folder = _generate(CheckpointSpec(name="m", path=tiny_models["folder_a"]), CELLS)
    for a, b in zip(single, folder, strict=True):
        assert a.shape == (64, 64, 3)
        np.testing.assert_array_equal(a, b)


def test_seed_determinism_independent_of_batching(tiny_models) -> None:
    spec = CheckpointSpec(name="m", path=tiny_models["folder_a"])
    together = _generate(spec, CELLS, batch_size=4)
    alone = _generate(spec, CELLS, batch_size=1)
    again = _generate(spec, CELLS[:1], batch_size=1)
    for a, b in zip(together, alone, strict=True):
        # Batched and single convolutions may differ in the last float bit, never more than 1/255.
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    np.testing.assert_array_equal(alone[0], again[0])
    assert np.abs(together[0].astype(int) - together[1].astype(int)).mean() > 1.0  # seeds differ


def test_different_checkpoints_make_different_images(tiny_models) -> None:
    a = _generate(CheckpointSpec(name="m", path=tiny_models["folder_a"]), CELLS[:1])[0]
    b = _generate(CheckpointSpec(name="m", path=tiny_models["folder_b"]), CELLS[:1])[0]
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 1.0


def test_infotext_of_generated_image(tiny_models) -> None:
    checkpoint = resolve_checkpoint(CheckpointSpec(name="m", path=tiny_models["folder_a"]))
    generator = DiffusersGenerator(torch.device("cpu"), 2)
    result = next(iter(generator.generate(checkpoint, _jobs(checkpoint.sha256, [("a, b: c", 7)]))))
    assert not isinstance(result, FailedImage)
    info = parse_infotext(result.infotext)
    assert info.prompt == "a, b: c"
    assert info.parameters["Seed"] == "7"
    assert info.parameters["Sampler"] == "Euler a"
    assert info.parameters["Size"] == "64x64"
    assert info.parameters["Model hash"] == checkpoint.sha256[:10]


def test_pickle_checkpoints_are_refused(tmp_path) -> None:
    from ckptbench.errors import ModelFileError

    marker = tmp_path / "marker"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(1)}}, path)
    with pytest.raises(ModelFileError, match="pickle"):
        resolve_checkpoint(CheckpointSpec(name="evil", path=path))
    assert not marker.exists()


def test_png_roundtrip_keeps_parameters_chunk(tmp_path, tiny_models) -> None:
    from ckptbench.store import Store

    store = Store(tmp_path / "store")
    image = Image.new("RGB", (8, 8), (10, 20, 30))
    path = store.put_image("ab" * 32, image, "a cat\nSteps: 4, Sampler: Euler, Seed: 1",
                           checkpoint_sha256="c" * 64, prompt="a cat", negative_prompt="", seed=1,
                           settings=SETTINGS.as_dict(), backend="x", seconds=0.1)
    with Image.open(path) as reloaded:
        assert reloaded.text["parameters"].startswith("a cat")
        assert np.asarray(reloaded).tolist() == np.asarray(image).tolist()
    store.close()
