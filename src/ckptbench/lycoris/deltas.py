"""The weight deltas of LoRA/LoCon, LoHa and LoKr modules, and DoRA's weight decomposition.

Restated from the LyCORIS project (``lycoris/functional/{locon,loha,lokr,general}.py``) and A1111's
``extensions-builtin/Lora/network_{lora,hada,lokr}.py``, ``lyco_helpers.py`` and ``network.py`` (v1.10),
which agree on these formulas. With ``out``/``in`` the layer's channels and ``k`` its kernel:

* LoRA: ΔW = up · down (down ``(r, in, *k)``, up ``(out, r)``); LoCon with a Tucker core ``mid``
  ``(r, r, *k)`` and 1×1 ``down``: ΔW[o,i,…] = Σ_ab mid[a,b,…] · up[o,a] · down[b,i].
  ``dyn`` keeps the first ``dyn`` ranks (A1111's ``rebuild_conventional``; not with a Tucker core).
* LoHa: ΔW = (w1_a · w1_b) ⊙ (w2_a · w2_b); with Tucker cores each factor is
  Σ_ab t[a,b,…] · w_a[a,o] · w_b[b,i].
* LoKr: ΔW = w1 ⊗ w2 (Kronecker), each factor stored whole or as a product ``_a · _b``; ``w2`` may have
  a Tucker core like LoHa's.
* scale: the file's ``scale`` if present, else alpha / rank (rank: ``lora_down``'s or ``hada_w1_b``'s
  rows; for LoKr the rows of ``lokr_w1_b``, else of ``lokr_w2_b``, and 1 when both factors are whole),
  else 1.

Applied at multiplier m to a weight W: W + m·scale·ΔW; with ``dora_scale`` (A1111 ``apply_weight_decompose``,
LyCORIS ``apply_dora_scale``): V = W + scale·ΔW, W' = W + m·(dora_scale · V / ‖V‖ − W), the norm taken per
input channel (over every axis but 1) when ``dora_scale`` has the input channels on axis 1 — the layout
A1111 reads — and per output channel when it has them on axis 0 (LyCORIS's ``wd_on_out``).
"""

from __future__ import annotations

import torch

from ckptbench.lycoris.keys import NetworkModule, UnsupportedNetworkError


def module_delta(module: NetworkModule, shape: torch.Size, dyn: int = 0,
                 device: torch.device | None = None) -> torch.Tensor:
    """scale · ΔW of one module, in float32, shaped like the layer's weight ``shape``."""
    t = {part: tensor.to(device=device, dtype=torch.float32) for part, tensor in module.tensors.items()}
    if module.algorithm == "LoRA":
        delta, rank = _lora(t, dyn)
    elif module.algorithm == "LoHa":
        delta, rank = _loha(t)
    else:
        delta, rank = _lokr(t, shape)
    if delta.numel() != shape.numel():
        raise UnsupportedNetworkError(
            f"module {module.name} makes a {tuple(delta.shape)} weight change for a layer of shape {tuple(shape)}; the "
            "file was made for another model architecture.")
    return delta.reshape(shape) * _scale(t, rank)


def delta_shape(module: NetworkModule) -> tuple[int, ...]:
    """The shape of a module's ΔW before it is fitted to its layer, from the factors' shapes alone."""
    t = module.tensors
    if module.algorithm == "LoRA":
        up, down = t["lora_up.weight"].shape, t["lora_down.weight"].shape
        mid = t.get("lora_mid.weight")
        return (up[0], down[1], *mid.shape[2:]) if mid is not None else (up[0], *down[1:])
    if module.algorithm == "LoHa":
        w1_a, w1_b = t["hada_w1_a"].shape, t["hada_w1_b"].shape
        core = t.get("hada_t1")
        return (w1_a[1], w1_b[1], *core.shape[2:]) if core is not None else (w1_a[0], *w1_b[1:])
    w1 = tuple(t["lokr_w1"].shape) if "lokr_w1" in t else (t["lokr_w1_a"].shape[0], t["lokr_w1_b"].shape[1])
    if "lokr_w2" in t:
        w2 = tuple(t["lokr_w2"].shape)
    elif "lokr_t2" in t:
        w2 = (t["lokr_w2_a"].shape[1], t["lokr_w2_b"].shape[1], *t["lokr_t2"].shape[2:])
    else:
        w2 = (t["lokr_w2_a"].shape[0], *t["lokr_w2_b"].shape[1:])
    return (w1[0] * w2[0], w1[1] * w2[1], *w2[2:])


def fits(module: NetworkModule, shape: torch.Size) -> bool:
    """Whether a module's ΔW fits a layer weight of ``shape`` (same outputs, same number of values)."""
    delta = delta_shape(module)
    return delta[0] == shape[0] and torch.Size(delta).numel() == shape.numel()


def has_effect(module: NetworkModule) -> bool:
    """False when ΔW is zero for certain: ΔW is linear in every factor, so one all-zero factor (or a zero
    scale) makes it zero. DoRA rescales the weight even then."""
    if module.dora:
        return True
    scale = module.tensors.get("scale", module.tensors.get("alpha"))
    if scale is not None and float(scale) == 0.0:
        return False
    return all(bool(tensor.any()) for part, tensor in module.tensors.items() if part not in ("alpha", "scale"))


