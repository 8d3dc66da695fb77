"""The crossed design of one suite as an array: scorer × checkpoint × case × seed.

Every statistic of the suite analysis works on this array. A cell is NaN when there is no value for it:
the image or its score failed, or the run never planned that cell (``planned`` tells the two apart).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class SuiteCube:
    suite: str
    scorers: tuple[str, ...]
    checkpoints: tuple[str, ...]
    cases: tuple[str, ...]
    seeds: tuple[int, ...]
    values: np.ndarray  # (scorers, checkpoints, cases, seeds) float64, NaN = no value
    planned: np.ndarray  # (checkpoints, cases, seeds) bool: the run asked for this image

    def scorer_values(self, scorer: str) -> np.ndarray:
        return self.values[self.scorers.index(scorer)]


def build_cube(frame: pd.DataFrame, suite: str, checkpoint_order: Sequence[str] = ()) -> SuiteCube:
    """Arrange one suite's rows of the tidy score table; checkpoints keep ``checkpoint_order`` first."""
    rows = frame[frame["suite"] == suite]
    present = [str(c) for c in pd.unique(rows["checkpoint"])]
    checkpoints = tuple([c for c in checkpoint_order if c in present] +
                        [c for c in present if c not in checkpoint_order])
    cases = tuple(sorted((str(c) for c in pd.unique(rows["case_id"])), key=_natural))
    seeds = tuple(sorted(int(s) for s in pd.unique(rows["seed"])))
    scorers = tuple(sorted(str(s) for s in pd.unique(rows["scorer"])))
    m = pd.Categorical(rows["checkpoint"].astype(str), categories=checkpoints).codes
    p = pd.Categorical(rows["case_id"].astype(str), categories=cases).codes
    s = pd.Categorical(rows["seed"].astype(int), categories=seeds).codes
    k = pd.Categorical(rows["scorer"].astype(str), categories=scorers).codes
    values = np.full((len(scorers), len(checkpoints), len(cases), len(seeds)), np.nan)
    values[k, m, p, s] = rows["value"].to_numpy(dtype=np.float64)
    planned = np.zeros((len(checkpoints), len(cases), len(seeds)), dtype=bool)
    planned[m, p, s] = True
    return SuiteCube(suite, scorers, checkpoints, cases, seeds, values, planned)


def _natural(text: str) -> tuple[int, int | str]:
    """Case ids sort numerically when they are numbers ("2" before "10"), else alphabetically."""
    return (0, int(text)) if text.isdigit() else (1, text)
