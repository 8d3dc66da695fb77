"""Random LyCORIS networks (LoCon, LoHa, LoKr) for a (tiny) pipeline, in the key layout real files use.

LyCORIS trained through kohya's scripts writes one module per adapted layer, named as kohya names LoRAs
(``lora_unet_<path>`` / ``lora_te_<path>``, dots made underscores; diffusers paths for SD1.x, original-UNet
paths for SDXL), with these parts (shapes for a layer of ``out`` × ``in`` channels and kernel ``k``):

* LoCon: ``lora_down.weight`` ``(r, in, k, k)`` and ``lora_up.weight`` ``(out, r, 1, 1)``; with Tucker,
  ``lora_down`` is 1×1 and ``lora_mid.weight`` ``(r, r, k, k)`` holds the kernel;
* LoHa: ``hada_w1_a`` ``(out, r)``, ``hada_w1_b`` ``(r, in·k·k)`` and the same for ``w2``; with Tucker
  (k > 1): ``hada_t1`` ``(r, r, k, k)``, ``hada_w1_a`` ``(r, out)``, ``hada_w1_b`` ``(r, in)``, and ``*2``;
* LoKr: ``out`` and ``in`` split into factors (``factorization``), ``lokr_w1`` ``(out₁, in₁)`` or
  ``lokr_w1_a``/``lokr_w1_b`` (``decompose_both``), and ``lokr_w2`` ``(out₂, in₂, k, k)`` whole when the
  rank is at least half its larger side, else ``lokr_w2_a`` ``(out₂, r)`` + ``lokr_w2_b`` ``(r, in₂, k, k)``,
  or with Tucker ``lokr_t2`` ``(r, r, k, k)``, ``lokr_w2_a`` ``(r, out₂)``, ``lokr_w2_b`` ``(r, in₂)``
  (the rules of LyCORIS's ``lokr.weight_gen``);

each with a scalar ``alpha`` and, for weight-decomposed ("DoRA") training, ``dora_scale`` ``(1, in, 1, 1)``:
the per-input-channel norm of the original weight, as LyCORIS initialises it, here perturbed as training
would leave it.
"""

from __future__ import annotations

import json
import math
from typing import Literal

import torch

from ckptbench.demo.tiny_lora import KohyaStyle, ldm_unet_names, text_lora_targets

Algorithm = Literal["locon", "loha", "lokr"]
# What LyCORIS's "full" preset and kohya's LoCon adapt in a UNet: transformer blocks, resnets, resamplers.
_UNET_PARTS = ("attentions.", "resnets.", "downsamplers.", "upsamplers.")


