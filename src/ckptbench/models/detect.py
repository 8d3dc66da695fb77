"""What a model file is, from its tensors' names and shapes and its metadata — never from its file name.

Every rule that fires adds a line of evidence, so ``ckptbench inspect`` and the run log can say *why*
a file was taken as, say, an SD2 v-prediction checkpoint. The rules (see ``RULES``) follow the key
layouts of the original CompVis/Stability (LDM, SGM) code that A1111 and Civitai files use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from ckptbench.lycoris.keys import describe as describe_network
from ckptbench.lycoris.keys import network_evidence
from ckptbench.models.families.base import Prediction
from ckptbench.models.state_dict import ModelFile, TensorInfo

__all__ = ["Detection", "Family", "Kind", "Prediction", "detect", "detect_kind"]

Family = str  # a registered family's name (``ckptbench.models.families``)
Kind = Literal["checkpoint", "lora", "vae", "embedding", "text_encoder", "unknown"]

UNET = "model.diffusion_model."
VAE = "first_stage_model."
CLIP_SD1 = "cond_stage_model.transformer."
OPENCLIP_SD2 = "cond_stage_model.model."
SDXL_CLIP_L = "conditioner.embedders.0.transformer."
SDXL_OPENCLIP_G = "conditioner.embedders.1.model."
REFINER_OPENCLIP_G = "conditioner.embedders.0.model."
V_PREDICTION_MARKERS = ("v_pred", "v")  # empty tensors that ComfyUI, kohya and other trainers add
NON_WEIGHT_KEYS = ("alphas_cumprod", "alphas_cumprod_prev", "betas", "log_one_minus_alphas_cumprod",
                   "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
                   "posterior_variance", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
                   "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "logvar", "model_ema.decay",
                   "model_ema.num_updates", "v_pred", "v", "ztsnr")

RULES = (
    "kind: `model.diffusion_model.*` tensors → checkpoint; `lora_unet_*`/`lora_te*_*` names or "
    "lora_down/lora_up/lora_A/lora_B/LoHa/LoKr tensors → LoRA; `emb_params`, `string_to_param.*`, "
    "`clip_l`/`clip_g` or one [tokens × 768|1024|1280] tensor → embedding; encoder+decoder conv_in → VAE",
    "family: `conditioner.embedders.1.model.*` (OpenCLIP-bigG beside CLIP-L) → sdxl; `cond_stage_model.model.*` "
    "(OpenCLIP-H) → sd2; `cond_stage_model.transformer.*` (OpenAI CLIP-L) → sd15; without a text encoder: "
    "`label_emb` → sdxl, else the UNet cross-attention width 768/1024/2048 → sd15/sd2/sdxl",
    "refused: 9 or 8 UNet input channels (inpainting, instruct-pix2pix), SDXL refiner "
    "(`conditioner.embedders.0.model.*` alone), unCLIP (`label_emb` with an SD1/SD2 text encoder)",
    "zero terminal SNR: a `ztsnr` marker tensor or kohya ss_zero_terminal_snr=True → sampled with the rescaled "
    "schedule (Lin et al. 2023, as A1111/Forge/ComfyUI do); otherwise the standard schedule",
    "prediction: a `v_pred`/`v` marker tensor → v; `__metadata__` modelspec.prediction_type (v/v_prediction or "
    "epsilon), a modelspec.architecture ending in '-v', or kohya ss_v_parameterization=True → as stated; "
    "otherwise sd15 and sdxl → epsilon, and sd2 → A1111's test: the UNet at t=999 on a constant input, "
    "mean(output − input) < −1 → v",
    "checks: the UNet cross-attention width must equal the text encoder width (sdxl: the sum of both); "
    "proj_in is a 1×1 convolution in sd15 and linear in sd2/sdxl; a mismatch is reported as a warning",
)


@dataclass(frozen=True)
class Detection:
    kind: Kind
    family: Family | None = None
    prediction: Prediction | None = None  # from markers in the file only; None: no marker
    prediction_source: str | None = None
    has_vae: bool = False
    has_text_encoder: bool = False
    problem: str | None = None  # why this file cannot be used as a text-to-image checkpoint
    evidence: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())
    zero_terminal_snr: bool | None = None  # from markers in the file only; None: no marker
    zero_terminal_snr_source: str | None = None
    variant: str | None = None  # the family's variant (Flux dev/schnell, SD3.5 large/medium)


def detect(model: ModelFile) -> Detection:
    kind = detect_kind(model)
    if kind == "checkpoint":
        return detect_checkpoint(model)
    if kind == "lora":
        family, evidence = _lora_family(model)
        prediction, source = _prediction_markers(model)
        network = describe_network({name: info.shape for name, info in model.tensors.items()})
        if network is not None:
            evidence.append(network_evidence(network))
        return Detection("lora", family, prediction, source, evidence=tuple(evidence))
    if kind == "embedding":
        family, evidence = _embedding_family(model)
        return Detection("embedding", family, evidence=tuple(evidence))
    if kind == "text_encoder":
        from ckptbench.models.families.flow import ROLE_TITLES, text_encoder_role

        role, prefix = text_encoder_role(model)
        assert role is not None
        return Detection("text_encoder", None, evidence=(f"{ROLE_TITLES[role]} text encoder in transformers' layout "
                                                         f"({prefix or 'no prefix'}) → {role}",))
    if kind == "vae":
        return Detection("vae", None, evidence=("encoder and decoder of an AutoencoderKL",),
                         notes=("SD1.x, SD2.x and SDXL VAEs share one architecture: the tensors cannot tell "
                                "which family it was trained for",))
    return Detection("unknown", evidence=("no checkpoint, LoRA, VAE, text encoder or embedding tensor names",))


def detect_kind(model: ModelFile) -> Kind:
    from ckptbench.models.families import all_families
    from ckptbench.models.families.flow import text_encoder_role

    names = model.tensors
    if model.has_prefix(UNET) or any(family.recognises(model) for family in all_families()):
        return "checkpoint"
    lora_parts = (".lora_down.", ".lora_up.", ".lora_A.", ".lora_B.", ".hada_w1_a", ".lokr_w1", ".lora.down.",
                  ".lora_linear_layer.")
    if any(n.startswith(("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")) or any(p in n for p in lora_parts)
           for n in names):
        return "lora"
    if ("emb_params" in names or model.has_prefix("string_to_param.")
            or (names and set(names) <= {"clip_l", "clip_g"})):
        return "embedding"
    if len(names) == 1:
        (info,) = names.values()
        if len(info.shape) in (1, 2) and info.shape[-1] in (768, 1024, 1280):
            return "embedding"
    for prefix in ("", VAE, "vae."):
        if prefix + "encoder.conv_in.weight" in names and prefix + "decoder.conv_in.weight" in names:
            return "vae"
    if text_encoder_role(model)[0] is not None:
        return "text_encoder"
    return "unknown"


def detect_checkpoint(model: ModelFile) -> Detection:
    from ckptbench.models.families import all_families

    t = model.tensors
    families = all_families()
    match = next((m for family in families if (m := family.match_text_encoders(model)) is not None), None)
    if match is None:
        match = next((m for family in families if (m := family.match_denoiser(model)) is not None), None)
    if match is None:
        width = cross_attention_width(t)
        evidence = (f"no text encoder; UNet cross-attention width {width} → unknown",) if width else \
            ("no text encoder and no known denoiser layout",)
        return Detection("checkpoint", None, *_prediction_markers(model), has_vae=model.has_prefix(VAE),
                         has_text_encoder=False, evidence=evidence,
                         problem="the file has no text encoder and its denoiser matches no known family")
    family = next(f for f in families if f.name == match.family)
    match = family.check(model, match)
    warnings, notes = list(match.warnings), list(match.notes)
    prediction, source = _prediction_markers(model)  # None: decided by the caller (defaults, A1111's SD2 test)
    ztsnr, ztsnr_source = zero_terminal_snr_markers(model)
    ema = sum(1 for n in t if n.startswith("model_ema."))
    if ema:
        notes.append(f"{ema} model_ema.* tensors: ignored, the model.diffusion_model.* weights are used (as A1111 "
                     "does)")
    schedule = [n for n in ("alphas_cumprod", "betas") if n in t]
    if schedule:
        notes.append(f"noise-schedule buffers ({', '.join(schedule)}): compared with the config's schedule when "
                     "loading")
    has_vae = model.has_prefix(VAE) or model.has_prefix("vae.")
    if not has_vae:
        notes.append("no baked VAE (first_stage_model.*): a `vae` must be given in the spec")
    return Detection("checkpoint", match.family, prediction, source, has_vae, match.has_text_encoder, match.problem,
                     match.evidence, tuple(warnings), tuple(notes), ztsnr, ztsnr_source, match.variant)


def _prediction_markers(model: ModelFile) -> tuple[Prediction | None, str | None]:
    for marker in V_PREDICTION_MARKERS:
        if marker in model.tensors:
            return "v", f"marker tensor '{marker}' → v"
    meta = {k: v.strip() for k, v in model.metadata.items()}
    stated = meta.get("modelspec.prediction_type", "").lower()
    if stated in ("v", "v_prediction", "v-prediction", "velocity"):
        return "v", f"__metadata__ modelspec.prediction_type = {stated!r} → v"
    if stated in ("epsilon", "eps"):
        return "epsilon", f"__metadata__ modelspec.prediction_type = {stated!r} → epsilon"
    architecture = meta.get("modelspec.architecture", "").split("/")[0]
    if architecture.endswith("-v"):
        return "v", f"__metadata__ modelspec.architecture = {architecture!r} → v"
    if meta.get("ss_v_parameterization", "").lower() == "true":
        return "v", "__metadata__ ss_v_parameterization = True → v"
    return None, None


def zero_terminal_snr_markers(model: ModelFile) -> tuple[bool | None, str | None]:
    """Whether the file says it was trained with zero terminal SNR: the ``ztsnr`` marker tensor (NoobAI,
    reForge, Forge and A1111 read it) or kohya's ``ss_zero_terminal_snr`` training metadata."""
    if "ztsnr" in model.tensors:
        return True, "marker tensor 'ztsnr' → zero terminal SNR"
    stated = model.metadata.get("ss_zero_terminal_snr", "").strip().lower()
    if stated in ("true", "false"):
        return stated == "true", f"__metadata__ ss_zero_terminal_snr = {stated.capitalize()}"
    return None, None


