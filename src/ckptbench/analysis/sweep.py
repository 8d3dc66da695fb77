"""A sweep's axes as factors of the analysis: checkpoint × axis value tables with intervals, and what each
axis value changes within a checkpoint.

The suite analysis (leaderboard, pairs, ranks) sees one value per (checkpoint, case, seed) cell. With a
sweep, that value is the mean over the cell's variants (``pooled_over_variants``): the checkpoint's
performance across the swept settings. A cell with a variant missing is missing as a whole, so every
checkpoint's mean averages the same settings.

Per axis value the cells are pooled over the other axes' values only, then summarised as the suite
analysis summarises a checkpoint: the mean with its cluster-t interval over prompts (``intervals.py``).
The effect of an axis value is the mean difference to the axis' first value within a checkpoint, on the
(case, seed) cells both have — paired, as the suite analysis compares two checkpoints
(``paired.compare_pairs``) — with the per-case Wilcoxon p-value Holm-corrected over the checkpoints and
values of one (suite, axis, scorer) table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ckptbench.analysis.cube import SuiteCube, build_cube
from ckptbench.analysis.intervals import json_interval, ratio_means, t_interval
from ckptbench.analysis.multiplicity import holm
from ckptbench.analysis.paired import compare_pairs
from ckptbench.analysis.ranking import ranks_of
from ckptbench.analysis.suite import AnalysisSettings
from ckptbench.analysis.summary import seed_std
from ckptbench.analysis.traits import ScorerTraits, scorer_traits
from ckptbench.sweep import SweepAxis, variants

CELL = ["checkpoint", "suite", "case_id", "seed", "scorer"]
POOLING = ("each (checkpoint, case, seed) cell of the suite analysis is the mean over the sweep's variants; a cell "
           "with a variant missing is missing as a whole")


def has_variants(frame: pd.DataFrame) -> bool:
    return "variant" in frame.columns and frame["variant"].nunique() > 1


def pooled_over_variants(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (checkpoint, suite, case, seed, scorer): the mean over the variants, NaN when any is NaN.

    A frame without a sweep is returned as it is."""
    if not has_variants(frame):
        return frame
    groups = frame.groupby(CELL, sort=False)
    pooled = groups["value"].mean().where(groups["value"].count() == groups["value"].size())
    first = groups[["prompt"]].first()  # the first variant's prompt: the prompt as written
    return pd.concat([first, pooled.rename("value")], axis=1).reset_index()


def sweep_results(frame: pd.DataFrame, axes: Sequence[SweepAxis], settings: AnalysisSettings,
                  directions: Mapping[str, bool | None], order: Sequence[str] = ()) -> dict[str, Any]:
    """``results.json``'s ``sweep``: the axes, the variants, and per suite × axis × scorer the checkpoint ×
    axis value table (mean, 95% interval, seed SD, n, missing, rank among checkpoints) and the effects."""
    every = variants(tuple(axes))
    record: dict[str, Any] = {
        "axes": [{"name": axis.name, "title": axis.title, "values": list(axis.values), "labels": axis.labels}
                 for axis in axes],
        "variants": [{"id": variant.id, "values": variant.labels()} for variant in every],
        "pooling": POOLING,
        "suites": {},
    }
    pooled = pooled_over_variants(frame)
    traits = {name: scorer_traits(name, directions.get(name), settings.thresholds, settings.within_prompt)
              for name in (str(s) for s in pd.unique(frame["scorer"]))}
    for suite in (str(s) for s in pd.unique(frame["suite"])):
        cube = build_cube(pooled, suite, order)
        rows = frame[frame["suite"] == suite]
        tables = {}
        for axis in axes:
            arrays = [_cell_means(rows, cube, {v.id for v in every if v.value(axis.name) == value})
                      for value in axis.values]
            tables[axis.name] = {scorer: _axis_table(axis, arrays, cube, k, traits[scorer])
                                 for k, scorer in enumerate(cube.scorers)}
        record["suites"][suite] = tables
    return record


