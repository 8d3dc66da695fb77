"""Features of one backbone, computed at most once per image and kept in the store where they are small.

``FeatureSource`` loads its backbone only when a feature is missing from the store (so a head added
later, or a set scorer on features already computed, costs no forward pass), caches text embeddings per
distinct text for the run, and computes reference-image features once per file.

While the backbone works on one batch, the next batches' images are read, decoded and preprocessed in
background threads (the way a DataLoader with workers prefetches): the batches the engine will ask for
are announced with ``schedule``. The batches themselves (which images go through the network together)
are exactly those of a run without prefetching, so the features are the same to the last bit.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
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


def prefetch_batches(device: torch.device) -> int:
    """Batches prepared ahead (one thread each). On a CPU one is enough: the network's own threads use the
    cores, and preparing is a few percent of the work; a GPU eats batches faster than one core prepares them."""
    return 1 if device.type == "cpu" else max(1, min(8, (os.cpu_count() or 2) - 1))


@dataclass
class _Batch:
    """One batch's images, read and (when the backbone is loaded) preprocessed, with the unreadable ones."""

    keys: list[str] = field(default_factory=list)
    images: list[Image.Image] = field(default_factory=list)
    pixels: torch.Tensor | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)  # (key, message)


class FeatureSource:
    def __init__(self, store: ScoreStore, spec: BackboneSpec, device: torch.device, wanted: set[str],
                 batch_size: int = 16, prefetch: int | None = None) -> None:
        self.store = store
        self.spec = spec
        self.device = device
        self.wanted = set(wanted)
        self.batch_size = batch_size
        self.prefetch = prefetch_batches(device) if prefetch is None else prefetch
        self._backbone: Backbone | None = None
        self._texts: dict[str, np.ndarray] = {}
        self._upcoming: deque[list[str]] = deque()  # key lists ``images`` will be asked for, in order
        self._paths: dict[str, Path] = {}
        self._pending: dict[tuple[str, ...], Future[_Batch]] = {}
        self._pool: ThreadPoolExecutor | None = None
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

    def schedule(self, chunks: Iterable[Sequence[str]], paths: dict[str, Path]) -> None:
        """Announce the key lists ``images`` will be asked for, in this order, so that their images are read
        and preprocessed ahead while the backbone works (and while it loads)."""
        self._upcoming.extend(list(chunk) for chunk in chunks)
        self._paths.update(paths)
        self._prefetch()

    def close(self) -> None:
        """Stop preparing batches nobody will ask for."""
        self._upcoming.clear()
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _cached(self, keys: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
        found: dict[str, dict[str, np.ndarray]] = {key: {} for key in keys}
        if self.spec.cache_features:
            for name in self.wanted:
                for key, vector in self.store.embeddings(self._store_key(name), list(keys)).items():
                    found[key][name] = vector
        return found

    def _batches(self, needed: list[str]) -> list[list[str]]:
        return [needed[start : start + self.batch_size] for start in range(0, len(needed), self.batch_size)]

    def images(self, keys: Sequence[str], paths: dict[str, Path], failed: FailureHandler
               ) -> dict[str, dict[str, np.ndarray]]:
        """key → feature name → vector for every readable image; unreadable ones are reported to ``failed``."""
        if self._upcoming and self._upcoming[0] == list(keys):
            self._upcoming.popleft()  # announced, now asked for: its batches are in preparation already
        self._paths.update(paths)
        found = self._cached(keys)
        batches = self._batches([key for key in keys if set(found[key]) != self.wanted])
        for index, batch_keys in enumerate(batches):
            if tuple(batch_keys) in self._pending:
                _ = self.backbone  # load while the batch is read in the background
            batch = self._take(batch_keys)
            if index + 1 < len(batches):  # this call's next batch, then the announced ones
                self._submit(batches[index + 1])
            self._prefetch()
            for key, message in batch.failures:  # an unreadable image fails its own scores only
                failed(key, message)
            if not batch.keys:
                continue
            if batch.pixels is not None:
                computed = self.backbone.embed_pixels(batch.pixels, self.wanted)
            else:
                computed = self.backbone.embed_images(batch.images, self.wanted)
            self.forward_images += len(batch.keys)
            for name, vectors in computed.items():
                fresh = dict(zip(batch.keys, vectors, strict=True))
                if self.spec.cache_features:
                    self.store.put_embeddings(self._store_key(name), fresh)
                for key, vector in fresh.items():
                    found[key][name] = vector
        return {key: value for key, value in found.items() if set(value) == self.wanted}

    def _take(self, keys: list[str]) -> _Batch:
        """The batch, prepared ahead if it was announced, else read now."""
        future = self._pending.pop(tuple(keys), None)
        batch = future.result() if future is not None else self._read(keys, self._paths)
        if batch.pixels is None and batch.keys and hasattr(self.backbone, "prepare_images"):
            batch.pixels = self.backbone.prepare_images(batch.images)  # read before the backbone was loaded
        return batch

    def _prefetch(self) -> None:
        """Keep ``prefetch`` announced batches in preparation (store lookups stay in this thread)."""
        while self.prefetch > 0 and len(self._pending) < self.prefetch and self._upcoming:
            chunk = self._upcoming.popleft()
            found = self._cached(chunk)
            for batch_keys in self._batches([key for key in chunk if set(found[key]) != self.wanted]):
                self._submit(batch_keys)

    def _submit(self, keys: list[str]) -> None:
        if self.prefetch <= 0 or tuple(keys) in self._pending:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.prefetch, thread_name_prefix="ckptbench-prefetch")
        self._pending[tuple(keys)] = self._pool.submit(self._read, keys, {key: self._paths[key] for key in keys})

    def _read(self, keys: list[str], paths: dict[str, Path]) -> _Batch:
        """Read and decode a batch's images; preprocess them too once the backbone is loaded (any thread)."""
        batch = _Batch()
        for key in keys:
            try:
                with Image.open(paths[key]) as image:
                    batch.images.append(image.convert("RGB"))
                batch.keys.append(key)
            except Exception as error:
                batch.failures.append((key, f"cannot read image {paths[key]}: {error}"))
        backbone = self._backbone
        if batch.keys and backbone is not None and hasattr(backbone, "prepare_images"):
            batch.pixels = backbone.prepare_images(batch.images)
        return batch

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
