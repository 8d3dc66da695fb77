"""Distribution scorers: one number per set of images (a checkpoint's images of one suite) against a
reference image folder (``[scorers.NAME] references = "<folder>"``). Lower is better for all three.

``kid`` — Kernel Inception Distance as clean-fid computes it (``cleanfid.fid.kernel_distance``): FID
Inception pool3 features, polynomial kernel k(x, y) = (xᵀy/d + 1)³, the unbiased MMD² averaged over 100
random subsets of size min(N, R, 1000). The subsets are drawn from a fixed seed (clean-fid uses NumPy's
global state), so the same sets always give the same number. Unbiased, so usable on small sets; ≈0 (and
possibly slightly negative) for two samples of one distribution.

Both feed the network clean-fid's "clean" input, (x − 128)/128 after its resize (version 2; version 1
scaled x/255·2 − 1 as pytorch-fid does, 2.2 % off clean-fid's KID and 1.8 % off its FID).

``fid`` — Fréchet Inception Distance: mean and covariance of the pool3 features in float64, and the
Fréchet distance of the two Gaussians (``cleanfid.fid.frechet_distance``). FID is strongly biased for
small sets; it is refused below 2,048 images per set (the feature dimension, below which the covariance
is singular). Use ``kid`` for smaller sets.

``cmmd`` — CMMD (Jayasumana et al. 2024, google-research/cmmd): L2-normalised CLIP ViT-L/14@336 image
embeddings, MMD² with a Gaussian RBF kernel (σ = 10), the biased estimator over all pairs, ×1000.
The images go through the model's own CLIP image processor (the reference resizes with its own bicubic
resize to 336 first; the numbers can differ slightly).
"""

from __future__ import annotations

import numpy as np

from ckptbench.metrics.base import SetScorer
from ckptbench.metrics.inception import HUB_SOURCE

FID_MIN_IMAGES = 2048
KID_SUBSETS = 100
KID_MAX_SUBSET = 1000
KID_SEED = 0
CMMD_SIGMA = 10.0
CMMD_SCALE = 1000.0


def kernel_inception_distance(features: np.ndarray, references: np.ndarray, subsets: int = KID_SUBSETS,
                              max_subset_size: int = KID_MAX_SUBSET, seed: int = KID_SEED) -> float:
    """clean-fid's ``kernel_distance`` with its random subsets drawn from ``RandomState(seed)``.

    Written out because clean-fid draws from NumPy's global random state; the draws here come in the
    same order (references, then images), so seeding the global state gives clean-fid's exact number.
    """
    rng = np.random.RandomState(seed)
    x_all, y_all = np.asarray(references, dtype=np.float64), np.asarray(features, dtype=np.float64)
    dim = x_all.shape[1]
    m = min(len(x_all), len(y_all), max_subset_size)
    total = 0.0
    for _ in range(subsets):
        x = x_all[rng.choice(len(x_all), m, replace=False)]
        y = y_all[rng.choice(len(y_all), m, replace=False)]
        within = (x @ x.T / dim + 1) ** 3 + (y @ y.T / dim + 1) ** 3
        between = (x @ y.T / dim + 1) ** 3
        total += (within.sum() - np.diag(within).sum()) / (m - 1) - between.sum() * 2 / m
    return float(total / subsets / m)


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(features, dtype=np.float64)
    return values.mean(axis=0), np.cov(values, rowvar=False)


def frechet_inception_distance(features: np.ndarray, references: np.ndarray) -> float:
    from cleanfid.fid import frechet_distance  # imported here: clean-fid is slow to import

    mu1, sigma1 = gaussian_statistics(features)
    mu2, sigma2 = gaussian_statistics(references)
    return float(frechet_distance(mu1, sigma1, mu2, sigma2))


def cmmd(features: np.ndarray, references: np.ndarray, sigma: float = CMMD_SIGMA, scale: float = CMMD_SCALE
         ) -> float:
    """Biased MMD² with a Gaussian RBF kernel on L2-normalised embeddings, × ``scale``."""
    x = np.asarray(references, dtype=np.float64)
    y = np.asarray(features, dtype=np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    gamma = 1.0 / (2.0 * sigma**2)

    def mean_kernel(a: np.ndarray, b: np.ndarray) -> float:
        squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
        return float(np.mean(np.exp(-gamma * squared)))

    return scale * (mean_kernel(x, x) + mean_kernel(y, y) - 2.0 * mean_kernel(x, y))


class KID(SetScorer):
    """Kernel Inception Distance (clean-fid definition, fixed-seed subsets) against a reference folder."""

    name = "kid"
    default_model = HUB_SOURCE
    features = ("pool3",)

    def extra_identity(self) -> dict[str, object]:
        return {"subsets": KID_SUBSETS, "max_subset_size": KID_MAX_SUBSET, "seed": KID_SEED}

    def score_set(self, features: np.ndarray, references: np.ndarray) -> float:
        return kernel_inception_distance(features, references)


class FID(SetScorer):
    """Fréchet Inception Distance (float64 statistics, clean-fid resizing); refused below 2,048 images."""

    name = "fid"
    default_model = HUB_SOURCE
    features = ("pool3",)
    min_images = FID_MIN_IMAGES

    def check_sizes(self, images: int, references: int) -> str | None:
        if images < FID_MIN_IMAGES or references < FID_MIN_IMAGES:
            return (f"scorer 'fid' needs at least {FID_MIN_IMAGES:,} images in each set (got {images:,} images and "
                    f"{references:,} references): FID is strongly biased on small sets; use 'kid' instead, "
                    "which is unbiased")
        return None

    def score_set(self, features: np.ndarray, references: np.ndarray) -> float:
        return frechet_inception_distance(features, references)


class CMMD(SetScorer):
    """CMMD: RBF-kernel MMD on normalised CLIP ViT-L/14@336 embeddings, ×1000."""

    name = "cmmd"
    default_model = "openai/clip-vit-large-patch14-336"
    features = ("image",)

    def extra_identity(self) -> dict[str, object]:
        return {"sigma": CMMD_SIGMA, "scale": CMMD_SCALE}

    def score_set(self, features: np.ndarray, references: np.ndarray) -> float:
        return cmmd(features, references)
