"""Features of one backbone, computed at most once per image and kept in the store where they are small.

``FeatureSource`` loads its backbone only when a feature is missing from the store (so a head added
later, or a set scorer on features already computed, costs no forward pass), caches text embeddings per
distinct text for the run, and computes reference-image features once per file.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from ckptbench.metrics.backbones import Backbone, load_backbone
from ckptbench.metrics.base import BackboneSpec
from ckptbench.metrics.references import ReferenceSet

FailureHandler = Callable[[str, str], None]  # (image key, message)


class ScoreStore(Protocol):
    """What scoring reads from and writes to the store: the ``Store`` itself in this process, or a
    ``StoreSnapshot`` in a worker, whose writes the driver replays onto the store."""

    def embeddings(self, backbone_key: str, image_keys: Sequence[str]) -> dict[str, np.ndarray]: ...

    def put_embeddings(self, backbone_key: str, vectors: dict[str, np.ndarray]) -> None: ...

    def reference_summary(self, set_key: str, scorer_key: str) -> dict[str, np.ndarray] | None: ...

    def put_reference_summary(self, set_key: str, scorer_key: str, arrays: dict[str, np.ndarray]) -> None: ...

    def existing_scores(self, scorer_key: str, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]: ...

    def put_scores(self, scorer_key: str, rows: Sequence[tuple[str, str, float]]) -> None: ...

    def put_set_score(self, scorer_key: str, set_key: str, value: float, images: int, references: int) -> None: ...

    def transaction(self) -> AbstractContextManager[object]:
        """The writes made inside are stored together or not at all."""
        ...


def reference_image_key(digest: str) -> str:
    """Store key of a reference file's features: by content, so a moved file is found again."""
    return f"file:{digest}"


class FeatureSource:
    def __init__(self, store: ScoreStore, spec: BackboneSpec, device: torch.device, wanted: set[str],
                 batch_size: int = 16) -> None:
        self.store = store
        self.spec = spec
        self.device = device
        self.wanted = set(wanted)
        self.batch_size = batch_size
        self._backbone: Backbone | None = None
        self._texts: dict[str, np.ndarray] = {}
        self.forward_images = 0  # images that went through the backbone (for reports and tests)
        self.load_seconds = 0.0  # time spent loading the backbone (throughput records)

    @property
    def backbone(self) -> Backbone:
        if self._backbone is None:
            started = time.perf_counter()
            self._backbone = load_backbone(self.spec, self.device)
            self.load_seconds = time.perf_counter() - started
        return self._backbone

    @property
    def meta(self) -> dict[str, Any]:
        return self.backbone.meta

    def _store_key(self, name: str) -> str:
        return f"{self.spec.key}/{name}"

    def images(self, keys: Sequence[str], paths: dict[str, Path], failed: FailureHandler
               ) -> dict[str, dict[str, np.ndarray]]:
        """key → feature name → vector for every readable image; unreadable ones are reported to ``failed``."""
        found: dict[str, dict[str, np.ndarray]] = {key: {} for key in keys}
        if self.spec.cache_features:
            for name in self.wanted:
                for key, vector in self.store.embeddings(self._store_key(name), list(keys)).items():
                    found[key][name] = vector
        needed = [key for key in keys if set(found[key]) != self.wanted]
        for start in range(0, len(needed), self.batch_size):
            chunk = needed[start : start + self.batch_size]
            images, loaded = [], []
            for key in chunk:
                try:
                    with Image.open(paths[key]) as image:
                        images.append(image.convert("RGB"))
                    loaded.append(key)
                except Exception as error:  # an unreadable image fails its own scores only
                    failed(key, f"cannot read image {paths[key]}: {error}")
            if not images:
                continue
            computed = self.backbone.embed_images(images, self.wanted)
            self.forward_images += len(images)
            for name, vectors in computed.items():
                fresh = dict(zip(loaded, vectors, strict=True))
                if self.spec.cache_features:
                    self.store.put_embeddings(self._store_key(name), fresh)
                for key, vector in fresh.items():
                    found[key][name] = vector
        return {key: value for key, value in found.items() if set(value) == self.wanted}

    def references(self, references: ReferenceSet) -> dict[str, np.ndarray]:
        """Feature name → (R, …) array of a reference set's images (raises if one cannot be read)."""
        keys = [reference_image_key(digest) for digest in references.digests]
        paths = dict(zip(keys, references.files, strict=True))
        problems: list[str] = []
        features = self.images(keys, paths, lambda _key, message: problems.append(message))
        if problems:
            what = problems[0].replace("cannot read image", "cannot read reference image", 1)
            raise OSError(f"{what}; replace it with a readable image or remove it from the references.")
        return {name: np.stack([features[key][name] for key in keys]) for name in self.wanted}

    def texts(self, texts: Sequence[str]) -> np.ndarray:
        # One text per forward pass: batched kernels round differently for different batch contents, and
        # which texts are new depends on what an earlier (perhaps interrupted) run already scored; alone, a
        # text's embedding is the same in every run. Prompts are few next to images, so this costs little.
        for text in sorted({text for text in texts if text not in self._texts}):
            self._texts[text] = self.backbone.embed_texts([text])[0]
        return np.stack([self._texts[text] for text in texts])
