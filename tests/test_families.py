"""The family registry: every family declares what the rest of ckptbench asks of it, in one place."""

from __future__ import annotations

import pytest

from ckptbench.models.families import all_families, family_names, get_family


def test_every_registered_family_declares_its_parts() -> None:
    for family in all_families():
        assert family.name and family.title and family.pipeline_class.endswith("Pipeline")
        for prediction in family.predictions:
            config = family.config_dir(prediction)
            assert (config / "model_index.json").is_file(), config
        assert family.bytes_per_image_512 > 0 and family.components
        assert family.example.startswith("[[checkpoints]]")


def test_lookup_by_name_and_unknown_names() -> None:
    assert get_family("sdxl").pipeline_class == "StableDiffusionXLPipeline"
    assert get_family("sd2").config_dir("v").name == "sd2-v" and get_family("sd2").config_dir("epsilon").name == "sd2"
    with pytest.raises(KeyError, match="unknown model family 'sd3'"):
        get_family("sd3")
    assert set(family_names()) >= {"sd15", "sd2", "sdxl"}


def test_readme_lists_every_family_with_its_example() -> None:
    import tomllib

    from ckptbench.spec import CheckpointSpec
    from tests.conftest import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("### Model families", 1)[1].split("\n### ", 1)[0]
    for family in all_families():
        assert f"| `{family.name}` |" in section and family.example in section, family.name
        (entry,) = tomllib.loads(family.example)["checkpoints"]
        CheckpointSpec.model_validate(entry)  # a valid checkpoint entry as written
