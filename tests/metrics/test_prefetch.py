"""Prefetching: the next batches are read and preprocessed in background threads while the backbone works,
and the features are the same to the last bit as without prefetching (the batches are the same)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from ckptbench.metrics.engine import prepare_scorers
from ckptbench.metrics.features import FeatureSource
from ckptbench.spec import ScorerOptions, ScorersSpec
from ckptbench.store import Store


@pytest.fixture
def many_images(tiny_scorer_models: dict[str, Path], tmp_path: Path) -> dict[str, Path]:
    """20 images (the tiny ones, repeated with a changed pixel so each is its own file) and one broken file."""
    from PIL import Image

    sources = sorted(tiny_scorer_models["images"].glob("*.png"))
    paths = {}
    for index in range(20):
        image = Image.open(sources[index % len(sources)]).convert("RGB")
        image.putpixel((0, 0), (index, index, index))
        path = tmp_path / f"{index:02d}.png"
        image.save(path)
        paths[f"image-{index:02d}"] = path
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    paths["broken"] = broken
    return paths


def _source(models: dict[str, Path], store: Store, prefetch: int) -> FeatureSource:
    spec = ScorersSpec(use=("clip-score",), options={"clip-score": ScorerOptions(model=str(models["clip"]))})
    (entry,) = prepare_scorers(spec, torch.device("cpu"), store)
    return FeatureSource(store, entry.backbone, torch.device("cpu"), {"image", "pooled"}, batch_size=4,
                         prefetch=prefetch)


def _run(source: FeatureSource, paths: dict[str, Path]) -> tuple[dict[str, dict[str, np.ndarray]], list[str]]:
    keys = list(paths)
    chunks = [keys[start : start + 8] for start in range(0, len(keys), 8)]  # the engine's chunks
    failures: list[str] = []
    found: dict[str, dict[str, np.ndarray]] = {}
    source.schedule(chunks, paths)
    try:
        for chunk in chunks:
            found.update(source.images(chunk, paths, lambda key, _message: failures.append(key)))
    finally:
        source.close()
    return found, failures


def test_prefetched_features_equal_unprefetched_ones_bit_for_bit(tiny_scorer_models, many_images, tmp_path,
                                                                  monkeypatch) -> None:
    threads: set[str] = set()
    read = FeatureSource._read

    def recording_read(self: FeatureSource, keys: list[str], paths: dict[str, Path]):  # type: ignore[no-untyped-def]
        threads.add(threading.current_thread().name)
        return read(self, keys, paths)

    monkeypatch.setattr(FeatureSource, "_read", recording_read)
    plain, plain_failures = _run(_source(tiny_scorer_models, Store(tmp_path / "a"), prefetch=0), many_images)
    assert threads == {threading.current_thread().name}
    threads.clear()
    prefetching = _source(tiny_scorer_models, Store(tmp_path / "b"), prefetch=2)
    ahead, ahead_failures = _run(prefetching, many_images)
    assert any(name.startswith("ckptbench-prefetch") for name in threads)

    assert plain_failures == ahead_failures == ["broken"]
    assert set(plain) == set(ahead) == set(many_images) - {"broken"}
    for key, features in plain.items():
        for name, vector in features.items():
            assert np.array_equal(vector, ahead[key][name]), (key, name)
    assert prefetching.forward_images == 20


def test_cached_images_are_neither_read_nor_embedded_again(tiny_scorer_models, many_images, tmp_path) -> None:
    readable = {key: path for key, path in many_images.items() if key != "broken"}
    store = Store(tmp_path / "store")
    first, _ = _run(_source(tiny_scorer_models, store, prefetch=2), readable)
    again = _source(tiny_scorer_models, store, prefetch=2)
    second, failures = _run(again, readable)
    assert again.forward_images == 0 and again._backbone is None and not failures  # not even loaded
    assert all(np.array_equal(first[key]["image"], second[key]["image"]) for key in first)
