"""LyCORIS files (LoCon, LoHa, LoKr) on the tiny model: they change the image, weight 0 and unloading give the
base image bit for bit, the merged layer weights follow the published formulas, mismatches are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ckptbench.demo.tiny import tiny_sd15_pipeline, tiny_sdxl_pipeline
from ckptbench.demo.tiny_lora import kohya_lora, save_lora
from ckptbench.demo.tiny_lycoris import lycoris_metadata, lycoris_network
from ckptbench.generate.base import FailedImage, GeneratedImage, LoraUse
from ckptbench.generate.loading import load_pipeline
from ckptbench.generate.lora import LoraApplier, LoraError, adapter_name, read_lora_file
from ckptbench.hashing import sha256_file
from ckptbench.lycoris.keys import read_modules
from ckptbench.lycoris.targets import pipeline_targets
from ckptbench.models.inspection import inspect_path
from tests.generation_helpers import checkpoint, generate, job, pixels
from tests.test_lycoris_math import differences, reference_dora, reference_loha, reference_lokr, reference_lora

ALPHA = 2.0
# Each kind as LyCORIS writes it, with the variants its files have: Tucker cores on the 3×3 convolutions,
# dora_scale, LoKr with both factors split; and the SDXL-style original-UNet names.
NETWORKS = {
    "locon": ("locon", {"tucker": True, "dora": True}),
    "loha": ("loha", {"tucker": True}),
    "lokr": ("lokr", {"rank": 2, "tucker": True, "decompose_both": True}),
    "loha_ldm": ("loha", {"style": "ldm", "dora": True, "seed": 3}),
    # A plain SD1.x LoCon in original-UNet names: diffusers' converter fails on it, the merge path applies it.
    "locon_ldm": ("locon", {"style": "ldm", "seed": 4}),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lycoris")
    model = tiny_sd15_pipeline(seed=1)  # the architecture and weights of tiny_models["folder_a"]
    saved = {}
    for name, (kind, options) in NETWORKS.items():
        options = {"rank": 4, **options}
        state = lycoris_network(model.unet, model.text_encoder, kind, alpha=ALPHA, **options)
        saved[name] = save_lora(state, root / f"{name}.safetensors", lycoris_metadata(kind, options["rank"], ALPHA))
    plain = lycoris_network(model.unet, model.text_encoder, "locon", alpha=ALPHA, seed=6)
    saved["locon_plain"] = save_lora(plain, root / "locon_plain.safetensors", lycoris_metadata("locon", 4, ALPHA))
    saved["kohya"] = save_lora(kohya_lora(model.unet, model.text_encoder), root / "kohya.safetensors")
    partial = lycoris_network(model.unet, None, "loha", alpha=ALPHA, seed=5)
    partial.update({f"lora_unet_down_blocks_7_resnets_0_conv1.{part}": torch.ones(2, 2)
                    for part in ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")})
    saved["partial"] = save_lora(partial, root / "partial.safetensors")
    xl = tiny_sdxl_pipeline(seed=6)
    saved["sdxl"] = save_lora(lycoris_network(xl.unet, None, "lokr", style="ldm"), root / "sdxl.safetensors")
    oft = {"lora_unet_down_blocks_0_attentions_0_proj_in.oft_blocks": torch.ones(4, 8, 8),
           "lora_unet_down_blocks_0_attentions_0_proj_in.alpha": torch.tensor(1.0)}
    saved["oft"] = save_lora(oft, root / "oft.safetensors")
    untrained = lycoris_network(model.unet, None, "loha", alpha=ALPHA)
    untrained.update({key: torch.zeros_like(value) for key, value in untrained.items() if "hada_w2_a" in key})
    saved["untrained"] = save_lora(untrained, root / "untrained.safetensors")
    return saved


def use(path: Path, weight: float = 0.8, unet_weight: float | None = None) -> tuple[LoraUse, ...]:
    return (LoraUse(sha256_file(path), weight, path.stem, path, unet_weight),)


@pytest.fixture(scope="module")
def results(tiny_models, files) -> dict[str, GeneratedImage | FailedImage]:
    ckpt = checkpoint(tiny_models["folder_a"])
    cases = {"base": job(ckpt)}
    for name in [*NETWORKS, "locon_plain"]:
        cases[name] = job(ckpt, loras=use(files[name]))
        cases[f"{name}_0"] = job(ckpt, loras=use(files[name], 0.0))
    cases.update({
        "loha_text_only": job(ckpt, loras=use(files["loha"], 0.8, 0.0)),
        "loha_unet_only": job(ckpt, loras=use(files["loha"], 0.0, 0.8)),
        "mixed": job(ckpt, loras=tuple(sorted(use(files["lokr"]) + use(files["locon"], 0.5)))),
        "kohya": job(ckpt, loras=use(files["kohya"])),  # a diffusers/peft adapter on layers LyCORIS merges into
        "kohya_and_loha": job(ckpt, loras=tuple(sorted(use(files["kohya"]) + use(files["loha"])))),
        **{name: job(ckpt, loras=use(files[name])) for name in ("partial", "sdxl", "oft", "untrained")},
        "after": job(ckpt, negative="zz"),  # sorted after the LoRA jobs: runs on the pipeline they were on
    })
    outputs = generate(ckpt, list(cases.values()), batch_size=2)
    return dict(zip(cases, outputs, strict=True))


@pytest.mark.parametrize("name", [*NETWORKS, "locon_plain"])
def test_each_network_changes_the_image_and_weight_zero_gives_the_base_image(results, name: str) -> None:
    base = pixels(results["base"])
    assert np.abs(pixels(results[name]) - base).max() > 10
    assert results[name].warnings == ()  # every module found its layer
    assert np.array_equal(pixels(results[f"{name}_0"]), base)


def test_text_encoder_and_unet_weights_act_separately(results) -> None:
    base, both = pixels(results["base"]), pixels(results["loha"])
    text_only, unet_only = pixels(results["loha_text_only"]), pixels(results["loha_unet_only"])
    assert np.abs(text_only - base).max() > 5 and np.abs(unet_only - base).max() > 5
    assert np.abs(text_only - both).max() > 5 and np.abs(unet_only - both).max() > 5
    assert np.abs(pixels(results["mixed"]) - pixels(results["lokr"])).max() > 5
    together = pixels(results["kohya_and_loha"])
    assert np.abs(together - pixels(results["kohya"])).max() > 5 and np.abs(together - both).max() > 5


def test_unloading_gives_the_base_image(results, tiny_models) -> None:
    ckpt = checkpoint(tiny_models["folder_a"])
    (fresh,) = generate(ckpt, [job(ckpt, negative="zz")])
    assert np.array_equal(pixels(results["after"]), pixels(fresh))


def test_partial_unsupported_other_architecture_and_untrained_files(results) -> None:
    partial = results["partial"]
    assert isinstance(partial, GeneratedImage)
    assert any("partial.safetensors matched only" in warning and "the other 1 have no effect" in warning
               for warning in partial.warnings), partial.warnings
    sdxl, oft, untrained = results["sdxl"], results["oft"], results["untrained"]
    assert isinstance(sdxl, FailedImage) and "was made for a model with cross-attention width 96" in sdxl.error
    assert isinstance(oft, FailedImage) and "LyCORIS OFT layer (oft_blocks)" in oft.error
    assert isinstance(untrained, FailedImage) and "untrained.safetensors has no effect" in untrained.error


def _reference(module, base: torch.Tensor, multiplier: float) -> torch.Tensor:
    t, shape = module.tensors, base.shape
    if module.algorithm == "LoRA":
        delta, rank = reference_lora(t), t["lora_down.weight"].shape[0]
    elif module.algorithm == "LoHa":
        delta, rank = reference_loha(t), t["hada_w1_b"].shape[0]
    else:
        delta = reference_lokr(t)
        rank = t["lokr_w1_b"].shape[0] if "lokr_w1_b" in t else t["lokr_w2_b"].shape[0] if "lokr_w2_b" in t else None
    delta = delta.reshape(shape) * (ALPHA / rank if rank else 1.0)
    if "dora_scale" in t:
        return reference_dora(base, delta, t["dora_scale"], multiplier)
    return base.double() + multiplier * delta


def effective_weights(pipeline, use_: tuple[LoraUse, ...]) -> dict[int, torch.Tensor]:
    """Layer (by id) → the weight it computes with: merged weights as they are, plus a peft adapter's delta
    (``get_delta_weight`` includes alpha / rank and the weight given to ``set_adapters``)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    wrapped = {id(module.get_base_layer()): module for component in (pipeline.unet, pipeline.text_encoder)
               for module in component.modules() if isinstance(module, BaseTunerLayer)}
    name = adapter_name(use_[0])
    layers = {id(target.layer): target.layer for target in pipeline_targets(pipeline).values()}
    return {key: layer.weight.detach() + (wrapped[key].get_delta_weight(name).detach() if key in wrapped else 0)
            for key, layer in layers.items()}


