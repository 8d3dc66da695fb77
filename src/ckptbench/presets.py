"""Presets: named starting points for a spec. ``[benchmark] preset = "ghostreview"`` fills in the preset's
keys; any key the spec sets itself wins (tables are merged key by key, lists are replaced whole).

* ``ghostreview`` — GhostReview's published generation settings (METHOD.md): DPM++ 2M Karras, 30 steps,
  CFG 6, 512×768, seeds 1–32 in batches of 4, its negative prompt with the EasyNegative and
  ng_deepnegative_v1_75t negative embeddings (found by name in the embedding folders), and 20 images
  per LoRA case (seeds 1–20).
* ``quick`` — a first look: the same settings with 4 seeds (1–4) everywhere.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any, Literal

from ckptbench.errors import SpecError

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
    },
}

_QUICK: dict[str, Any] = {
    "generation": {
        **_GHOSTREVIEW["generation"],
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
        close = difflib.get_close_matches(str(name), PRESETS, n=1, cutoff=0.5)
        hint = f" — did you mean '{close[0]}'?" if close else ""
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