def _cell_means(rows: pd.DataFrame, cube: SuiteCube, keep: set[str]) -> tuple[np.ndarray, np.ndarray]:
    """(values (scorers, checkpoints, cases, seeds), planned (checkpoints, cases, seeds)) of the variants in
    ``keep``: each cell the mean over them, NaN unless every one that was planned has a value."""
    part = rows[rows["variant"].isin(keep)]
    index = (pd.Categorical(part["scorer"].astype(str), categories=cube.scorers).codes,
             pd.Categorical(part["checkpoint"].astype(str), categories=cube.checkpoints).codes,
             pd.Categorical(part["case_id"].astype(str), categories=cube.cases).codes,
             pd.Categorical(part["seed"].astype(int), categories=cube.seeds).codes)
    shape = (len(cube.scorers), len(cube.checkpoints), len(cube.cases), len(cube.seeds))
    value = part["value"].to_numpy(dtype=np.float64)
    finite = np.isfinite(value)
    planned, present, sums = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    np.add.at(planned, index, 1.0)
    np.add.at(present, tuple(i[finite] for i in index), 1.0)
    np.add.at(sums, tuple(i[finite] for i in index), value[finite])
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where((planned > 0) & (present == planned), sums / present, np.nan)
    return means, (planned > 0).any(axis=0)


def _axis_table(axis: SweepAxis, arrays: list[tuple[np.ndarray, np.ndarray]], cube: SuiteCube, k: int,
                traits: ScorerTraits) -> dict[str, Any]:
    names = cube.checkpoints
    labels = axis.labels
    by_value: dict[str, dict[str, Any]] = {}
    means = np.full((len(labels), len(names)), np.nan)
    for position, (label, (values, planned)) in enumerate(zip(labels, arrays, strict=True)):
        scores = values[k]
        flat = scores.reshape(len(names), -1)
        low, high = t_interval(ratio_means(scores))
        ranks = ranks_of(_rank_basis(flat, traits), traits.higher_is_better)
        entries = {}
        for i, name in enumerate(names):
            finite = flat[i][np.isfinite(flat[i])]
            means[position, i] = finite.mean() if finite.size else np.nan
            entries[name] = {
                "mean": _num(means[position, i]),
                "ci95": json_interval(low[i], high[i]),
                "seed_std": _num(seed_std(scores[i])),
                "n": int(finite.size),
                "missing": int((planned[i] & ~np.isfinite(scores[i])).sum()),
                "rank": int(ranks[i]) if finite.size else None,
            }
        by_value[label] = entries
    sign = 1.0 if traits.higher_is_better else -1.0
    best = {}
    for i, name in enumerate(names):
        column = sign * means[:, i]
        best[name] = labels[int(np.nanargmax(column))] if np.isfinite(column).any() else None
    return {"higher_is_better": traits.higher_is_better, "reference": labels[0], "by_value": by_value,
            "best_value": best, "effects": _effects(labels, arrays, k, names, traits)}


def _rank_basis(flat: np.ndarray, traits: ScorerTraits) -> np.ndarray:
    """Means to rank checkpoints by; preference scores only on the cells every checkpoint has (as the suite
    analysis ranks them)."""
    if traits.within_prompt:
        common = np.isfinite(flat).all(axis=0)
        flat = np.where(common[None, :], flat, np.nan)
    with np.errstate(invalid="ignore"):
        return np.array([np.nanmean(row) if np.isfinite(row).any() else np.nan for row in flat])


def _effects(labels: list[str], arrays: list[tuple[np.ndarray, np.ndarray]], k: int, names: Sequence[str],
             traits: ScorerTraits) -> dict[str, dict[str, Any]]:
    """checkpoint → axis value → its difference to the axis' first value on the cells both have."""
    # Rows (checkpoint, value) of one (rows, cases, seeds) array, so the suite analysis' paired comparison
    # applies as it is: row (i, value) against row (i, first value).
    stacked = np.stack([values[k][i] for i in range(len(names)) for values, _ in arrays])
    pairs = [(i * len(labels) + position, i * len(labels)) for i in range(len(names))
             for position in range(1, len(labels))]
    compared = compare_pairs(stacked, pairs, traits.higher_is_better)
    adjusted = holm([entry["p_cases"] for entry in compared])
    effects: dict[str, dict[str, Any]] = {}
    for (row, _), entry, p_holm in zip(pairs, compared, adjusted, strict=True):
        low, high = entry["ci95"]
        effects.setdefault(names[row // len(labels)], {})[labels[row % len(labels)]] = {
            "mean_diff": entry["mean_diff"], "ci95": entry["ci95"], "win_rate": entry["win_rate"],
            "n_cells": entry["n_cells"], "p_cases": entry["p_cases"], "p_cases_holm": p_holm,
            "interval_excludes_0": bool(low is not None and high is not None and (low > 0 or high < 0)),
        }
    return effects


def _num(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