@pytest.mark.parametrize("name", [*NETWORKS, "locon_plain"])
def test_applied_weights_match_the_reference_formula(tiny_models, files, name: str) -> None:
    """Every adapted layer after ``activate`` at 0.8 (text encoder 0.6): the reference formula within 1e-6, for
    merged networks and for the plain LoCon diffusers applies as a peft adapter."""
    pipeline = load_pipeline(checkpoint(tiny_models["folder_a"]), torch.device("cpu"), torch.float32)
    targets = pipeline_targets(pipeline)
    modules = [(module, targets[module.name].layer) for module in read_modules(read_lora_file(files[name]))]
    originals = [layer.weight.detach().clone() for _, layer in modules]
    applier = LoraApplier(pipeline, "a")
    applier.activate(use(files[name], 0.6, 0.8))
    applied = effective_weights(pipeline, use(files[name]))
    worst = (0.0, 0.0)
    for (module, layer), original in zip(modules, originals, strict=True):
        multiplier = 0.6 if module.name.startswith("lora_te") else 0.8
        found = differences(applied[id(layer)], _reference(module, original, multiplier))
        worst = (max(worst[0], found[0]), max(worst[1], found[1]))
    # Shown with pytest -s, like the other parity tests; relative: to the layer's largest reference value.
    print(f"\nparity lycoris {name}: layers={len(modules)} max|Δ|={worst[0]:.3g} max|Δ|/max|ref|={worst[1]:.3g}")
    assert worst[0] < 1e-6
    applier.close()
    assert all(torch.equal(layer.weight, original) for (_, layer), original in zip(modules, originals, strict=True))


