"""Which 95% interval covers best on GhostReview's design? The evidence behind ``analysis/intervals.py``.

    PYTHONPATH=src python benchmarks/interval_coverage.py [GHOSTREVIEW_RELEASE] [--data-sets 1000]

Simulates data sets of the release's design — 8 checkpoints × 30 prompts × 32 seeds, checkpoint effects
fixed, prompts and seeds random, with the variance components of the release's LAION scores — and counts
how often each interval holds the true population mean of each checkpoint and the true difference of each
of the 28 pairs. Three shapes of the random effects, all with the same variances:

* ``normal`` — normal effects (the cluster-t interval is exact here);
* ``skewed`` — standardised gamma(2) effects (skewness 1.4 for every component);
* ``empirical`` — the release's own estimated LAION effects, resampled (its prompt effects have skewness −2).

Intervals compared: ``percentile-joint`` (the two-stage cluster bootstrap ckptbench used before: prompts,
then seeds within prompts), ``cluster-t`` (what ckptbench uses now), ``bca`` and ``percentile-cases``
(``scipy.stats.bootstrap`` over per-prompt means) and ``studentised`` (bootstrap-t over prompts).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from scipy import stats

from ckptbench.analysis.intervals import ratio_means, standard_error, t_interval
from ckptbench.analysis.joint import joint_weights, resampled_means
from ckptbench.analysis.variance import variance_components
from ckptbench.imports.ghostreview import read_results

DEFAULT_RELEASE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ghostreview"
PARTS = ("prompt", "model_x_prompt", "seed_shared", "seed_within")
METHODS = ("percentile-joint", "cluster-t", "bca", "percentile-cases", "studentised")


def real_laion(release: Path) -> np.ndarray:
    frame = read_results(release).frame
    rows = frame[(frame["suite"] == "quality") & (frame["scorer"] == "laion-aesthetic-v2")]
    table = rows.pivot_table(index=["checkpoint", "case_id"], columns="seed", values="value")
    return table.to_numpy().reshape(rows["checkpoint"].nunique(), -1, table.shape[1])


def empirical_effects(real: np.ndarray) -> dict[str, np.ndarray]:
    """The release's estimated effects of each kind, standardised (mean 0, SD 1), to resample from."""
    cell = real.mean(axis=2)
    grand = cell.mean()
    prompt = cell.mean(axis=0) - grand
    interaction = cell - cell.mean(axis=1, keepdims=True) - prompt[None]
    seed = real.mean(axis=0) - real.mean(axis=(0, 2))[:, None]
    within = real - cell[:, :, None] - seed[None]
    return {name: (x.ravel() - x.mean()) / x.std() for name, x in
            zip(PARTS, (prompt, interaction, seed, within), strict=True)}


def draw(rng: np.random.Generator, shape: str, size: tuple[int, ...], pool: np.ndarray) -> np.ndarray:
    if shape == "normal":
        return rng.normal(size=size)
    if shape == "skewed":
        return (rng.gamma(2.0, size=size) - 2.0) / np.sqrt(2.0)
    return rng.choice(pool, size=size)


def data_set(rng: np.random.Generator, shape: str, means: np.ndarray, sd: dict[str, float],
             pools: dict[str, np.ndarray], prompts: int, seeds: int) -> np.ndarray:
    m = len(means)
    sizes = {"prompt": (1, prompts, 1), "model_x_prompt": (m, prompts, 1), "seed_shared": (1, prompts, seeds),
             "seed_within": (m, prompts, seeds)}
    return means[:, None, None] + sum(sd[p] * draw(rng, shape, sizes[p], pools[p]) for p in PARTS)


def covered(rows: np.ndarray, truth: np.ndarray, weights: np.ndarray, rng: np.random.Generator,
            resamples: int) -> dict[str, np.ndarray]:
    """Per method, whether each row's interval holds its truth; rows: (rows, prompts, seeds)."""
    hits: dict[str, np.ndarray] = {}
    boot = resampled_means(weights, rows.reshape(len(rows), -1))
    low, high = np.percentile(boot, [2.5, 97.5], axis=0)
    hits["percentile-joint"] = (low <= truth) & (truth <= high)
    low, high = t_interval(ratio_means(rows))
    hits["cluster-t"] = (low <= truth) & (truth <= high)
    case_means = rows.mean(axis=2)
    for method, name in (("BCa", "bca"), ("percentile", "percentile-cases")):
        found = stats.bootstrap((case_means,), np.mean, axis=-1, method=method, n_resamples=resamples,
                                random_state=rng).confidence_interval
        hits[name] = (found.low <= truth) & (truth <= found.high)
    prompts = case_means.shape[1]
    drawn = case_means[:, rng.integers(0, prompts, size=(resamples, prompts))]  # (rows, B, prompts)
    centre = case_means.mean(axis=1)
    error = standard_error(ratio_means(rows))[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        t_star = (drawn.mean(axis=2) - centre[:, None]) / (drawn.std(axis=2, ddof=1) / np.sqrt(prompts))
    q_low, q_high = np.nanpercentile(t_star, [2.5, 97.5], axis=1)
    hits["studentised"] = (centre - q_high * error <= truth) & (truth <= centre - q_low * error)
    return hits


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("release", nargs="?", type=Path, default=DEFAULT_RELEASE)
    parser.add_argument("--data-sets", type=int, default=1000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--shapes", default="normal,skewed,empirical")
    args = parser.parse_args()
    real = real_laion(args.release)
    components = variance_components(real)["components"]
    sd = {p: float(np.sqrt(max(components[p], 0.0))) for p in PARTS}
    pools = empirical_effects(real)
    means = real.mean(axis=(1, 2))
    checkpoints, prompts, seeds = real.shape
    pairs = [(i, j) for i in range(checkpoints) for j in range(i + 1, checkpoints)]
    truth_pairs = np.array([means[i] - means[j] for i, j in pairs])
    print(f"design {checkpoints} × {prompts} × {seeds}; LAION variance components: "
          + ", ".join(f"{p} {components[p]:.4f}" for p in PARTS) + f"; {args.data_sets} data sets per shape")
    for shape in args.shapes.split(","):
        rng = np.random.default_rng(7)
        means_hit = {m: [] for m in METHODS}
        pairs_hit = {m: [] for m in METHODS}
        started = time.perf_counter()
        for index in range(args.data_sets):
            values = data_set(rng, shape, means, sd, pools, prompts, seeds)
            weights = joint_weights(prompts, seeds, args.resamples, index, "coverage")
            differences = np.stack([values[i] - values[j] for i, j in pairs])
            for store, rows, truth in ((means_hit, values, means), (pairs_hit, differences, truth_pairs)):
                for method, hit in covered(rows, truth, weights, rng, args.resamples).items():
                    store[method].append(hit)
        joint_weights.cache_clear()
        print(f"\n{shape} ({time.perf_counter() - started:.0f} s): coverage of the 95% intervals")
        print(f"  {'interval':18s} {'means':>7s} {'pairs':>7s}")
        for method in METHODS:
            print(f"  {method:18s} {np.mean(means_hit[method]):7.4f} {np.mean(pairs_hit[method]):7.4f}")
    print("\nMonte-Carlo standard error of a coverage near 0.95: about "
          f"{np.sqrt(0.95 * 0.05 / args.data_sets):.4f} (data sets share prompts, so not less)")


if __name__ == "__main__":
    main()
