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
