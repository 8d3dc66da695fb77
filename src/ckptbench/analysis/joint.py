"""The joint cluster bootstrap of a suite: one set of resampled (case, seed) cells for every checkpoint.

It gives the rank distributions (median rank, 95% rank interval, share of resamples ranked first); the
intervals of means and differences are cluster-t intervals (``intervals.py``), which cover better.

A resample draws the suite's cases with replacement, then, for every drawn case, its seeds with
replacement (a two-stage cluster bootstrap). Every checkpoint and every scorer is evaluated
on the *same* resampled cells, so differences between checkpoints are paired, ranks come from one
coherent draw, and a composite of several scorers is resampled jointly.

A resample is stored as weights: ``W[b, cell]`` = how often the cell (case, seed) was drawn in
resample b. A checkpoint's resampled mean is then ``W @ values / W @ present`` (missing cells weigh
nothing), which turns the whole bootstrap into a few matrix products.

The draws depend only on the analysis seed, the suite's name and its (case, seed) grid — never on which
checkpoints are in the pool — so adding a checkpoint does not move any other checkpoint's rank draws.
"""

from __future__ import annotations

import zlib
from functools import lru_cache

import numpy as np


def stable_rng(seed: int, *labels: str) -> np.random.Generator:
    """A generator that depends only on the seed and the labels, so adding a checkpoint to the pool never
    changes another checkpoint's draws."""
    return np.random.default_rng([seed, *(zlib.crc32(label.encode()) for label in labels)])


@lru_cache(maxsize=16)
def joint_weights(cases: int, seeds: int, resamples: int, seed: int, suite: str) -> np.ndarray:
    """(resamples, cases × seeds) resampling counts of the cells of a cases × seeds grid (read-only; cached,
    since the per-checkpoint summaries and the suite analysis use the same draws)."""
    rng = stable_rng(seed, "joint-cluster-bootstrap", suite)
    case_draw = rng.integers(0, cases, size=(resamples, cases))
    seed_draw = rng.integers(0, seeds, size=(resamples, cases, seeds))
    cell = case_draw[:, :, None] * seeds + seed_draw
    flat = (np.arange(resamples)[:, None, None] * (cases * seeds) + cell).ravel()
    counts = np.bincount(flat, minlength=resamples * cases * seeds)
    weights = counts.reshape(resamples, cases * seeds).astype(np.float64)
    weights.flags.writeable = False
    return weights


def resampled_means(weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(resamples, rows) means of each row of ``values`` (rows × cells, NaN = missing) under ``weights``.

    A resample that drew none of a row's present cells gives NaN for that row.
    """
    present = np.isfinite(values)
    # einsum, not a BLAS product: each output is summed in the same order whatever the other rows are, so
    # adding a checkpoint (a row) cannot change another checkpoint's numbers even in the last bit.
    sums = np.einsum("bc,rc->br", weights, np.where(present, values, 0.0))
    # Every resample draws exactly cases × seeds cells, so a row without gaps needs no second product.
    counts = np.broadcast_to(weights.sum(axis=1, keepdims=True), sums.shape).copy()
    gaps = ~present.all(axis=1)
    if gaps.any():
        counts[:, gaps] = np.einsum("bc,rc->br", weights, present[gaps].astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)
