"""The original (BFL Flux, Stability MMDiT) key layout of the flow transformers ↔ diffusers' names, both ways.

Civitai and ComfyUI files hold Flux and SD3.5 transformers in the layout of their original code
(``double_blocks.*``/``single_blocks.*``, ``joint_blocks.*``). diffusers converts them one way; its Flux
converter assumes the real model's width (3072) and so cannot read narrower models, and there is no
converter back, which the tiny test models need to be saved as real files are. The tables below describe
the mapping once; ``to_diffusers`` and ``to_original`` apply it in either direction. The tests check
``to_diffusers`` against diffusers' own converters (SD3 on tiny models, Flux at the real width).

Fused projections: a Flux double block's ``qkv`` is q, k and v stacked; a single block's ``linear1`` is q,
k, v and the MLP input stacked; the final layer's modulation is (shift, scale) where diffusers holds
(scale, shift).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

import torch

Kind = Literal["plain", "cat", "swap", "tensor"]


@dataclass(frozen=True)
class Entry:
    original: str  # a module prefix (its .weight/.bias follow), or a whole tensor name for kind "tensor"
    diffusers: tuple[str, ...]
    kind: Kind = "plain"


def _e(original: str, *diffusers: str, kind: Kind = "plain") -> Entry:
    return Entry(original, diffusers, kind)


def flux_entries(double: int, single: int) -> Iterator[Entry]:
    yield from (_e("time_in.in_layer", "time_text_embed.timestep_embedder.linear_1"),
                _e("time_in.out_layer", "time_text_embed.timestep_embedder.linear_2"),
                _e("vector_in.in_layer", "time_text_embed.text_embedder.linear_1"),
                _e("vector_in.out_layer", "time_text_embed.text_embedder.linear_2"),
                _e("guidance_in.in_layer", "time_text_embed.guidance_embedder.linear_1"),
                _e("guidance_in.out_layer", "time_text_embed.guidance_embedder.linear_2"),
                _e("txt_in", "context_embedder"), _e("img_in", "x_embedder"),
                _e("final_layer.linear", "proj_out"),
                _e("final_layer.adaLN_modulation.1", "norm_out.linear", kind="swap"))
    for i in range(double):
        o, d = f"double_blocks.{i}.", f"transformer_blocks.{i}."
        yield from (_e(o + "img_mod.lin", d + "norm1.linear"), _e(o + "txt_mod.lin", d + "norm1_context.linear"),
                    _e(o + "img_attn.qkv", d + "attn.to_q", d + "attn.to_k", d + "attn.to_v", kind="cat"),
                    _e(o + "txt_attn.qkv", d + "attn.add_q_proj", d + "attn.add_k_proj", d + "attn.add_v_proj",
                       kind="cat"),
                    _e(o + "img_attn.norm.query_norm.scale", d + "attn.norm_q.weight", kind="tensor"),
                    _e(o + "img_attn.norm.key_norm.scale", d + "attn.norm_k.weight", kind="tensor"),
                    _e(o + "txt_attn.norm.query_norm.scale", d + "attn.norm_added_q.weight", kind="tensor"),
                    _e(o + "txt_attn.norm.key_norm.scale", d + "attn.norm_added_k.weight", kind="tensor"),
                    _e(o + "img_mlp.0", d + "ff.net.0.proj"), _e(o + "img_mlp.2", d + "ff.net.2"),
                    _e(o + "txt_mlp.0", d + "ff_context.net.0.proj"), _e(o + "txt_mlp.2", d + "ff_context.net.2"),
                    _e(o + "img_attn.proj", d + "attn.to_out.0"), _e(o + "txt_attn.proj", d + "attn.to_add_out"))
    for i in range(single):
        o, d = f"single_blocks.{i}.", f"single_transformer_blocks.{i}."
        yield from (_e(o + "modulation.lin", d + "norm.linear"),
                    _e(o + "linear1", d + "attn.to_q", d + "attn.to_k", d + "attn.to_v", d + "proj_mlp", kind="cat"),
                    _e(o + "norm.query_norm.scale", d + "attn.norm_q.weight", kind="tensor"),
                    _e(o + "norm.key_norm.scale", d + "attn.norm_k.weight", kind="tensor"),
                    _e(o + "linear2", d + "proj_out"))


def sd3_entries(blocks: int) -> Iterator[Entry]:
    yield from (_e("pos_embed", "pos_embed.pos_embed", kind="tensor"), _e("x_embedder.proj", "pos_embed.proj"),
                _e("t_embedder.mlp.0", "time_text_embed.timestep_embedder.linear_1"),
                _e("t_embedder.mlp.2", "time_text_embed.timestep_embedder.linear_2"),
                _e("y_embedder.mlp.0", "time_text_embed.text_embedder.linear_1"),
                _e("y_embedder.mlp.2", "time_text_embed.text_embedder.linear_2"),
                _e("context_embedder", "context_embedder"), _e("final_layer.linear", "proj_out"),
                _e("final_layer.adaLN_modulation.1", "norm_out.linear", kind="swap"))
    for i in range(blocks):
        o, d = f"joint_blocks.{i}.", f"transformer_blocks.{i}."
        last = i == blocks - 1  # its context stream ends here: no output projection or MLP, swapped modulation
        yield from (_e(o + "x_block.attn.qkv", d + "attn.to_q", d + "attn.to_k", d + "attn.to_v", kind="cat"),
                    _e(o + "context_block.attn.qkv", d + "attn.add_q_proj", d + "attn.add_k_proj",
                       d + "attn.add_v_proj", kind="cat"),
                    _e(o + "x_block.attn.ln_q.weight", d + "attn.norm_q.weight", kind="tensor"),
                    _e(o + "x_block.attn.ln_k.weight", d + "attn.norm_k.weight", kind="tensor"),
                    _e(o + "context_block.attn.ln_q.weight", d + "attn.norm_added_q.weight", kind="tensor"),
                    _e(o + "context_block.attn.ln_k.weight", d + "attn.norm_added_k.weight", kind="tensor"),
                    _e(o + "x_block.attn.proj", d + "attn.to_out.0"),
                    _e(o + "context_block.attn.proj", d + "attn.to_add_out"),
                    _e(o + "x_block.attn2.qkv", d + "attn2.to_q", d + "attn2.to_k", d + "attn2.to_v", kind="cat"),
                    _e(o + "x_block.attn2.ln_q.weight", d + "attn2.norm_q.weight", kind="tensor"),
                    _e(o + "x_block.attn2.ln_k.weight", d + "attn2.norm_k.weight", kind="tensor"),
                    _e(o + "x_block.attn2.proj", d + "attn2.to_out.0"),
                    _e(o + "x_block.adaLN_modulation.1", d + "norm1.linear"),
                    _e(o + "context_block.adaLN_modulation.1", d + "norm1_context.linear",
                       kind="swap" if last else "plain"),
                    _e(o + "x_block.mlp.fc1", d + "ff.net.0.proj"), _e(o + "x_block.mlp.fc2", d + "ff.net.2"),
                    _e(o + "context_block.mlp.fc1", d + "ff_context.net.0.proj"),
                    _e(o + "context_block.mlp.fc2", d + "ff_context.net.2"))


def _count(names: Mapping[str, object], marker: str) -> int:
    indices = {int(name.split(marker)[1].split(".")[0]) for name in names if marker in name}
    return max(indices) + 1 if indices else 0


def entries_for(architecture: Literal["flux", "sd3"], names: Mapping[str, object], original: bool) -> list[Entry]:
    """The mapping entries of a state dict's blocks (counted in the original or the diffusers names)."""
    if architecture == "flux":
        if original:
            return list(flux_entries(_count(names, "double_blocks."), _count(names, "single_blocks.")))
        singles = _count(names, "single_transformer_blocks.")
        doubles = _count({n: 0 for n in names if not n.startswith("single_")}, "transformer_blocks.")
        return list(flux_entries(doubles, singles))
    return list(sd3_entries(_count(names, "joint_blocks." if original else "transformer_blocks.")))


