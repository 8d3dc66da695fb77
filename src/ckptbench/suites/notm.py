"""NoTM ("not the same model"): which LoRA cases a checkpoint must sit out.

A LoRA's showcase images were made with some checkpoint; scoring that same checkpoint on how close it
gets to those images favours it. GhostReview's NoTM variant drops, for each checkpoint under test, the
LoRA cases whose showcase was made with it. The showcase checkpoint is matched by name (file name
without folder and extension, case-insensitive) or by hash (full sha256, or Civitai's 10-digit AutoV2).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath

import numpy as np

_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
_HEX = re.compile(r"[0-9a-f]{10,64}")


def normalise_model_name(text: str) -> str:
    name = PurePath(text.strip().replace("\\", "/")).name.strip().lower()
    for extension in _EXTENSIONS:
        if name.endswith(extension):
            return name[: -len(extension)].strip()
    return name


@dataclass(frozen=True)
class CheckpointIdentity:
    """What a showcase record may call a checkpoint: its name in the spec, its file's name, its hashes."""

    name: str
    source: str | None = None
    sha256: str | None = None

    def names(self) -> set[str]:
        found = {normalise_model_name(self.name)}
        if self.source and not self.source.startswith("hub:"):
            found.add(normalise_model_name(self.source))
        elif self.source:
            found.add(normalise_model_name(self.source.removeprefix("hub:")))
        return found

    def matches(self, showcase_model: str) -> bool:
        text = showcase_model.strip().lower()
        if self.sha256 and _HEX.fullmatch(text) and self.sha256.lower().startswith(text):
            return True
        return normalise_model_name(showcase_model) in self.names()


def notm_exclusions(checkpoints: Sequence[CheckpointIdentity], showcase_models: Sequence[Sequence[str]]
                    ) -> np.ndarray:
    """(checkpoints, cases) bool: True where the case's showcase was made with that checkpoint."""
    excluded = np.zeros((len(checkpoints), len(showcase_models)), dtype=bool)
    for j, models in enumerate(showcase_models):
        for i, checkpoint in enumerate(checkpoints):
            excluded[i, j] = any(checkpoint.matches(model) for model in models if model)
    return excluded
