"""Tiny random-weight models of the newer families, saved in the layouts Civitai and ComfyUI distribute.

* SDXL v-prediction with zero terminal SNR (NoobAI-XL v-pred style): the SGM single file with the empty
  ``v_pred`` and ``ztsnr`` marker tensors and modelspec metadata that such releases carry.
* FLUX.1 [dev]/[schnell] and SD3.5 (medium architecture) with the real diffusers/transformers classes, a
  T5 tokenizer of the real class over a small vocabulary, saved as full checkpoints (ComfyUI/Civitai) or as
  transformer-only files with separate text-encoder and VAE files, in fp32/bf16/fp16 or fp8 storage.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    DiffusionPipeline,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
)
from safetensors.torch import save_file
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    T5Config,
    T5EncoderModel,
    T5TokenizerFast,
)

from ckptbench.demo.tiny import (
    TINY_SDXL_TEXT_2,
    TINY_TEXT,
    TINY_VAE,
    _trained_looking_final_norm,
    save_single_file,
    tiny_sdxl_pipeline,
)
from ckptbench.models.checkpoint import BUNDLED_CONFIGS
from ckptbench.models.ldm_layout import vae_to_ldm
from ckptbench.models.tokenizer import OPEN_CLIP_PAD, clip_tokenizer
from ckptbench.models.transformer_layout import to_original


def vpred_ztsnr_markers() -> dict[str, torch.Tensor]:
    """The empty marker tensors NoobAI-XL v-pred files carry (read by reForge, Forge and A1111)."""
    return {"v_pred": torch.tensor([]), "ztsnr": torch.tensor([])}


def save_sdxl_vpred_ztsnr(path: Path, seed: int = 6, dtype: torch.dtype = torch.float32) -> Path:
    """A tiny SDXL single file marked v-prediction + zero terminal SNR, with modelspec metadata."""
    metadata = {"modelspec.architecture": "stable-diffusion-xl-v1-base", "modelspec.prediction_type": "v",
                "modelspec.title": path.stem}
    return save_single_file(tiny_sdxl_pipeline(seed=seed), path, dtype=dtype, extras=vpred_ztsnr_markers(),
                            metadata=metadata)


# --- Flux.1 and SD3.5 ----------------------------------------------------------------------------------------
# Tiny T5: wide enough (128) for SD3's CLIP-L + CLIP-G conditioning (32 + 64) to be padded to its width.
TINY_T5 = {"d_model": 128, "d_ff": 128, "d_kv": 16, "num_heads": 4, "num_layers": 2, "vocab_size": 128,
           "feed_forward_proj": "gated-gelu", "dense_act_fn": "gelu_new", "is_gated_act": True,
           "relative_attention_num_buckets": 8, "relative_attention_max_distance": 16, "layer_norm_epsilon": 1e-6,
           "dropout_rate": 0.0, "tie_word_embeddings": False, "pad_token_id": 0, "eos_token_id": 1,
           "decoder_start_token_id": 0}
# A 16-channel-style VAE of the flow families (no quant convs, a shift factor), 4 latent channels here.
TINY_FLOW_VAE = {**TINY_VAE, "use_quant_conv": False, "use_post_quant_conv": False, "force_upcast": False}
TINY_FLUX = {"patch_size": 1, "in_channels": 16, "num_layers": 1, "num_single_layers": 2, "attention_head_dim": 16,
             "num_attention_heads": 2, "joint_attention_dim": TINY_T5["d_model"],
             "pooled_projection_dim": TINY_TEXT["hidden_size"], "axes_dims_rope": [4, 6, 6]}
TINY_SD35 = {"sample_size": 32, "patch_size": 2, "in_channels": 4, "out_channels": 4, "num_layers": 2,
             "attention_head_dim": 8, "num_attention_heads": 4, "caption_projection_dim": 32,
             "joint_attention_dim": TINY_T5["d_model"],
             "pooled_projection_dim": TINY_TEXT["projection_dim"] + TINY_SDXL_TEXT_2["projection_dim"],
             "pos_embed_max_size": 32, "qk_norm": "rms_norm", "dual_attention_layers": [0]}
_T5_PIECES = ("a", "the", "of", "red", "blue", "green", "cube", "sphere", "cat", "dog", "house", "photo", "painting",
              "lighthouse", "at", "dusk", "old", "man", "portrait", "in", "on", "with", "and", ",", ".")


def save_tiny_t5_tokenizer(folder: Path) -> Path:
    """A T5TokenizerFast (SentencePiece-Unigram like the real one: <pad> 0, </s> 1, <unk> 2, '▁' word starts)
    over a small vocabulary, saved as tokenizer.json with its configs — the files ``t5_tokenizer`` points at."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    pieces = ["<pad>", "</s>", "<unk>", "▁"] + [f"▁{w}" for w in _T5_PIECES] + list("abcdefghijklmnopqrstuvwxyz")
    vocab = [(piece, 0.0 if index < 3 else -1.0 - 0.01 * index) for index, piece in enumerate(pieces)]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                             special_tokens=[("</s>", 1)])
    fast = T5TokenizerFast(tokenizer_object=tokenizer, eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                           extra_ids=0, model_max_length=512)
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(folder)
    return folder