def factorization(dimension: int, factor: int = -1) -> tuple[int, int]:
    """``dimension`` = m · n with m ≤ n: the divisor pair closest to the square root, m at most ``factor``
    (LyCORIS's rule; a ``factor`` that divides ``dimension`` is taken as it is)."""
    if factor > 0 and dimension % factor == 0:
        return min(factor, dimension // factor), max(factor, dimension // factor)
    limit = dimension if factor < 0 else factor
    m = max(d for d in range(1, math.isqrt(dimension) + 1) if dimension % d == 0 and d <= limit)
    return m, dimension // m


def unet_lycoris_targets(unet: torch.nn.Module) -> list[str]:
    return [name for name, module in unet.named_modules()
            if any(part in name for part in _UNET_PARTS) and isinstance(module, torch.nn.Linear | torch.nn.Conv2d)]


def lycoris_network(unet: torch.nn.Module, text_encoder: torch.nn.Module | None, algorithm: Algorithm, *,
                    rank: int = 4, alpha: float = 2.0, tucker: bool = False, dora: bool = False,
                    decompose_both: bool = False, style: KohyaStyle = "diffusers", scale: float = 0.4,
                    seed: int = 0) -> dict[str, torch.Tensor]:
    """A random LyCORIS network over the UNet's transformer, resnet and resampler layers and the text encoder's
    linear layers (``text_encoder`` None: UNet only)."""
    generator = torch.Generator().manual_seed(seed)
    ldm_names = ldm_unet_names(unet) if style == "ldm" else {}
    layers = [("lora_unet_" + ldm_names.get(name, name).replace(".", "_"), unet.get_submodule(name))
              for name in unet_lycoris_targets(unet)]
    if text_encoder is not None:
        root = text_encoder if hasattr(text_encoder, "text_model") else None
        layers += [("lora_te_" + name.replace(".", "_"),
                    (root or text_encoder).get_submodule(name if root else name.removeprefix("text_model.")))
                   for name in text_lora_targets(text_encoder)]
    builder = {"locon": _locon, "loha": _loha, "lokr": _lokr}[algorithm]
    state: dict[str, torch.Tensor] = {}
    for prefix, layer in layers:
        def random(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, generator=generator) * scale

        parts = builder(layer.weight.shape, rank, tucker, decompose_both, random)
        parts["alpha"] = torch.tensor(float(alpha))
        if dora:
            parts["dora_scale"] = _dora_scale(layer.weight.detach(), generator)
        state.update({f"{prefix}.{part}": tensor.contiguous() for part, tensor in parts.items()})
    return state


def lycoris_metadata(algorithm: Algorithm, rank: int, alpha: float, **options: bool) -> dict[str, str]:
    """The kohya training metadata LyCORIS files carry (``ss_network_module`` names LyCORIS)."""
    return {"ss_network_module": "lycoris.kohya", "ss_network_dim": str(rank), "ss_network_alpha": str(alpha),
            "ss_network_args": json.dumps({"algo": algorithm, **{k: str(v) for k, v in options.items()}}),
            "ss_base_model_version": "sd_v1", "modelspec.architecture": "stable-diffusion-v1/lora"}


def _dora_scale(weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    columns = weight.transpose(0, 1).reshape(weight.shape[1], -1).norm(dim=1)
    trained = columns * (1 + 0.3 * torch.randn(columns.shape, generator=generator))
    return trained.reshape(1, weight.shape[1], *[1] * (weight.ndim - 2))


def _locon(shape: torch.Size, rank: int, tucker: bool, _: bool, random) -> dict[str, torch.Tensor]:
    out, in_, *kernel = shape
    if not kernel:
        return {"lora_down.weight": random(rank, in_), "lora_up.weight": random(out, rank)}
    if tucker and kernel != [1, 1]:
        return {"lora_down.weight": random(rank, in_, 1, 1), "lora_mid.weight": random(rank, rank, *kernel),
                "lora_up.weight": random(out, rank, 1, 1)}
    return {"lora_down.weight": random(rank, in_, *kernel), "lora_up.weight": random(out, rank, 1, 1)}


def _loha(shape: torch.Size, rank: int, tucker: bool, _: bool, random) -> dict[str, torch.Tensor]:
    out, in_, *kernel = shape
    if tucker and kernel and kernel != [1, 1]:
        return {"hada_t1": random(rank, rank, *kernel), "hada_w1_a": random(rank, out), "hada_w1_b": random(rank, in_),
                "hada_t2": random(rank, rank, *kernel), "hada_w2_a": random(rank, out), "hada_w2_b": random(rank, in_)}
    flat = in_ * math.prod(kernel)
    return {"hada_w1_a": random(out, rank), "hada_w1_b": random(rank, flat),
            "hada_w2_a": random(out, rank), "hada_w2_b": random(rank, flat)}


def _lokr(shape: torch.Size, rank: int, tucker: bool, decompose_both: bool, random) -> dict[str, torch.Tensor]:
    out, in_, *kernel = shape
    (out_1, out_2), (in_1, in_2) = factorization(out), factorization(in_)
    parts: dict[str, torch.Tensor] = {}
    if decompose_both and rank < max(out_1, in_1) / 2:
        parts.update(lokr_w1_a=random(out_1, rank), lokr_w1_b=random(rank, in_1))
    else:
        parts["lokr_w1"] = random(out_1, in_1)
    if rank >= max(out_2, in_2) / 2:
        parts["lokr_w2"] = random(out_2, in_2, *kernel)
    elif tucker and kernel and kernel != [1, 1]:
        parts.update(lokr_t2=random(rank, rank, *kernel), lokr_w2_a=random(rank, out_2), lokr_w2_b=random(rank, in_2))
    else:
        parts.update(lokr_w2_a=random(out_2, rank), lokr_w2_b=random(rank, in_2, *kernel))
    return parts
