"""Local files never reach for the network: loading works with every socket connection refused."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch

from ckptbench.generate.loading import load_pipeline
from ckptbench.models.checkpoint import BUNDLED_CONFIGS, resolve_checkpoint
from ckptbench.spec import CheckpointSpec


@pytest.fixture
def no_network(monkeypatch):
    """Hub libraries told they are online, but any connection attempt fails the test."""
    import huggingface_hub.constants

    attempts: list[object] = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    yield attempts
    assert attempts == []


@pytest.mark.parametrize(("model", "config"), [("single_a", "config"), ("sd2_v", "sd2_config"),
                                               ("sdxl", "sdxl_config")])
def test_single_files_load_without_network(no_network, tiny_models, tiny_family_models, model, config) -> None:
    files = {**tiny_models, **tiny_family_models}
    resolved = resolve_checkpoint(CheckpointSpec(name="m", path=files[model], config=files[config]))
    load_pipeline(resolved, torch.device("cpu"), torch.float32)


def _real_size_file(family: str, path: Path) -> Path:
    """A random-weight single file of the real architecture, built from the bundled config (fp16)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    from ckptbench.models.ldm_layout import OPEN_CLIP_PREFIX, pipeline_to_ldm

    folder = BUNDLED_CONFIGS / family
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float16)
    try:
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
        text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))
    finally:
        torch.set_default_dtype(previous)
    state = pipeline_to_ldm(unet, vae, text_encoder, open_clip=family == "sd2")
    if family == "sd2":  # the 24th OpenCLIP layer real SD2 files carry
        last = f"{OPEN_CLIP_PREFIX}transformer.resblocks.22."
        state.update({k.replace(".22.", ".23."): v.clone() for k, v in state.items() if k.startswith(last)})
    save_file(state, str(path))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("family", ["sd15", "sd2"])
def test_real_size_single_file_loads_with_the_bundled_config(no_network, tmp_path: Path, family: str) -> None:
    path = _real_size_file(family, tmp_path / f"{family}.safetensors")
    resolved = resolve_checkpoint(CheckpointSpec(name="real", path=path))
    assert resolved.family == family and resolved.config is None
    if family == "sd2":  # no marker: decided by A1111's test on the real-size UNet
        assert resolved.detection["prediction_source"].startswith("A1111's SD2 test")
    pipeline = load_pipeline(resolved, torch.device("cpu"), torch.float16)
    assert pipeline.unet.config.cross_attention_dim == {"sd15": 768, "sd2": 1024}[family]
    assert pipeline.text_encoder.config.num_hidden_layers == {"sd15": 12, "sd2": 23}[family]
