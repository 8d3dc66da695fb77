"""What the flow families refuse (hires fix, sizes not divisible by 16, embeddings, prompt editing) is found by
``validate`` and the dry run before any weights load, with the same sentence the run records for each image."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from ckptbench.cli import app


def flux_spec(write_spec, flow_models, generation: str, prompts: str = '["a red cube", "a blue sphere"]') -> Path:  # type: ignore[no-untyped-def]
    checkpoints = (f'[[checkpoints]]\nname = "flux"\npath = "{flow_models["flux_full"]}"\n'
                   f'config = "{flow_models["flux_config"]}"\nt5_tokenizer = "{flow_models["tokenizer"]}"\n')
    return write_spec(checkpoints=checkpoints, suites=f'[[suites]]\nname = "quality"\nprompts = {prompts}',
                      generation=f"steps = 2\nseeds = [1]\n{generation}")


def test_validate_names_the_flux_images_the_run_would_refuse(write_spec, flow_models) -> None:  # type: ignore[no-untyped-def]
    spec = flux_spec(write_spec, flow_models, "width = 72\nheight = 64",
                     prompts='["a red cube", "a [red:blue:0.5] sphere"]')
    result = CliRunner().invoke(app, ["validate", str(spec)])
    text = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "checkpoint 'flux': 2 of 2 image(s) would fail: flux needs a width and height divisible by 16, not 72×64" \
        in text
    assert "not valid" in text and "kind(s) of image would fail" in text


def test_prompt_editing_on_flux_is_found_before_the_run_and_fails_only_its_image(write_spec, flow_models) -> None:  # type: ignore[no-untyped-def]
    spec = flux_spec(write_spec, flow_models, "width = 64\nheight = 64",
                     prompts='["a red cube", "a [red:blue:0.5] sphere"]')
    checked = CliRunner().invoke(app, ["validate", str(spec)])
    assert checked.exit_code == 2
    assert "1 of 2 image(s) would fail: prompt editing or alternation" in " ".join(checked.output.split())
    dry = CliRunner().invoke(app, ["run", str(spec), "--dry-run"])
    assert "would fail" in dry.output and "prompt editing" in " ".join(dry.output.split())
    run = CliRunner().invoke(app, ["run", str(spec)])
    assert run.exit_code == 3, run.output  # partial: the other prompt's image is made
    results = json.loads((spec.parent / "store" / "results.json").read_text())
    failures = [f for f in results["failures"] if f["scope"] == "image"]
    assert len(failures) == 1 and failures[0]["prompt"] == "a [red:blue:0.5] sphere"
    assert "prompt editing or alternation" in failures[0]["message"]


def test_a_valid_flux_spec_stays_valid(write_spec, flow_models) -> None:  # type: ignore[no-untyped-def]
    spec = flux_spec(write_spec, flow_models, "width = 64\nheight = 64")
    result = CliRunner().invoke(app, ["validate", str(spec)])
    assert result.exit_code == 0, result.output
    assert "valid — 1 checkpoints × 2 cases × 1 seeds = 2 images" in " ".join(result.output.split())


def test_every_tiny_flow_file_fits_its_own_config(flow_models) -> None:  # type: ignore[no-untyped-def]
    from ckptbench.models.families import get_family
    from ckptbench.models.state_dict import open_model_file

    for family, file, config in (("flux", flow_models["flux_full"], flow_models["flux_config"]),
                                 ("flux", flow_models["flux_split"] / "transformer.safetensors",
                                  flow_models["flux_config"]),
                                 ("flux", flow_models["flux_fp8"] / "transformer.safetensors",
                                  flow_models["flux_config"]),
                                 ("sd35", flow_models["sd35_full"], flow_models["sd35_config"]),
                                 ("sd35", flow_models["sd35_split"] / "transformer.safetensors",
                                  flow_models["sd35_config"])):
        assert get_family(family).size_problem(open_model_file(file), config, baked_vae=True) is None, file


def test_a_flux_file_that_does_not_fit_the_bundled_config_is_named_at_validate(write_spec, flow_models) -> None:  # type: ignore[no-untyped-def]
    from diffusers import FluxTransformer2DModel

    tiny = FluxTransformer2DModel.load_config(flow_models["flux_config"] / "transformer")
    width = tiny["num_attention_heads"] * tiny["attention_head_dim"]
    checkpoints = (f'[[checkpoints]]\nname = "flux"\npath = "{flow_models["flux_full"]}"\n'
                   f't5_tokenizer = "{flow_models["tokenizer"]}"\n')  # no `config`: the bundled FLUX.1 [dev] one
    spec = write_spec(checkpoints=checkpoints, generation="steps = 2\nseeds = [1]\nwidth = 64\nheight = 64")
    result = CliRunner().invoke(app, ["validate", str(spec)])
    text = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    # The bundled config's transformer is 24 heads × 128 = 3072 wide (the published FLUX.1 [dev] config).
    assert (f"does not fit the bundled flux config: the transformer's width is {width} in the file "
            f"(model.diffusion_model.img_in.weight) but 3072 in the config") in text
    assert "set `config`" in text


def test_real_size_sd35_headers_fit_their_bundled_configs(tmp_path: Path) -> None:
    import torch
    from accelerate import init_empty_weights
    from diffusers import SD3Transformer2DModel

    from ckptbench.models.families import get_family
    from ckptbench.models.state_dict import open_model_file
    from ckptbench.models.transformer_layout import to_original
    from tests.test_memory import BUNDLED_CONFIGS, _sparse_safetensors

    for variant in ("large", "medium"):
        config = BUNDLED_CONFIGS / f"sd35-{variant}"
        with init_empty_weights():
            settings = SD3Transformer2DModel.load_config(config, subfolder="transformer")
            model = SD3Transformer2DModel.from_config(settings)
        shapes = {name: (tuple(t.shape), torch.bfloat16) for name, t in to_original(model.state_dict(), "sd35").items()}
        header = open_model_file(_sparse_safetensors(tmp_path / f"sd3.5_{variant}.safetensors", shapes))
        assert get_family("sd35").size_problem(header, config, baked_vae=False) is None, variant
        other = BUNDLED_CONFIGS / f"sd35-{'medium' if variant == 'large' else 'large'}"
        assert "the transformer's width is" in str(get_family("sd35").size_problem(header, other, baked_vae=False))
