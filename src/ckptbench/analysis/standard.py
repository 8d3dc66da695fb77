"""GhostReview's "standard" score: the mean per-prompt z-score of a checkpoint over the pool.

Each image's score is standardised within its prompt over all images of all checkpoints in the pool,
z = (x − mean) / std with ddof 0, then averaged per checkpoint. The number is **pool-relative**: adding
or removing a checkpoint changes the mean and std of every prompt and so every checkpoint's score. We
keep it as a labelled compatibility column; rankings use pool-independent quantities.
"""

from __future__ import annotations

import numpy as np


def pool_z_scores(values: np.ndarray) -> np.ndarray:
    """z-scores of a (checkpoints, cases, seeds) array within each case over the whole pool (ddof 0)."""
    finite = np.isfinite(values)
    counts = finite.sum(axis=(0, 2))
    filled = np.where(finite, values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = filled.sum(axis=(0, 2)) / counts
        centred = np.where(finite, values - means[None, :, None], 0.0)
        stds = np.sqrt((centred**2).sum(axis=(0, 2)) / counts)
        z = (values - means[None, :, None]) / stds[None, :, None]
    # A case on which every image scored the same carries no ranking information (and z is 0/0).
    return np.where(np.isfinite(z), z, np.nan)


def ghostreview_standard(values: np.ndarray, excluded: np.ndarray | None = None) -> np.ndarray:
    """Per checkpoint mean of the pool z-scores; ``excluded`` (checkpoints, cases) drops cells *after*
    standardising over the full pool, as GhostReview's LoRALoss_NoTM does."""
    z = pool_z_scores(values)
    if excluded is not None:
        z = np.where(excluded[:, :, None], np.nan, z)
    finite = np.isfinite(z)
    counts = finite.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, np.where(finite, z, 0.0).sum(axis=(1, 2)) / counts, np.nan)