def _flow_vae(scaling_factor: float, shift_factor: float) -> AutoencoderKL:
    return AutoencoderKL(**TINY_FLOW_VAE, scaling_factor=scaling_factor, shift_factor=shift_factor)


def _t5() -> T5EncoderModel:
    return T5EncoderModel(T5Config(**TINY_T5))


def tiny_flux_pipeline(tokenizer_folder: Path, seed: int = 0, variant: str = "dev") -> FluxPipeline:
    """A random FLUX.1-architecture pipeline ([dev] with a guidance embedding, or [schnell] without)."""
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(**TINY_FLUX, guidance_embeds=variant == "dev")
    vae = _flow_vae(0.3611, 0.1159)
    text_encoder = CLIPTextModel(CLIPTextConfig(**TINY_TEXT))
    _trained_looking_final_norm(text_encoder)
    scheduler = json.loads((BUNDLED_CONFIGS / f"flux-{variant}/scheduler/scheduler_config.json").read_text())
    pipeline = FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler.from_config(scheduler), vae=vae,
                            text_encoder=text_encoder, tokenizer=clip_tokenizer(), text_encoder_2=_t5(),
                            tokenizer_2=T5TokenizerFast.from_pretrained(str(tokenizer_folder)), transformer=transformer)
    return pipeline.to(torch.float32)


def tiny_sd35_pipeline(tokenizer_folder: Path, seed: int = 0) -> StableDiffusion3Pipeline:
    """A random SD3.5-medium-architecture pipeline (MMDiT-X: dual attention in the first block, QK norm)."""
    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(**TINY_SD35)
    vae = _flow_vae(1.5305, 0.0609)
    text_encoder = CLIPTextModelWithProjection(CLIPTextConfig(**TINY_TEXT))
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**TINY_SDXL_TEXT_2))
    _trained_looking_final_norm(text_encoder)
    _trained_looking_final_norm(text_encoder_2)
    scheduler = json.loads((BUNDLED_CONFIGS / "sd35-medium/scheduler/scheduler_config.json").read_text())
    pipeline = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler.from_config(scheduler), vae=vae,
        text_encoder=text_encoder, tokenizer=clip_tokenizer(), text_encoder_2=text_encoder_2,
        tokenizer_2=clip_tokenizer(OPEN_CLIP_PAD), text_encoder_3=_t5(),
        tokenizer_3=T5TokenizerFast.from_pretrained(str(tokenizer_folder)))
    with torch.no_grad():  # SD3 pipelines read CLIP-L's pooled output unprojected (diffusers and ComfyUI)
        text_encoder.text_projection.weight.copy_(torch.eye(TINY_TEXT["hidden_size"]))
    return pipeline.to(torch.float32)


