"""Single-file checkpoints of every family, in the real original layouts, through the real loading path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

from ckptbench.demo.tiny import (
    ema_extras,
    save_config_folder,
    save_diffusers_folder,
    save_single_file,
    schedule_extras,
    tiny_sd2_pipeline,
    tiny_sd15_pipeline,
    tiny_sdxl_pipeline,
)
from ckptbench.demo.tiny_files import save_vae_file
from ckptbench.errors import ModelFileError
from ckptbench.generate.loading import load_pipeline
from ckptbench.models.checkpoint import resolve_checkpoint
from ckptbench.spec import CheckpointSpec

CPU = torch.device("cpu")


def _resolve(path: Path, config: Path | None = None, **fields: object):
    return resolve_checkpoint(CheckpointSpec(name="m", path=path, config=config, **fields))


def _assert_same_modules(expected, loaded, names: tuple[str, ...], cast: torch.dtype | None = None) -> None:
    for name in names:
        want, got = getattr(expected, name).state_dict(), getattr(loaded, name).state_dict()
        want = {k: v for k, v in want.items() if not k.endswith("position_ids")}
        got = {k: v for k, v in got.items() if not k.endswith("position_ids")}
        assert want.keys() == got.keys(), name
        for key in want:
            reference = want[key].to(cast).to(got[key].dtype) if cast else want[key]
            assert torch.equal(reference, got[key]), f"{name}.{key}"


@pytest.fixture(scope="module")
def sd15(tmp_path_factory) -> tuple[StableDiffusionPipeline, Path]:
    pipeline = tiny_sd15_pipeline(seed=11)
    return pipeline, save_config_folder(pipeline, tmp_path_factory.mktemp("sd15") / "config")


@pytest.mark.parametrize("variant", ["fp32", "fp16", "extras", "old-text-keys"])
def test_sd15_single_file_round_trip(sd15, tmp_path: Path, variant: str) -> None:
    pipeline, config = sd15
    options: dict = {}
    if variant == "fp16":
        options["dtype"] = torch.float16
    if variant == "extras":  # EMA copies (different values) and schedule buffers must not leak into the model
        options["extras"] = {**ema_extras(pipeline, seed=3), **schedule_extras()}
    if variant == "old-text-keys":
        options["old_text_keys"] = True
    path = save_single_file(pipeline, tmp_path / f"{variant}.safetensors", **options)
    resolved = _resolve(path, config)
    assert (resolved.family, resolved.prediction, resolved.kind) == ("sd15", "epsilon", "single-file")
    loaded = load_pipeline(resolved, CPU, torch.float32)
    assert type(loaded) is StableDiffusionPipeline
    cast = torch.float16 if variant == "fp16" else None
    _assert_same_modules(pipeline, loaded, ("unet", "vae", "text_encoder"), cast)
    notes = " ".join(resolved.detection["notes"])
    if variant == "extras":
        assert "model_ema.* tensors: ignored" in notes and resolved.detection["warnings"] == []
    if variant == "old-text-keys":
        assert "old text-encoder key layout" in notes


def test_schedule_buffers_that_differ_from_the_config_are_reported(sd15, tmp_path: Path) -> None:
    pipeline, config = sd15
    odd = schedule_extras(beta_end=0.02)
    resolved = _resolve(save_single_file(pipeline, tmp_path / "odd.safetensors", extras=odd), config)
    assert any("alphas_cumprod differ" in w for w in resolved.detection["warnings"])


def test_sd2_single_file_round_trip_with_openclip_layout(tiny_family_models) -> None:
    resolved = _resolve(tiny_family_models["sd2_v"], tiny_family_models["sd2_config"])
    assert (resolved.family, resolved.prediction) == ("sd2", "v")
    assert resolved.detection["prediction_source"] == "marker tensor 'v_pred' → v"
    loaded = load_pipeline(resolved, CPU, torch.float32)
    # The file holds OpenCLIP's extra last layer, text projection and logit scale: all left out, as SD2 does.
    _assert_same_modules(tiny_sd2_pipeline(seed=5), loaded, ("unet", "vae", "text_encoder"))
    assert loaded.scheduler.config.prediction_type == "v_prediction"
    assert loaded.tokenizer.pad_token_id == 0  # OpenCLIP pads with '!'


def test_sdxl_single_file_round_trip_gives_the_xl_pipeline(tiny_family_models) -> None:
    resolved = _resolve(tiny_family_models["sdxl"], tiny_family_models["sdxl_config"])
    assert (resolved.family, resolved.prediction) == ("sdxl", "epsilon")
    loaded = load_pipeline(resolved, CPU, torch.float32)
    assert type(loaded) is StableDiffusionXLPipeline
    _assert_same_modules(tiny_sdxl_pipeline(seed=6), loaded, ("unet", "vae", "text_encoder", "text_encoder_2"))
    assert loaded.tokenizer.pad_token_id == 49407 and loaded.tokenizer_2.pad_token_id == 0
    assert loaded.config.force_zeros_for_empty_prompt is False and loaded.watermark is None


def test_sdxl_diffusers_folder_is_detected_and_loaded(tmp_path: Path) -> None:
    pipeline = tiny_sdxl_pipeline(seed=6)
    folder = save_diffusers_folder(pipeline, tmp_path / "xl-folder")
    resolved = _resolve(folder)
    assert (resolved.kind, resolved.family, resolved.prediction) == ("diffusers-folder", "sdxl", "epsilon")
    loaded = load_pipeline(resolved, CPU, torch.float32)
    assert type(loaded) is StableDiffusionXLPipeline
    _assert_same_modules(pipeline, loaded, ("unet", "text_encoder_2"))
    overridden = load_pipeline(_resolve(folder, prediction="v"), CPU, torch.float32)
    assert overridden.scheduler.config.prediction_type == "v_prediction"


def test_missing_vae_is_refused_unless_one_is_given(sd15, tmp_path: Path) -> None:
    pipeline, config = sd15
    bare = save_single_file(pipeline, tmp_path / "no-vae.safetensors", include_vae=False)
    with pytest.raises(ModelFileError, match=r"has no baked VAE.*set `vae`"):
        _resolve(bare, config)
    other_vae = tiny_sd15_pipeline(seed=12).vae
    vae_file = save_vae_file(other_vae, tmp_path / "vae.safetensors")
    resolved = _resolve(bare, config, vae=vae_file)
    loaded = load_pipeline(resolved, CPU, torch.float32)
    _assert_same_modules(pipeline, loaded, ("unet", "text_encoder"))
    assert all(torch.equal(a, b) for a, b in zip(other_vae.state_dict().values(), loaded.vae.state_dict().values(),
                                                 strict=True))
    # The run-wide [generation] vae serves the same purpose, and a diffusers VAE folder works too.
    other_vae.save_pretrained(tmp_path / "vae-folder")
    from_folder = resolve_checkpoint(CheckpointSpec(name="m", path=bare, config=config),
                                     default_vae=tmp_path / "vae-folder")
    assert from_folder.vae is not None and from_folder.vae.kind == "diffusers-folder"
    assert load_pipeline(from_folder, CPU, torch.float32).vae.config.scaling_factor == other_vae.config.scaling_factor


def test_an_external_vae_replaces_the_baked_one_and_changes_the_identity(sd15, tmp_path: Path) -> None:
    pipeline, config = sd15
    path = save_single_file(pipeline, tmp_path / "m.safetensors")
    vae_file = save_vae_file(tiny_sd15_pipeline(seed=13).vae, tmp_path / "vae.safetensors")
    baked, external = _resolve(path, config), _resolve(path, config, vae=vae_file)
    assert baked.sha256 == external.sha256 and baked.identity != external.identity
    assert external.detection["vae"]["sha256"] == external.vae.sha256
    assert _resolve(path, config).identity == baked.identity  # stable across resolutions
    assert _resolve(path, config, prediction="v").identity != baked.identity
    loaded = load_pipeline(external, CPU, torch.float32)
    assert not torch.equal(loaded.vae.decoder.conv_out.weight, pipeline.vae.decoder.conv_out.weight)


def test_a_vae_path_that_is_not_a_vae_is_refused(sd15, tmp_path: Path) -> None:
    pipeline, config = sd15
    path = save_single_file(pipeline, tmp_path / "m.safetensors")
    with pytest.raises(ModelFileError, match="is a checkpoint file, not a VAE"):
        _resolve(path, config, vae=path)


def test_arch_override_sets_sd2_v_and_is_recorded(tmp_path: Path) -> None:
    pipeline = tiny_sd2_pipeline(seed=4)
    path = save_single_file(pipeline, tmp_path / "m.safetensors")
    resolved = _resolve(path, save_config_folder(pipeline, tmp_path / "config"), arch="sd2-v")
    assert (resolved.family, resolved.prediction) == ("sd2", "v")
    assert resolved.detection["family_source"] == "detected, as the spec's arch = 'sd2-v' declares"
    assert resolved.detection["prediction_source"] == "spec: arch = 'sd2-v'"


def test_arch_that_contradicts_the_text_encoder_is_an_error(sd15, tmp_path: Path) -> None:
    pipeline, config = sd15
    path = save_single_file(pipeline, tmp_path / "m.safetensors")
    with pytest.raises(ModelFileError, match=rf"arch = 'sdxl' in the spec, but {re.escape(str(path))} is an sd15 "):
        _resolve(path, config, arch="sdxl")


def test_unet_only_file_is_refused_but_inspected_by_width(sd15, tmp_path: Path) -> None:
    pipeline, config = sd15
    from safetensors.torch import load_file, save_file

    from ckptbench.models.detect import detect
    from ckptbench.models.state_dict import open_model_file

    state = load_file(str(save_single_file(pipeline, tmp_path / "m.safetensors")))
    unet_only = {k: v for k, v in state.items() if not k.startswith("cond_stage_model.")}
    save_file(unet_only, str(tmp_path / "unet-only.safetensors"))
    with pytest.raises(ModelFileError, match="holds a UNet but no text encoder"):
        _resolve(tmp_path / "unet-only.safetensors", config, arch="sd15")
    found = detect(open_model_file(tmp_path / "unet-only.safetensors"))
    assert found.family is None and "cross-attention width 32 → unknown" in found.evidence[0]
    real_width = {k: v for k, v in unet_only.items()}
    key = next(k for k in real_width if k.endswith("attn2.to_k.weight"))
    real_width[key] = torch.zeros(real_width[key].shape[0], 1024)
    save_file(real_width, str(tmp_path / "wide.safetensors"))
    assert detect(open_model_file(tmp_path / "wide.safetensors")).family == "sd2"


def test_non_checkpoint_files_are_refused_as_checkpoints(tmp_path: Path) -> None:
    vae_file = save_vae_file(tiny_sd15_pipeline(seed=1).vae, tmp_path / "vae.safetensors")
    with pytest.raises(ModelFileError, match="is a vae file, not a Stable Diffusion checkpoint"):
        _resolve(vae_file)


def test_inpainting_unet_is_refused_with_the_reason(sd15, tmp_path: Path) -> None:
    pipeline, config = sd15
    path = save_single_file(pipeline, tmp_path / "m.safetensors")
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    state["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(32, 9, 3, 3)
    save_file(state, str(tmp_path / "inpaint.safetensors"))
    with pytest.raises(ModelFileError, match="9 input channels: an inpainting model"):
        _resolve(tmp_path / "inpaint.safetensors", config)


def test_hub_id_resolves_from_the_local_cache_offline(tmp_path: Path, monkeypatch) -> None:
    import huggingface_hub.constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--ckptbench--tiny-xl"
    save_diffusers_folder(tiny_sdxl_pipeline(seed=6), repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    resolved = resolve_checkpoint(CheckpointSpec(name="hub", hub="ckptbench/tiny-xl"))
    assert (resolved.source, resolved.kind, resolved.family) == ("hub:ckptbench/tiny-xl", "diffusers-folder", "sdxl")
    assert type(load_pipeline(resolved, CPU, torch.float32)) is StableDiffusionXLPipeline
