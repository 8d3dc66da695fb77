"""Presets: named starting points for a spec. ``[benchmark] preset = "ghostreview"`` fills in the preset's
keys; any key the spec sets itself wins (tables are merged key by key, lists are replaced whole).

* ``ghostreview`` — GhostReview's published generation settings (METHOD.md): DPM++ 2M Karras, 30 steps,
  CFG 6, 512×768, hires fix ×2 at denoise 0.5, seeds 1–32 in batches of 4, its negative prompt with the
  EasyNegative and ng_deepnegative_v1_75t negative embeddings, and 20 images per LoRA case (seeds 1–20).
* ``quick`` — a first look: the same settings with 4 seeds (1–4) everywhere and no hires fix.

A preset's table cannot be removed by a spec (TOML has no "unset"): for no hires fix, use ``quick`` or
no preset.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

from ckptbench.errors import SpecError
from ckptbench.textfiles import closest

PresetName = Literal["ghostreview", "quick"]

GHOSTREVIEW_NEGATIVE = "(worst quality, low quality,NSFW:2), EasyNegative ,ng_deepnegative_v1_75t"

_GHOSTREVIEW: dict[str, Any] = {
    "generation": {
        "sampler": "DPM++ 2M Karras",
        "steps": 30,
        "cfg": 6.0,
        "width": 512,
        "height": 768,
        "seeds": {"from": 1, "to": 32},
        "lora_seeds": {"from": 1, "to": 20},
        "batch_size": 4,
        "negative_prompt": GHOSTREVIEW_NEGATIVE,
        # GhostReview upscaled with the 4x-UltraSharp ESRGAN model; that file is the user's to give
        # ([generation.hires] upscaler = "…/4x-UltraSharp.safetensors"); Lanczos is the built-in pixel upscaler.
        "hires": {"scale": 2.0, "denoise": 0.5, "steps": 0, "upscaler": "lanczos"},
    },
}

_QUICK: dict[str, Any] = {
    "generation": {
        **{key: value for key, value in _GHOSTREVIEW["generation"].items() if key != "hires"},
        "seeds": {"from": 1, "to": 4},
        "lora_seeds": {"from": 1, "to": 4},
    },
}

PRESETS: dict[str, dict[str, Any]] = {"ghostreview": _GHOSTREVIEW, "quick": _QUICK}


def preset(name: str) -> dict[str, Any]:
    return copy.deepcopy(PRESETS[name])


def apply_preset(raw: dict[str, Any], path: Path) -> dict[str, Any]:
    """The spec's raw tables on top of its preset's (no preset: unchanged)."""
    benchmark = raw.get("benchmark")
    name = benchmark.get("preset") if isinstance(benchmark, dict) else None
    if name is None:
        return raw
    if not isinstance(name, str) or name not in PRESETS:
        close = closest(str(name), PRESETS, cutoff=0.5)
        hint = f" — did you mean '{close}'?" if close is not None else ""
        raise SpecError(f"{path}: benchmark.preset: unknown preset '{name}'{hint}; known presets: "
                        f"{', '.join(sorted(PRESETS))}.")
    return merge(preset(name), raw)


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``: nested tables merge, everything else is replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged
