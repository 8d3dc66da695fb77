"""Variance decomposition of the crossed design: model, prompt, model × prompt and seed.

Design: every checkpoint (model, m) generates every case (prompt, p) with the same seeds; a seed belongs
to its prompt (seed 3 of prompt 1 and seed 3 of prompt 2 are different starting noises) and is shared
by all models. The model is

    y[m, p, s] = μ + a[m] + b[p] + ab[m, p] + c[p, s] + e[m, p, s]

with c the shared seed effect (a seed that gives a good image on one model tends to on the others) and
e what is left (the seed's effect peculiar to one model). Components are estimated by the ANOVA method
of moments (expected mean squares with every effect random):

    E[MS_M]  = σ²e + S σ²ab + P S σ²a          E[MS_MP] = σ²e + S σ²ab
    E[MS_P]  = σ²e + S σ²ab + M σ²c + M S σ²b  E[MS_S(P)] = σ²e + M σ²c      E[MS_E] = σ²e

Imbalance: only (case, seed) cells that every checkpoint has are used (a cell missing for one model is
dropped for all, so the model contrast stays paired); cases then may have different numbers of seeds
n_p. The between-cell sums of squares use the table of cell means with S replaced by the harmonic mean
of n_p (the method of unweighted means); the within-cell sums of squares are exact. For a balanced
design this is exactly the classical ANOVA. Negative estimates are reported as they are and set to 0
for the shares.
"""

from __future__ import annotations

from typing import Any

import numpy as np

COMPONENTS = ("model", "prompt", "model_x_prompt", "seed_shared", "seed_within")


def variance_components(values: np.ndarray) -> dict[str, Any]:
    """Decompose a (checkpoints, cases, seeds) array; see the module docstring for the estimator."""
    models = [m for m in range(values.shape[0]) if np.isfinite(values[m]).any()]
    data = values[models]
    complete = np.isfinite(data).all(axis=0)  # (cases, seeds): cells every model has
    n_p = complete.sum(axis=1)
    keep = n_p > 0
    data, complete, n_p = data[:, keep], complete[keep], n_p[keep]
    n_models, n_cases = data.shape[0], data.shape[1]
    used_cells = int(complete.sum()) * n_models
    dropped = int(np.isfinite(values).sum()) - used_cells
    report: dict[str, Any] = {
        "estimator": "ANOVA method of moments (unweighted means for unequal seeds per case)",
        "models": n_models, "cases": n_cases, "cells_used": used_cells, "cells_dropped": dropped,
        "balanced": bool(n_cases > 0 and (n_p == n_p[0]).all() and dropped == 0),
    }
    if n_models < 2 or n_cases < 2 or int(n_p.max(initial=0)) < 2:
        report["components"] = None
        report["note"] = "needs at least 2 checkpoints, 2 cases and 2 seeds on the cells all checkpoints share"
        return report

    weights = complete.astype(np.float64)  # (P, S)
    filled = np.where(complete[None], data, 0.0)
    cell_means = filled.sum(axis=2) / n_p[None, :]  # (M, P)
    seed_means = filled.sum(axis=0) / n_models  # (P, S): mean over models of each seed of each case
    case_means = cell_means.mean(axis=0)  # (P,)
    model_means = cell_means.mean(axis=1)  # (M,)
    grand = cell_means.mean()
    n_tilde = n_cases / float(np.sum(1.0 / n_p))  # harmonic mean of seeds per case

    ss_model = n_tilde * n_cases * np.sum((model_means - grand) ** 2)
    ss_case = n_tilde * n_models * np.sum((case_means - grand) ** 2)
    interaction = cell_means - model_means[:, None] - case_means[None, :] + grand
    ss_interaction = n_tilde * np.sum(interaction**2)
    # Within-cell parts are exact: a case's mean over its complete seeds equals the mean of its cell means.
    ss_seed = n_models * np.sum(weights * (seed_means - case_means[:, None]) ** 2)
    residual = data - cell_means[:, :, None] - seed_means[None] + case_means[None, :, None]
    ss_residual = np.sum(np.where(complete[None], residual, 0.0) ** 2)

    df_model, df_case = n_models - 1, n_cases - 1
    df_interaction = df_model * df_case
    df_seed = int(np.sum(n_p - 1))
    df_residual = df_model * df_seed
    ms = {
        "model": ss_model / df_model, "prompt": ss_case / df_case, "model_x_prompt": ss_interaction / df_interaction,
        "seed": ss_seed / df_seed if df_seed else np.nan,
        "residual": ss_residual / df_residual if df_residual else np.nan,
    }
    sigma_e = ms["residual"]
    sigma_c = (ms["seed"] - sigma_e) / n_models
    sigma_ab = (ms["model_x_prompt"] - sigma_e) / n_tilde
    sigma_a = (ms["model"] - ms["model_x_prompt"]) / (n_cases * n_tilde)
    sigma_b = (ms["prompt"] - ms["model_x_prompt"] - ms["seed"] + sigma_e) / (n_models * n_tilde)
    estimates = dict(zip(COMPONENTS, (sigma_a, sigma_b, sigma_ab, sigma_c, sigma_e), strict=True))
    clipped = {name: max(float(value), 0.0) if np.isfinite(value) else 0.0 for name, value in estimates.items()}
    total = sum(clipped.values())
    report["seeds_per_case"] = float(n_tilde)
    report["mean_squares"] = {name: _finite(value) for name, value in ms.items()}
    report["degrees_of_freedom"] = {"model": df_model, "prompt": df_case, "model_x_prompt": df_interaction,
                                    "seed": df_seed, "residual": df_residual}
    report["components"] = {name: _finite(value) for name, value in estimates.items()}
    report["components"]["seed"] = _finite(estimates["seed_shared"] + estimates["seed_within"])
    report["shares"] = {name: (clipped[name] / total if total > 0 else None) for name in COMPONENTS}
    report["shares"]["seed"] = ((clipped["seed_shared"] + clipped["seed_within"]) / total) if total > 0 else None
    return report


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