def cross_attention_width(t: dict[str, TensorInfo]) -> int | None:
    pattern = re.compile(re.escape(UNET) + r".*\.attn2\.to_k\.weight$")
    for name, info in t.items():
        if pattern.match(name) and len(info.shape) == 2:
            return info.shape[1]
    return None


def tensor_width(t: dict[str, TensorInfo], name: str) -> int | None:
    info = t.get(name)
    return info.shape[-1] if info is not None and info.shape else None


def _lora_family(model: ModelFile) -> tuple[Family | None, list[str]]:
    meta = model.metadata
    base = meta.get("ss_base_model_version", "").lower()
    architecture = meta.get("modelspec.architecture", "").lower()
    for source, value in (("ss_base_model_version", base), ("modelspec.architecture", architecture)):
        if value.startswith(("flux1", "flux-1", "flux.1")):
            return "flux", [f"__metadata__ {source} = {value!r} → flux"]
        if value.startswith(("sd3", "stable-diffusion-v3", "stable-diffusion-3")):
            return "sd35", [f"__metadata__ {source} = {value!r} → sd35"]
        if "xl" in value:
            return "sdxl", [f"__metadata__ {source} = {value!r} → sdxl"]
        if value.startswith(("sd_v2", "stable-diffusion-v2")):
            return "sd2", [f"__metadata__ {source} = {value!r} → sd2"]
        if value.startswith(("sd_v1", "stable-diffusion-v1")):
            return "sd15", [f"__metadata__ {source} = {value!r} → sd15"]
    if meta.get("ss_v2", "").lower() == "true":
        return "sd2", ["__metadata__ ss_v2 = True → sd2"]
    names = model.tensors
    flux_blocks = ("double_blocks", "single_blocks", "single_transformer_blocks")
    if any(block in n for n in names for block in flux_blocks):
        return "flux", ["Flux transformer block names (double_blocks/single_blocks) → flux"]
    if any("joint_blocks" in n for n in names):
        return "sd35", ["MMDiT block names (joint_blocks) → sd35"]
    if any(n.startswith(("lora_te1_", "lora_te2_")) for n in names):
        return "sdxl", ["two text-encoder LoRA prefixes (lora_te1_/lora_te2_) → sdxl"]
    for name, info in names.items():
        if re.search(r"attn2[._]to_k(\.lora_down\.weight|\.lora_A\.weight|\.lora\.down\.weight|\.hada_w1_b)$", name) \
                and len(info.shape) == 2:
            width = info.shape[1]
            family: Family | None = {768: "sd15", 1024: "sd2", 2048: "sdxl"}.get(width)  # type: ignore[assignment]
            return family, [f"cross-attention key LoRA input width {width} → {family or 'unknown'}"]
    return None, ["no family marker in the LoRA's names, shapes or metadata"]


def _embedding_family(model: ModelFile) -> tuple[Family | None, list[str]]:
    names = model.tensors
    if "clip_g" in names:
        return "sdxl", ["clip_l/clip_g vectors → sdxl"]
    vectors = names.get("emb_params") or next(
        (info for name, info in names.items() if name.startswith("string_to_param.")), None)
    if vectors is None and len(names) == 1:
        vectors = next(iter(names.values()))
    width = vectors.shape[-1] if vectors is not None and vectors.shape else None
    family: Family | None = {768: "sd15", 1024: "sd2"}.get(width or 0)  # type: ignore[assignment]
    return family, [f"embedding vectors {width} wide → {family or 'unknown'}"]