def _clip_state(encoder: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A transformers CLIP text encoder's tensors in the names released files use (``text_model.*``)."""
    return {(key if key.startswith(("text_model.", "text_projection")) else "text_model." + key): tensor
            for key, tensor in encoder.state_dict().items() if not key.endswith("position_ids")}


def flow_parts(pipeline: DiffusionPipeline) -> dict[str, dict[str, torch.Tensor]]:
    """The pipeline's parts as released files hold them: the transformer in the original layout, each text
    encoder in transformers' names (``clip_l``, ``clip_g``, ``t5xxl``) and the VAE in the LDM layout."""
    architecture = "flux" if isinstance(pipeline, FluxPipeline) else "sd3"
    parts = {"transformer": to_original(pipeline.transformer.state_dict(), architecture),
             "vae": vae_to_ldm(pipeline.vae.state_dict(), pipeline.vae.config),
             "clip_l": _clip_state(pipeline.text_encoder)}
    if architecture == "flux":
        parts["t5xxl"] = dict(pipeline.text_encoder_2.state_dict())
    else:
        parts["clip_g"] = _clip_state(pipeline.text_encoder_2)
        parts["t5xxl"] = dict(pipeline.text_encoder_3.state_dict())
    return {name: {k: v.detach().contiguous().clone() for k, v in part.items()} for name, part in parts.items()}


def _to_storage(state: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """fp8 storage casts the matrices (as fp8 releases do) and keeps 1-D tensors in bf16."""
    if dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
        return {k: v.to(dtype) if v.ndim >= 2 else v.to(torch.bfloat16) for k, v in state.items()}
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}


def save_flow_checkpoint(pipeline: DiffusionPipeline, path: Path, dtype: torch.dtype = torch.float32) -> Path:
    """A full checkpoint as ComfyUI saves it and Civitai shares it: transformer, text encoders and VAE in one."""
    parts = flow_parts(pipeline)
    state = {"model.diffusion_model." + k: v for k, v in _to_storage(parts.pop("transformer"), dtype).items()}
    state.update({"first_stage_model." + k: v for k, v in parts.pop("vae").items()})
    for role, part in parts.items():
        state.update({f"text_encoders.{role}.transformer." + k: v for k, v in part.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"format": "pt"})
    return path


def save_flow_split(pipeline: DiffusionPipeline, folder: Path, transformer_dtype: torch.dtype = torch.float32,
                    with_vae: bool = False) -> dict[str, Path]:
    """The transformer-only release layout: the transformer (bare original names, optionally with its VAE as
    ``first_stage_model.*`` as SD3.5's official files carry it), and ``clip_l``/``clip_g``/``t5xxl`` and ``ae``
    as separate files, as ComfyUI's text_encoders and vae folders hold them."""
    folder.mkdir(parents=True, exist_ok=True)
    parts = flow_parts(pipeline)
    transformer = _to_storage(parts.pop("transformer"), transformer_dtype)
    vae = parts.pop("vae")
    if with_vae:
        transformer.update({"first_stage_model." + k: v for k, v in vae.items()})
    files = {"transformer": folder / "transformer.safetensors"}
    save_file(transformer, str(files["transformer"]), metadata={"format": "pt"})
    if not with_vae:
        files["vae"] = folder / "ae.safetensors"
        save_file(vae, str(files["vae"]), metadata={"format": "pt"})
    for role, part in parts.items():
        files[role] = folder / f"{role}.safetensors"
        save_file(part, str(files[role]), metadata={"format": "pt"})
    return files


def save_flux_lora(transformer: FluxTransformer2DModel, path: Path, layout: str, rank: int = 4, alpha: float = 4.0,
                   seed: int = 0) -> Path:
    """A tiny Flux LoRA over the double blocks' attention and MLPs and the single blocks' output projection, in
    ``layout`` 'kohya' (``lora_unet_double_blocks_0_img_attn_qkv.lora_down``/``lora_up``/``alpha``, kohya's
    sd-scripts), 'comfyui' (``diffusion_model.double_blocks.0.img_attn.qkv.lora_down``/``lora_up``/``alpha``:
    the original names, as ComfyUI saves LoRAs) or 'diffusers' (``transformer.transformer_blocks.0.attn.to_q.
    lora_A``/``lora_B``, as diffusers and its trainers save them)."""
    generator = torch.Generator().manual_seed(seed)
    original = to_original(transformer.state_dict(), "flux")
    wanted = (".img_attn.qkv.weight", ".txt_attn.proj.weight", ".img_mlp.0.weight", ".txt_mlp.2.weight",
              ".linear2.weight")
    targets = {name.removesuffix(".weight"): tensor.shape for name, tensor in original.items()
               if name.endswith(wanted) and name.startswith(("double_blocks.", "single_blocks."))}
    state: dict[str, torch.Tensor] = {}
    if layout == "diffusers":
        targets = {name.removesuffix(".weight"): tensor.shape for name, tensor in transformer.state_dict().items()
                   if name.endswith(("attn.to_q.weight", "attn.to_add_out.weight", "ff.net.0.proj.weight"))}
    for name, (out_features, in_features) in sorted(targets.items()):
        down = torch.randn(rank, in_features, generator=generator) * 0.3
        up = torch.randn(out_features, rank, generator=generator) * 0.3
        if layout == "diffusers":
            state |= {f"transformer.{name}.lora_A.weight": down, f"transformer.{name}.lora_B.weight": up}
        else:
            base = "lora_unet_" + name.replace(".", "_") if layout == "kohya" else "diffusion_model." + name
            state |= {f"{base}.lora_down.weight": down, f"{base}.lora_up.weight": up,
                      f"{base}.alpha": torch.tensor(alpha)}
    metadata = {"ss_base_model_version": "flux1", "modelspec.architecture": "flux-1-dev/lora"} \
        if layout == "kohya" else {"format": "pt"}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=metadata)
    return path