def _scale(t: dict[str, torch.Tensor], rank: int | None) -> float:
    if "scale" in t:
        return float(t["scale"])
    if "alpha" in t and rank is not None:
        return float(t["alpha"]) / rank
    return 1.0


def _lora(t: dict[str, torch.Tensor], dyn: int) -> tuple[torch.Tensor, int]:
    down, up = t["lora_down.weight"], t["lora_up.weight"]
    rank = down.shape[0]
    up2 = up.reshape(up.shape[0], -1)
    down2 = down.reshape(rank, -1)
    if "lora_mid.weight" in t:
        mid = t["lora_mid.weight"]
        return torch.einsum("ab...,oa,bi->oi...", mid, up2, down2), rank
    if dyn:
        up2, down2 = up2[:, :dyn], down2[:dyn]
    delta = up2 @ down2
    return delta.reshape(up.shape[0], *down.shape[1:]) if down.ndim > 2 else delta, rank


def _tucker(core: torch.Tensor, out_factor: torch.Tensor, in_factor: torch.Tensor) -> torch.Tensor:
    """Σ_ab core[a,b,…] · out_factor[a,o] · in_factor[b,i] → (o, i, …)."""
    return torch.einsum("ab...,ao,bi->oi...", core, out_factor, in_factor)


def _loha(t: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    rank = t["hada_w1_b"].shape[0]
    if "hada_t1" in t:
        first = _tucker(t["hada_t1"], t["hada_w1_a"], t["hada_w1_b"])
        second = _tucker(t["hada_t2"], t["hada_w2_a"], t["hada_w2_b"])
    else:
        first = t["hada_w1_a"] @ t["hada_w1_b"].reshape(rank, -1)
        second = t["hada_w2_a"] @ t["hada_w2_b"].reshape(t["hada_w2_b"].shape[0], -1)
    return first * second, rank


def _lokr(t: dict[str, torch.Tensor], shape: torch.Size) -> tuple[torch.Tensor, int | None]:
    rank: int | None = None
    if "lokr_w1" in t:
        w1 = t["lokr_w1"]
    else:
        w1 = t["lokr_w1_a"] @ t["lokr_w1_b"]
        rank = t["lokr_w1_b"].shape[0]
    if "lokr_w2" in t:
        w2 = t["lokr_w2"]
    elif "lokr_t2" in t:
        w2 = _tucker(t["lokr_t2"], t["lokr_w2_a"], t["lokr_w2_b"])
        rank = rank or t["lokr_w2_b"].shape[0]
    else:
        w2_b = t["lokr_w2_b"]
        w2 = (t["lokr_w2_a"] @ w2_b.reshape(w2_b.shape[0], -1)).reshape(-1, *w2_b.shape[1:])
        rank = rank or w2_b.shape[0]
    if w2.ndim == 2 and len(shape) == 4:  # a whole w2 stored flat for a convolution: (b, d·k·k)
        w2 = w2.reshape(w2.shape[0], -1, *shape[2:])
    w1 = w1.reshape(*w1.shape, *[1] * (w2.ndim - w1.ndim))
    return torch.kron(w1, w2.contiguous()), rank  # kron views its operands: a Tucker product is not contiguous


def patched_weight(weight: torch.Tensor, module: NetworkModule, multiplier: float, dyn: int = 0
                   ) -> torch.Tensor:
    """The float32 weight after applying ``module`` at ``multiplier`` to ``weight`` (returned, not modified)."""
    base = weight.float()
    delta = module_delta(module, weight.shape, dyn, weight.device)
    if not module.dora:
        return base + multiplier * delta
    return base + multiplier * (decomposed(base + delta, module.tensors["dora_scale"], module.name) - base)


def decomposed(weight: torch.Tensor, magnitude: torch.Tensor, name: str = "") -> torch.Tensor:
    """DoRA: ``weight`` with each input (or output) channel rescaled to the norm ``magnitude`` gives it."""
    magnitude = magnitude.to(device=weight.device, dtype=torch.float32)
    out_channels, in_channels = weight.shape[0], weight.shape[1]
    trailing = [1] * (weight.ndim - 1)
    if magnitude.numel() == in_channels and (magnitude.ndim < 2 or magnitude.shape[0] == 1):
        norm = weight.transpose(0, 1).reshape(in_channels, -1).norm(dim=1).reshape(1, in_channels, *trailing[1:])
        return weight * (magnitude.reshape(norm.shape) / norm)
    if magnitude.numel() == out_channels:
        norm = weight.reshape(out_channels, -1).norm(dim=1).reshape(out_channels, *trailing)
        return weight * (magnitude.reshape(norm.shape) / norm)
    raise UnsupportedNetworkError(f"module {name} has a dora_scale of shape {tuple(magnitude.shape)}, which fits "
                                  f"neither the input nor the output channels of its layer {tuple(weight.shape)}.")
