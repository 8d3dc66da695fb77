"""Cluster bootstrap over a prompts × seeds design.

A checkpoint's images form a crossed sample: prompts drawn from a population of prompts, seeds drawn
for each prompt. Resampling prompts, then seeds within each resampled prompt, gives an interval for
the mean that reflects both sources of variation (resampling images independently would understate
it whenever prompts differ in difficulty).
"""

from __future__ import annotations

import zlib

import numpy as np


def compact_rows(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move each row's finite values to the left; return the compacted matrix and each row's count."""
    finite = np.isfinite(matrix)
    counts = finite.sum(axis=1)
    order = np.argsort(~finite, axis=1, kind="stable")
    compact = np.take_along_axis(np.where(finite, matrix, 0.0), order, axis=1)
    return compact, counts


def cluster_bootstrap_means(matrix: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap distribution of the image mean of a prompts × seeds matrix (NaN = missing image)."""
    compact, counts = compact_rows(np.asarray(matrix, dtype=np.float64))
    keep = counts > 0
    compact, counts = compact[keep], counts[keep]
    prompts, width = compact.shape
    if prompts == 0:
        return np.full(resamples, np.nan)
    prompt_draw = rng.integers(0, prompts, size=(resamples, prompts))
    drawn_counts = counts[prompt_draw]  # (B, P)
    seed_draw = np.floor(rng.random((resamples, prompts, width)) * drawn_counts[:, :, None]).astype(np.int64)
    values = compact[prompt_draw[:, :, None], seed_draw]
    mask = np.arange(width)[None, None, :] < drawn_counts[:, :, None]
    return (values * mask).sum(axis=(1, 2)) / mask.sum(axis=(1, 2))


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.nanpercentile(samples, [tail, 100.0 - tail])
    return float(low), float(high)


def finite_interval(samples: np.ndarray, level: float = 0.95) -> list[float | None]:
    """Percentile interval over the finite samples (a resample that drew no data is NaN); JSON-ready."""
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return [None, None]
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return [float(low), float(high)]


def stable_rng(seed: int, *labels: str) -> np.random.Generator:
    """A generator that depends only on the seed and the labels, so adding a checkpoint to the pool never
    changes another checkpoint's interval."""
    return np.random.default_rng([seed, *(zlib.crc32(label.encode()) for label in labels)])
