"""The spec keys of LoRAs and the hires fix, end to end through a run on the tiny models."""

from __future__ import annotations

import pytest
from PIL import Image

from ckptbench.demo.tiny import tiny_sd15_pipeline
from ckptbench.demo.tiny_lora import kohya_lora, save_lora
from ckptbench.errors import SpecError
from ckptbench.infotext import parse_infotext
from ckptbench.runner import run_benchmark
from ckptbench.spec_load import load_spec
from ckptbench.store import Store


def test_spec_keys_validate_and_resolve(write_spec, tmp_path) -> None:
    (tmp_path / "loras").mkdir()
    spec = load_spec(write_spec(generation='lora_dirs = ["loras"]\ndefault_lora_weight = 0.6\n'
                                           '[generation.hires]\nscale = 1.5\ndenoise = 0.4\nupscaler = "lanczos"'))
    assert spec.generation.lora_dirs == ((tmp_path / "loras").resolve(),)
    assert spec.generation.default_lora_weight == 0.6
    hires = spec.generation.hires
    assert hires is not None and (hires.scale, hires.denoise, hires.steps, hires.upscaler) == (1.5, 0.4, 0, "lanczos")
    assert load_spec(write_spec()).generation.hires is None

    with pytest.raises(SpecError, match=r"generation\.lora_dirs\[0\].*is not a folder"):
        load_spec(write_spec(generation='lora_dirs = ["nowhere"]'))
    with pytest.raises(SpecError, match=r"generation\.hires\.upscaler.*neither a known upscaler"):
        load_spec(write_spec(generation='[generation.hires]\nupscaler = "4x-Missing.pth"'))
    with pytest.raises(SpecError, match=r"generation\.hires\.denoise"):
        load_spec(write_spec(generation="[generation.hires]\ndenoise = 0"))
    with pytest.raises(SpecError, match="did you mean 'denoise'"):
        load_spec(write_spec(generation="[generation.hires]\ndenoising = 0.5"))


def test_run_with_loras_and_hires_records_images_failures_and_infotext(write_spec, tiny_models, tmp_path) -> None:
    model = tiny_sd15_pipeline(seed=2)  # architecture of checkpoint b
    save_lora(kohya_lora(model.unet, model.text_encoder, "ldm"), tmp_path / "loras" / "style.safetensors")
    path = write_spec(
        checkpoints=f'[[checkpoints]]\nname = "b"\npath = "{tiny_models["folder_b"]}"',
        generation='sampler = "Euler"\nsteps = 2\nwidth = 64\nheight = 64\nseeds = [1]\nlora_dirs = ["loras"]\n'
                   '[generation.hires]\nscale = 2\ndenoise = 0.5\nsteps = 1',
        suites='[[suites]]\nname = "q"\nprompts = ["a cube <lora:style>", "a cube <lora:missing:1>"]',
        scorers=f'[scorers]\nuse = ["clip-score"]\n[scorers.clip-score]\nmodel = "{tiny_models["clip"]}"',
    )
    outcome = run_benchmark(load_spec(path))
    assert outcome.generated == 1
    store = Store(outcome.store)
    try:
        failures = store.run_failures(outcome.run_id)
        items = store.run_items(outcome.run_id)
        row = items.iloc[0]
        image = Image.open(store.root / str(row["image"]))
        infotext = parse_infotext(image.info["parameters"])
    finally:
        store.close()
    assert [f["scope"] for f in failures] == ["case"]
    assert "q/001" in str(failures[0]["message"]) and "LoRA 'missing' was not found" in str(failures[0]["message"])
    assert image.size == (128, 128)
    assert infotext.prompt == "a cube <lora:style>"  # as A1111 writes it: tags kept in the prompt text
    assert infotext.parameters["Lora hashes"].startswith("style: ")
    assert infotext.parameters["Hires upscaler"] == "Latent" and infotext.parameters["Hires steps"] == "1"
