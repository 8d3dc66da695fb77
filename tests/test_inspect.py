"""``ckptbench inspect`` on every kind of file users download, and the bundled configs' real sizes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection
from typer.testing import CliRunner

from ckptbench.cli import app
from ckptbench.demo.tiny import save_diffusers_folder, save_single_file, tiny_sd15_pipeline
from ckptbench.demo.tiny_files import save_embedding, save_kohya_lora, save_vae_file
from ckptbench.models.checkpoint import BUNDLED_CONFIGS


def _inspect(path: Path, *extra: str) -> dict:
    result = CliRunner().invoke(app, ["inspect", str(path), "--json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _numel(*modules: torch.nn.Module) -> int:
    return sum(t.numel() for m in modules for k, t in m.state_dict().items() if not k.endswith("position_ids"))


@pytest.fixture(scope="module")
def pipeline():
    return tiny_sd15_pipeline(seed=21)


def test_inspect_checkpoint(tmp_path: Path, pipeline) -> None:
    path = save_single_file(pipeline, tmp_path / "model.safetensors", dtype=torch.float16,
                            metadata={"modelspec.title": "Tiny", "modelspec.architecture": "stable-diffusion-v1"})
    report = _inspect(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert report["kind"] == "checkpoint" and report["arch"] == "sd15" and report["prediction"] == "epsilon"
    assert report["sha256"] == digest and report["autov2"] == digest[:10].upper()
    assert report["safe"] is True and report["format"] == "safetensors" and report["dtype"] == "F16"
    assert report["components"] == {"unet": _numel(pipeline.unet), "vae": _numel(pipeline.vae),
                                    "text_encoder": _numel(pipeline.text_encoder)}
    assert report["parameters"] == _numel(pipeline.unet, pipeline.vae, pipeline.text_encoder)
    assert report["metadata"]["modelspec.title"] == "Tiny"
    human = CliRunner().invoke(app, ["inspect", str(path)])
    assert human.exit_code == 0 and "checkpoint" in human.output and digest[:10].upper() in human.output


def test_inspect_sd2_v_and_sdxl(tiny_family_models) -> None:
    sd2 = _inspect(tiny_family_models["sd2_v"])
    assert (sd2["arch"], sd2["prediction"]) == ("sd2", "v") and "v_pred" in sd2["prediction_source"]
    xl = _inspect(tiny_family_models["sdxl"])
    assert (xl["kind"], xl["arch"], xl["prediction"]) == ("checkpoint", "sdxl", "epsilon")
    assert set(xl["components"]) == {"unet", "vae", "text_encoder", "text_encoder_2"}


def test_inspect_kohya_lora(tmp_path: Path, pipeline) -> None:
    path = save_kohya_lora(pipeline.unet, pipeline.text_encoder, tmp_path / "style.safetensors")
    report = _inspect(path)
    assert (report["kind"], report["arch"], report["safe"]) == ("lora", "sd15", True)
    assert report["metadata"]["ss_network_dim"] == "4"
    assert report["metadata"]["ss_tag_frequency"] == {"10_tiny": {"tiny": 10, "random": 3}}  # JSON decoded
    assert any("ss_base_model_version" in line for line in report["evidence"])


def test_inspect_vae_and_embeddings(tmp_path: Path, pipeline) -> None:
    vae = _inspect(save_vae_file(pipeline.vae, tmp_path / "vae.safetensors"))
    assert (vae["kind"], vae["arch"], vae["parameters"]) == ("vae", None, _numel(pipeline.vae))
    embedding = _inspect(save_embedding(tmp_path / "bad-hands.safetensors"))
    assert (embedding["kind"], embedding["arch"]) == ("embedding", "sd15")
    xl_embedding = _inspect(save_embedding(tmp_path / "xl.safetensors", sdxl=True))
    assert (xl_embedding["kind"], xl_embedding["arch"]) == ("embedding", "sdxl")


def test_inspect_unknown_file_and_folder(tmp_path: Path, pipeline) -> None:
    save_file({"weight": torch.ones(3, 3)}, str(tmp_path / "other.safetensors"))
    unknown = _inspect(tmp_path / "other.safetensors")
    assert (unknown["kind"], unknown["safe"]) == ("unknown", True)
    folder = _inspect(save_diffusers_folder(pipeline, tmp_path / "folder"))
    assert (folder["kind"], folder["format"], folder["arch"], folder["safe"]) == (
        "checkpoint", "diffusers-folder", "sd15", True)


@pytest.mark.parametrize(
    ("family", "module", "expected"),
    [("sd15", "unet", 859_520_964), ("sd2", "unet", 865_910_724), ("sd2-v", "unet", 865_910_724),
     ("sdxl", "unet", 2_567_463_684), ("sd15", "vae", 83_653_863), ("sdxl", "vae", 83_653_863),
     ("sd15", "text_encoder", 123_060_480), ("sdxl", "text_encoder", 123_060_480),
     ("sdxl", "text_encoder_2", 694_659_840)],
)
def test_bundled_configs_build_the_published_architectures(family: str, module: str, expected: int) -> None:
    """Parameter counts of the real models (published for SD1.5, SD2.x and SDXL), built on the meta device."""
    folder = BUNDLED_CONFIGS / family
    with init_empty_weights():
        if module == "unet":
            model = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
        elif module == "vae":
            model = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
        else:
            config = CLIPTextConfig.from_pretrained(folder / module)
            model = (CLIPTextModelWithProjection if module == "text_encoder_2" else CLIPTextModel)(config)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_sd2_configs_differ_only_where_the_releases_do() -> None:
    base, v = (json.loads((BUNDLED_CONFIGS / name / "unet/config.json").read_text()) for name in ("sd2", "sd2-v"))
    assert {k for k in base if base[k] != v[k]} == {"sample_size", "upcast_attention"}
    assert (base["sample_size"], v["sample_size"]) == (64, 96)  # 512 and 768 pixels
    names = ("sd15", "sd2", "sd2-v", "sdxl")
    schedulers = [BUNDLED_CONFIGS / name / "scheduler/scheduler_config.json" for name in names]
    prediction = [json.loads(path.read_text())["prediction_type"] for path in schedulers]
    assert prediction == ["epsilon", "epsilon", "v_prediction", "epsilon"]


def test_inspect_pickle_only_with_the_flag(tmp_path: Path, pipeline) -> None:
    from ckptbench.demo.tiny import original_layout_state

    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": original_layout_state(pipeline), "global_step": 12}, path)
    refused = CliRunner().invoke(app, ["inspect", str(path), "--json"])
    assert refused.exit_code == 2 and json.loads(refused.stdout)["safe"] is False
    report = _inspect(path, "--allow-pickle")
    assert (report["format"], report["kind"], report["arch"], report["safe"]) == ("pickle", "checkpoint", "sd15", True)
    assert report["metadata"] == {"global_step": "12"} and "weights_only=True" in report["safety"]