def test_original_unet_names_reach_the_layers_a1111_means() -> None:
    """SD1.x original-layout names (what A1111 maps to its LDM model), checked by hand for the tiny UNet, which
    has SD1.5's block layout (2 layers per block, no attention in the first up block)."""
    targets = pipeline_targets(tiny_sd15_pipeline(seed=1))
    expected = {"input_blocks_1_0_in_layers_2": "down_blocks.0.resnets.0.conv1",
                "input_blocks_3_0_op": "down_blocks.0.downsamplers.0.conv",
                "input_blocks_4_0_skip_connection": "down_blocks.1.resnets.0.conv_shortcut",
                "middle_block_1_proj_in": "mid_block.attentions.0.proj_in",
                "middle_block_2_emb_layers_1": "mid_block.resnets.1.time_emb_proj",
                "output_blocks_2_1_conv": "up_blocks.0.upsamplers.0.conv",
                "output_blocks_5_2_conv": "up_blocks.1.upsamplers.0.conv",
                "output_blocks_11_1_transformer_blocks_0_attn2_to_k":
                    "up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_k"}
    for name, path in expected.items():
        assert targets[f"lora_unet_{name}"].path == path
    assert targets["lora_te_text_model_encoder_layers_0_self_attn_q_proj"].component == "text_encoder"


def test_inspect_reports_lycoris_networks_by_kind(files) -> None:
    types = {name: inspect_path(files[name])["network"]["type"] for name in ("locon", "loha", "lokr")}
    assert types == {"locon": "LoCon", "loha": "LoHa", "lokr": "LoKr"}
    report = inspect_path(files["locon"])
    assert report["kind"] == "lora" and report["network"]["tucker"] and report["network"]["dora"]
    assert any("LyCORIS LoCon network" in line for line in report["evidence"])
    assert inspect_path(files["oft"])["network"] is None


def test_a_network_that_fails_to_merge_leaves_no_layer_changed(tiny_models, files, tmp_path) -> None:
    pipeline = load_pipeline(checkpoint(tiny_models["folder_a"]), torch.device("cpu"), torch.float32)
    state = read_lora_file(files["loha"])
    state["lora_unet_conv_in.hada_w1_a"] = torch.ones(3, 2)  # a module whose ΔW fits no layer
    state.update({f"lora_unet_conv_in.{part}": torch.ones(2, 2) for part in ("hada_w1_b", "hada_w2_a", "hada_w2_b")})
    broken = save_lora(state, tmp_path / "broken.safetensors")
    before = {name: p.detach().clone() for name, p in pipeline.unet.named_parameters()}
    with pytest.raises(LoraError, match="another model architecture"):
        LoraApplier(pipeline, "a").activate(use(broken))
    assert all(torch.equal(p, before[name]) for name, p in pipeline.unet.named_parameters())