def _swap_halves(tensor: torch.Tensor) -> torch.Tensor:
    first, second = tensor.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def to_diffusers(state: dict[str, torch.Tensor], architecture: Literal["flux", "sd3"]) -> dict[str, torch.Tensor]:
    """Original names → diffusers names; tensors are taken out of ``state`` as they are converted."""
    out: dict[str, torch.Tensor] = {}
    for entry in entries_for(architecture, state, original=True):
        width = 0  # a fused weight's input width: splits Flux's linear1 (3 × width + MLP rows) and its bias
        for suffix in ("",) if entry.kind == "tensor" else (".weight", ".bias"):
            name = entry.original + suffix
            if name not in state:
                continue
            tensor = state.pop(name)
            if entry.kind == "cat":
                width = tensor.shape[-1] if tensor.ndim == 2 else width
                parts = len(entry.diffusers)
                sizes = [tensor.shape[0] // 3] * 3 if parts == 3 else [width] * 3 + [tensor.shape[0] - 3 * width]
                pieces = tensor.split(sizes, dim=0)  # views: the fused tensor's memory is not copied
                out.update(zip((d + suffix for d in entry.diffusers), pieces, strict=True))
            else:
                out[entry.diffusers[0] + suffix] = _swap_halves(tensor) if entry.kind == "swap" else tensor
    if state:
        raise ValueError(f"{architecture} transformer: {len(state)} tensors have no diffusers name, e.g. "
                         f"{sorted(state)[:5]}")
    return out


def to_original(state: Mapping[str, torch.Tensor], architecture: Literal["flux", "sd3"]) -> dict[str, torch.Tensor]:
    """diffusers names → the original layout (the inverse of ``to_diffusers``), for writing single files."""
    left = dict(state)
    out: dict[str, torch.Tensor] = {}
    for entry in entries_for(architecture, state, original=False):
        suffixes = ("",) if entry.kind == "tensor" else (".weight", ".bias")
        for suffix in suffixes:
            names = [d + suffix for d in entry.diffusers]
            if not all(name in left for name in names):
                continue
            tensors = [left.pop(name) for name in names]
            if entry.kind == "cat":
                out[entry.original + suffix] = torch.cat(tensors, dim=0)
            else:
                out[entry.original + suffix] = _swap_halves(tensors[0]) if entry.kind == "swap" else tensors[0]
    if left:
        raise ValueError(f"{architecture} transformer: {len(left)} tensors have no original name, e.g. "
                         f"{sorted(left)[:5]}")
    return out
