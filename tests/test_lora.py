"""LoRAs on the tiny model: kohya (both naming styles) and peft files, weights, unloading, matching checks."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from ckptbench.demo.tiny import tiny_sd15_pipeline
from ckptbench.demo.tiny_lora import kohya_lora, peft_lora, save_lora, unet_lora_targets
from ckptbench.generate.base import FailedImage, GeneratedImage, LoraUse, image_key
from ckptbench.generate.loading import load_pipeline
from ckptbench.generate.lora import (
    LoraApplier,
    LoraError,
    LoraLibrary,
    combine_loras,
    lora_short_hash,
    read_lora_file,
)
from ckptbench.hashing import sha256_file
from ckptbench.prompt import LoraTag
from tests.generation_helpers import checkpoint, generate, job, pixels, settings

RANK, ALPHA = 4, 2.0


@pytest.fixture(scope="module")
def lora_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same random LoRA in three formats, plus LoRAs that match nothing, part, or another architecture."""
    root = tmp_path_factory.mktemp("loras")
    model = tiny_sd15_pipeline(seed=1)  # the architecture of tiny_models["folder_a"]
    unet, text = model.unet, model.text_encoder
    sdxl_like = {
        "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight": torch.randn(4, 2048),
        "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_up.weight": torch.randn(640, 4),
        "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": torch.randn(4, 1280),
        "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight": torch.randn(1280, 4),
    }
    nothing = {"lora_unet_double_blocks_0_img_attn_proj.lora_down.weight": torch.randn(4, 32),
               "lora_unet_double_blocks_0_img_attn_proj.lora_up.weight": torch.randn(32, 4)}
    return {
        "kohya_diffusers": save_lora(kohya_lora(unet, text, "diffusers", RANK, ALPHA), root / "kd.safetensors"),
        "kohya_ldm": save_lora(kohya_lora(unet, text, "ldm", RANK, ALPHA), root / "kl.safetensors"),
        "peft": save_lora(peft_lora(unet, text, RANK, kohya_alpha=ALPHA), root / "pf.safetensors"),
        "other": save_lora(kohya_lora(unet, text, "diffusers", RANK, ALPHA, seed=7), root / "other.safetensors"),
        "unet_only": save_lora(kohya_lora(unet, None, "ldm", RANK, ALPHA, seed=3), root / "unet_only.safetensors"),
        "partial": save_lora(kohya_lora(unet, None, "diffusers", RANK, ALPHA, seed=4,
                                        extra_unet_names=("down_blocks.7.attentions.0.proj_in",)),
                             root / "partial.safetensors"),
        "nothing": save_lora(nothing, root / "nothing.safetensors"),
        "sdxl": save_lora(sdxl_like, root / "sdxl.safetensors"),
    }


def use(path: Path, weight: float = 0.8) -> tuple[LoraUse, ...]:
    return (LoraUse(sha256_file(path), weight, path.stem, path),)


@pytest.fixture(scope="module")
def results(tiny_models, lora_files) -> dict[str, GeneratedImage | FailedImage]:
    """One generate() call: every LoRA case on one loaded pipeline, grouped and ordered by the generator."""
    ckpt = checkpoint(tiny_models["folder_a"])
    cases = {
        "base": job(ckpt),
        "kohya_diffusers": job(ckpt, loras=use(lora_files["kohya_diffusers"])),
        "kohya_ldm": job(ckpt, loras=use(lora_files["kohya_ldm"])),
        "peft": job(ckpt, loras=use(lora_files["peft"])),
        "weight_0": job(ckpt, loras=use(lora_files["kohya_ldm"], 0.0)),
        "two": job(ckpt, loras=combine_loras(use(lora_files["kohya_diffusers"]) + use(lora_files["other"], 0.5))),
        "unet_only": job(ckpt, loras=use(lora_files["unet_only"])),
        "partial": job(ckpt, loras=use(lora_files["partial"])),
        "nothing": job(ckpt, loras=use(lora_files["nothing"])),
        "sdxl": job(ckpt, loras=use(lora_files["sdxl"])),
        # Sorted after the LoRA jobs by its negative prompt: runs on the pipeline the LoRAs were on.
        "after": job(ckpt, negative="zz"),
    }
    outputs = generate(ckpt, list(cases.values()), batch_size=2)
    return dict(zip(cases, outputs, strict=True))


def test_each_format_changes_the_image_and_all_three_agree(results) -> None:
    base = pixels(results["base"])
    kohya = pixels(results["kohya_diffusers"])
    assert np.abs(kohya - base).max() > 10
    # The same LoRA under LDM names and in peft layout (alpha folded in) must give the same image: every
    # layer reached the same module with the same scale.
    assert np.abs(pixels(results["kohya_ldm"]) - kohya).max() <= 1
    assert np.abs(pixels(results["peft"]) - kohya).max() <= 1
    assert np.abs(pixels(results["unet_only"]) - base).max() > 10
    # No warning: every layer each file names, text encoder included, received its weights.
    assert all(results[name].warnings == () for name in ("kohya_diffusers", "kohya_ldm", "peft", "unet_only"))


