"""FLUX.1 and SD3.5 single files in the layouts Civitai and ComfyUI distribute, through the real loading path.

Layouts: full checkpoints (``model.diffusion_model.*`` + ``text_encoders.*`` + ``first_stage_model.*``), and
transformer-only files (bare original names) with separate CLIP-L / OpenCLIP-bigG / T5-XXL and VAE files;
fp8 storage. The key layout is checked against diffusers' own converter (SD3 here; Flux at its real width in
``test_flow_layout_real_width``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers
from typer.testing import CliRunner

from ckptbench.cli import app
from ckptbench.demo.tiny_families import tiny_flux_pipeline, tiny_sd35_pipeline
from ckptbench.errors import ModelFileError
from ckptbench.generate.loading import load_pipeline
from ckptbench.models.checkpoint import resolve_checkpoint
from ckptbench.models.transformer_layout import to_diffusers, to_original
from ckptbench.spec import CheckpointSpec
from tests.flow_models import SEEDS, flux_split_fields, sd35_split_fields

CPU = torch.device("cpu")


def _inspect(path: Path) -> dict:
    result = CliRunner().invoke(app, ["inspect", str(path), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _same_weights(expected: torch.nn.Module, loaded: torch.nn.Module) -> None:
    want = {k: v for k, v in expected.state_dict().items() if not k.endswith("position_ids")}
    got = {k: v for k, v in loaded.state_dict().items() if not k.endswith("position_ids")}
    assert want.keys() == got.keys()
    for key, tensor in want.items():
        assert torch.equal(tensor, got[key].to(tensor.dtype)), key


def test_inspect_names_the_families_and_their_parts(flow_models) -> None:
    flux = _inspect(flow_models["flux_full"])
    assert (flux["kind"], flux["arch"], flux["variant"], flux["prediction"]) == ("checkpoint", "flux", "dev", "flow")
    assert flux["components"].keys() == {"transformer", "text_encoder", "text_encoder_2", "vae"}
    schnell = _inspect(flow_models["schnell_full"])
    assert (schnell["arch"], schnell["variant"]) == ("flux", "schnell") and "BF16" in schnell["dtypes"]
    bare = _inspect(flow_models["flux_split"] / "transformer.safetensors")
    assert bare["arch"] == "flux" and "transformer-only" in bare["evidence"][0]
    assert any("give them as `text_encoders`" in note for note in bare["notes"])
    sd35 = _inspect(flow_models["sd35_full"])
    assert (sd35["arch"], sd35["variant"], sd35["prediction"]) == ("sd35", "medium", "flow")
    assert set(sd35["components"]) == {"transformer", "text_encoder", "text_encoder_2", "text_encoder_3", "vae"}
    t5 = _inspect(flow_models["flux_split"] / "t5xxl.safetensors")
    assert t5["kind"] == "text_encoder" and "T5-XXL" in t5["evidence"][0]
    fp8 = _inspect(flow_models["flux_fp8"] / "transformer.safetensors")
    assert fp8["dtype"] == "F8_E4M3"


@pytest.mark.parametrize("layout", ["flux_full", "flux_split", "sd35_full", "sd35_split"])
def test_every_layout_loads_the_same_weights(flow_models, layout: str) -> None:
    family = layout.split("_")[0]
    if layout == "flux_split":
        fields = flux_split_fields(flow_models)
    elif layout == "sd35_split":
        fields = sd35_split_fields(flow_models)
    else:
        fields = {"path": flow_models[layout], "config": flow_models[f"{family}_config"],
                  "t5_tokenizer": flow_models["tokenizer"]}
    resolved = resolve_checkpoint(CheckpointSpec(name="m", **fields))
    assert (resolved.family, resolved.prediction) == (family, "flow")
    loaded = load_pipeline(resolved, CPU, torch.float32)
    if family == "flux":
        expected = tiny_flux_pipeline(flow_models["tokenizer"], seed=SEEDS["flux"])
        components = ("transformer", "text_encoder", "text_encoder_2", "vae")
    else:
        expected = tiny_sd35_pipeline(flow_models["tokenizer"], seed=SEEDS["sd35"])
        components = ("transformer", "text_encoder", "text_encoder_2", "text_encoder_3", "vae")
    assert type(loaded) is type(expected)
    for component in components:
        _same_weights(getattr(expected, component), getattr(loaded, component))


def test_our_sd3_layout_table_equals_diffusers_converter(flow_models) -> None:
    transformer = tiny_sd35_pipeline(flow_models["tokenizer"], seed=SEEDS["sd35"]).transformer
    original = to_original(transformer.state_dict(), "sd3")
    ours, theirs = to_diffusers(dict(original), "sd3"), convert_sd3_transformer_checkpoint_to_diffusers(dict(original))
    assert ours.keys() == theirs.keys() == transformer.state_dict().keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_fp8_transformer_stays_fp8_and_computes_like_its_upcast_weights(flow_models) -> None:
    resolved = resolve_checkpoint(CheckpointSpec(name="fp8", **flux_split_fields(flow_models, "flux_fp8")))
    transformer = load_pipeline(resolved, CPU, torch.float32).transformer
    stored = {p.dtype for name, p in transformer.named_parameters() if name.endswith("to_q.weight")}
    assert stored == {torch.float8_e4m3fn}  # held in fp8: a quarter of fp32's memory
    reference = tiny_flux_pipeline(flow_models["tokenizer"], seed=SEEDS["flux"]).transformer
    with torch.no_grad():  # what the fp8 file holds, upcast once: the model the per-layer upcasting must compute
        for param in reference.parameters():
            if param.ndim >= 2:
                param.copy_(param.to(torch.float8_e4m3fn).float())
            else:
                param.copy_(param.to(torch.bfloat16).float())
    generator = torch.Generator().manual_seed(0)
    inputs = {"hidden_states": torch.randn(1, 16, 16, generator=generator), "timestep": torch.tensor([0.5]),
              "guidance": torch.tensor([3.5]), "pooled_projections": torch.randn(1, 32, generator=generator),
              "encoder_hidden_states": torch.randn(1, 8, 128, generator=generator), "txt_ids": torch.zeros(8, 3),
              "img_ids": torch.zeros(16, 3), "return_dict": False}
    with torch.no_grad():
        got, want = transformer(**inputs)[0], reference(**inputs)[0]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_missing_parts_are_one_clear_sentence(flow_models, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    fields = flux_split_fields(flow_models)
    without_t5 = {**fields, "text_encoders": fields["text_encoders"][:1]}
    with pytest.raises(ModelFileError, match=r"holds no T5-XXL text encoder; add the file .* to `text_encoders`"):
        resolve_checkpoint(CheckpointSpec(name="m", **without_t5))
    with pytest.raises(ModelFileError, match=r"has no baked VAE .* set `vae`"):
        resolve_checkpoint(CheckpointSpec(name="m", **{**fields, "vae": None}))
    clip_g = tmp_path / "clip_g.safetensors"  # released OpenCLIP-bigG width: recognised by its tensors
    save_file({"text_model.embeddings.token_embedding.weight": torch.zeros(4, 1280)}, str(clip_g))
    wrong = {**fields, "text_encoders": (*fields["text_encoders"], clip_g)}
    with pytest.raises(ModelFileError, match=r"clip_g\.safetensors is a OpenCLIP-bigG encoder, which this model"):
        resolve_checkpoint(CheckpointSpec(name="m", **wrong))
    with pytest.raises(ModelFileError, match="prediction = 'v' is set, but flux is a flow-matching model"):
        resolve_checkpoint(CheckpointSpec(name="m", **fields, prediction="v"))


def test_t5_tokenizer_is_required_and_changes_the_identity(flow_models, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    fields = {"path": flow_models["flux_full"], "config": flow_models["flux_config"]}
    with pytest.raises(ModelFileError, match="needs the T5 tokenizer, which is neither set"):
        resolve_checkpoint(CheckpointSpec(name="m", **fields))
    resolved = resolve_checkpoint(CheckpointSpec(name="m", **fields, t5_tokenizer=flow_models["tokenizer"]))
    assert resolved.detection["t5_tokenizer"]["source"].startswith("spec:")
    split = resolve_checkpoint(CheckpointSpec(name="m", **flux_split_fields(flow_models)))
    assert resolved.identity != split.identity  # the separate files are part of what makes the pixels


def test_diffusers_folders_of_both_families_load_and_generate(flow_models, tmp_path: Path) -> None:
    from ckptbench.demo.tiny import save_diffusers_folder
    from ckptbench.generate.base import FailedImage, ImageJob, SamplingSettings
    from ckptbench.generate.batching import backend_id
    from ckptbench.generate.diffusers_backend import DiffusersGenerator
    from ckptbench.suites import Case

    schnell = tiny_flux_pipeline(flow_models["tokenizer"], seed=SEEDS["schnell"], variant="schnell")
    folder = save_diffusers_folder(schnell, tmp_path / "schnell")
    resolved = resolve_checkpoint(CheckpointSpec(name="s", path=folder))
    assert (resolved.kind, resolved.family, resolved.variant, resolved.prediction) == (
        "diffusers-folder", "flux", "schnell", "flow")
    _same_weights(schnell.transformer, load_pipeline(resolved, CPU, torch.float32).transformer)
    settings = SamplingSettings(sampler="Euler", steps=2, cfg=1.0, width=64, height=64, dtype="fp32")
    case = Case(suite="s", case_id="0", prompt="a red cube")
    job = ImageJob(checkpoint="s", checkpoint_sha256=resolved.sha256, case=case, seed=1, prompt=case.prompt,
                   negative_prompt="", settings=settings, backend=backend_id(), checkpoint_identity=resolved.identity)
    (result,) = DiffusersGenerator(CPU, batch_size=1).generate(resolved, [job])
    assert not isinstance(result, FailedImage), result
