"""``Case``: one thing to generate, independent of checkpoint and seed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ckptbench.prompt import LoraTag

SuiteKind = Literal["quality", "style", "lora"]


@dataclass(frozen=True)
class Case:
    suite: str
    case_id: str
    prompt: str  # as the user wrote it, A1111 syntax and <lora:…> tags included
    negative_prompt: str | None = None  # None: the benchmark's default negative prompt
    loras: tuple[LoraTag, ...] = ()  # LoRAs named by the suite besides the prompt's own <lora:…> tags
    style: str | None = None  # the style this case asks for (style suites)
    references: tuple[Path, ...] = ()  # reference images the result is compared with (style, LoRA)
    tags: tuple[str, ...] = ()
    kind: SuiteKind = "quality"
    label: str | None = None  # short name for tables (a LoRA's name, a Parti prompt's category)
    # Checkpoints (name or hash) the reference images were made with: NoTM leaves this case out for them.
    showcase_models: tuple[str, ...] = ()
    # Explicit LoRA resolution for this case: name used in the prompt or `loras` → a file name in the LoRA
    # folders, a path, or a hash ("autov2:…", "sha256:…", "autov3:…").
    lora_files: tuple[tuple[str, str], ...] = ()

    def pixel_inputs(self, default_negative: str) -> dict[str, str]:
        """The case's text fields that change the generated pixels (part of the image's content key)."""
        negative = self.negative_prompt if self.negative_prompt is not None else default_negative
        return {"prompt": self.prompt, "negative_prompt": negative}

    def metadata(self) -> dict[str, Any]:
        """What a run records about the case for the analysis and the report (JSON-ready)."""
        return {
            "kind": self.kind, "prompt": self.prompt, "negative_prompt": self.negative_prompt,
            "style": self.style, "label": self.label, "tags": list(self.tags),
            "loras": [{"name": lora.name, "weight": lora.weight} for lora in self.loras],
            "references": [str(path) for path in self.references],
            "showcase_models": list(self.showcase_models),
            "lora_files": dict(self.lora_files),
        }