def test_weight_zero_and_after_unloading_give_the_base_image(results, tiny_models) -> None:
    base = pixels(results["base"])
    assert np.array_equal(pixels(results["weight_0"]), base)
    ckpt = checkpoint(tiny_models["folder_a"])
    (fresh,) = generate(ckpt, [job(ckpt, negative="zz")])
    assert np.array_equal(pixels(results["after"]), pixels(fresh))


def test_two_loras_at_once_differ_from_either(results) -> None:
    two = pixels(results["two"])
    assert np.abs(two - pixels(results["kohya_diffusers"])).max() > 5
    assert np.abs(two - pixels(results["base"])).max() > 10


def test_partial_match_warns_and_no_match_or_other_architecture_fail(results) -> None:
    partial = results["partial"]
    assert isinstance(partial, GeneratedImage)
    layers = len(unet_lora_targets(tiny_sd15_pipeline(seed=1).unet))
    expected = f"partial.safetensors matched only {layers} of its {layers + 1} layers in checkpoint 'a'"
    assert any(expected in warning for warning in partial.warnings), partial.warnings
    nothing = results["nothing"]
    assert isinstance(nothing, FailedImage)
    assert "nothing.safetensors matches no layer of checkpoint 'a'" in nothing.error
    sdxl = results["sdxl"]
    assert isinstance(sdxl, FailedImage)
    assert "sdxl.safetensors was made for SDXL" in sdxl.error and "checkpoint 'a'" in sdxl.error


def addnet_by_hand(path: Path) -> str:
    """kohya's addnet hash as A1111 computes it (modules/hashes.py ``addnet_hash_safetensors``): sha256 of the
    bytes after the 8-byte length and the JSON header, first 12 hex digits."""
    data = path.read_bytes()
    return hashlib.sha256(data[8 + int.from_bytes(data[:8], "little"):]).hexdigest()[:12]


def test_lora_infotext_lists_the_addnet_hash(results, lora_files) -> None:
    text = results["kohya_diffusers"].infotext
    assert f'Lora hashes: "kd: {addnet_by_hand(lora_files["kohya_diffusers"])}"' in text
    assert addnet_by_hand(lora_files["kohya_diffusers"]) != sha256_file(lora_files["kohya_diffusers"])[:12]


def test_short_hash_is_sshs_model_hash_else_addnet_else_sha256(tmp_path, lora_files) -> None:
    """A1111 network.py: ``metadata.get('sshs_model_hash') or sha256_from_cache(..., use_addnet_hash=safetensors)``;
    the short hash is its first 12 characters. Metadata edits leave the addnet hash unchanged."""
    state = read_lora_file(lora_files["unet_only"])
    plain = save_lora(state, tmp_path / "plain.safetensors")
    relabelled = save_lora(state, tmp_path / "relabelled.safetensors", {"ss_output_name": "other"})
    stated = save_lora(state, tmp_path / "stated.safetensors", {"sshs_model_hash": "ABCDEF0123456789" * 4})
    junk = save_lora(state, tmp_path / "junk.safetensors", {"sshs_model_hash": "not a hash, but long"})
    assert lora_short_hash(plain) == addnet_by_hand(plain) == lora_short_hash(relabelled) == lora_short_hash(junk)
    assert lora_short_hash(stated) == "ABCDEF012345"
    torch.save(state, tmp_path / "old.pt")
    assert lora_short_hash(tmp_path / "old.pt") == sha256_file(tmp_path / "old.pt")[:12]


def test_text_encoder_and_unet_weights_and_dyn_on_a_kohya_lora(tiny_models, lora_files) -> None:
    """A1111's multipliers per module (te for text-encoder layers, unet for the rest) and dyn:
    y = W x + b + m · (alpha / rank) · up[:, :dyn] (down[:dyn] x), alpha over the file's full rank."""
    pipeline = load_pipeline(checkpoint(tiny_models["folder_a"]), torch.device("cpu"), torch.float32)
    state = read_lora_file(lora_files["kohya_diffusers"])
    layers = {"unet": "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k",
              "text": "text_model.encoder.layers.0.self_attn.q_proj"}
    text_path = layers["text"] if hasattr(pipeline.text_encoder, "text_model") else layers["text"][len("text_model."):]

    def modules() -> dict[str, torch.nn.Module]:  # fetched again after loading: peft wraps the layers
        return {"unet": pipeline.unet.get_submodule(layers["unet"]),
                "text": pipeline.text_encoder.get_submodule(text_path)}

    base = {part: (m.weight.detach().clone(), 0 if m.bias is None else m.bias.detach().clone())
            for part, m in modules().items()}
    applier = LoraApplier(pipeline, "a")
    path = lora_files["kohya_diffusers"]
    for te, unet, dyn in ((0.6, 0.0, 0), (0.0, 0.9, 0), (0.7, 0.5, 2)):
        applier.activate((LoraUse(sha256_file(path), te, "kd", path, unet, dyn),))
        for part, multiplier in (("text", te), ("unet", unet)):
            prefix = ("lora_te_" if part == "text" else "lora_unet_") + layers[part].replace(".", "_")
            down, up = state[f"{prefix}.lora_down.weight"], state[f"{prefix}.lora_up.weight"]
            ranks = dyn or RANK
            weight, bias = base[part]
            x = torch.randn(3, weight.shape[1], generator=torch.Generator().manual_seed(0))
            expected = x @ weight.T + bias + multiplier * (ALPHA / RANK) * (x @ down[:ranks].T @ up[:, :ranks].T)
            with torch.no_grad():
                assert torch.allclose(modules()[part](x), expected, atol=1e-5), (part, te, unet, dyn)
    applier.close()


def test_active_lora_layer_computes_base_plus_weighted_low_rank_update(tiny_models, lora_files) -> None:
    """Hand-computed: y = W x + b + weight · (alpha / rank) · up(down(x)) on one adapted layer."""
    pipeline = load_pipeline(checkpoint(tiny_models["folder_a"]), torch.device("cpu"), torch.float32)
    name = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"
    base_layer = pipeline.unet.get_submodule(name)
    weight, bias = base_layer.weight.detach().clone(), base_layer.bias
    state = read_lora_file(lora_files["kohya_diffusers"])
    kohya = "lora_unet_" + name.replace(".", "_")
    down, up = state[f"{kohya}.lora_down.weight"], state[f"{kohya}.lora_up.weight"]
    x = torch.randn(3, weight.shape[1], generator=torch.Generator().manual_seed(0))
    expected = x @ weight.T + (0 if bias is None else bias) + 0.6 * (ALPHA / RANK) * (x @ down.T @ up.T)
    applier = LoraApplier(pipeline, "a")
    applier.activate(use(lora_files["kohya_diffusers"], 0.6))
    with torch.no_grad():
        assert torch.allclose(pipeline.unet.get_submodule(name)(x), expected, atol=1e-5)
    applier.activate(())
    with torch.no_grad():
        assert torch.allclose(pipeline.unet.get_submodule(name)(x), x @ weight.T + (0 if bias is None else bias))
    applier.close()
    assert not hasattr(pipeline.unet.get_submodule(name), "lora_A")


def test_image_key_covers_lora_file_and_weight(tiny_models, lora_files) -> None:
    ckpt = checkpoint(tiny_models["folder_a"])
    plain = job(ckpt)
    keys = {plain.key, job(ckpt, loras=use(lora_files["kohya_diffusers"], 0.8)).key,
            job(ckpt, loras=use(lora_files["kohya_diffusers"], 0.7)).key,
            job(ckpt, loras=use(lora_files["other"], 0.8)).key}
    assert len(keys) == 4
    # Without LoRAs the key is what it was before LoRAs existed.
    assert plain.key == image_key(ckpt.sha256, plain.prompt, "", 1, settings(), plain.backend)


def test_library_resolves_names_weights_and_refuses_pickles(tmp_path, lora_files) -> None:
    folder = tmp_path / "loras"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "style.safetensors").write_bytes(lora_files["unet_only"].read_bytes())
    torch.save(read_lora_file(lora_files["unet_only"]), folder / "old.pt")
    library = LoraLibrary((folder,), default_weight=0.8)
    loras = library.loras_for("a cat <lora:style> <lora:style:0.5>", (LoraTag("style", None),))
    assert len(loras) == 1 and loras[0].weight == pytest.approx(0.8 + 0.5 + 0.8)
    assert loras[0].sha256 == sha256_file(lora_files["unet_only"])
    with pytest.raises(LoraError, match=r"pickle file.*allow_pickle_loras"):
        library.find("old")
    with pytest.raises(LoraError, match="did you mean 'style'"):
        library.find("stlye")
    allowed = LoraLibrary((folder,), allow_pickle=True)
    state = read_lora_file(allowed.find("old"), allow_pickle=True)
    assert all(torch.equal(state[k], v) for k, v in read_lora_file(lora_files["unet_only"]).items())
    with pytest.raises(LoraError, match="allow pickle"):
        read_lora_file(folder / "old.pt")
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "style.safetensors").write_bytes(b"x")
    with pytest.raises(LoraError, match="ambiguous"):
        LoraLibrary((folder, tmp_path / "more")).find("style")


def test_loaded_loras_are_kept_for_later_cases_of_the_checkpoint(tiny_models, lora_files, tmp_path) -> None:
    """A LoRA is read once per checkpoint: switching sets back and forth does not read its file again."""
    copy = tmp_path / "kept.safetensors"
    copy.write_bytes(lora_files["unet_only"].read_bytes())
    pipeline = load_pipeline(checkpoint(tiny_models["folder_a"]), torch.device("cpu"), torch.float32)
    applier = LoraApplier(pipeline, "a")
    kept, other = use(copy), use(lora_files["kohya_diffusers"])
    applier.activate(kept)
    applier.activate(())
    applier.activate(other)
    copy.unlink()  # reading it again would now fail
    applier.activate(kept)
    assert pipeline.get_active_adapters() == ["lora_" + kept[0].sha256[:16]]
    applier.close()
