"""Scores per skill: each tagged suite's cases grouped by their tags (the skills a compositional prompt tests,
PartiPrompts' category and challenge, the quality suite's themes), per scorer and checkpoint.

A skill's value for a checkpoint is the mean over the skill's cases of the case mean over seeds, so every
case weighs the same whatever its number of seeds; ``cases`` and ``images`` say how much it rests on. A case
with several tags counts in each. Suites without tags are left out.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pandas as pd


def skill_breakdown(frame: pd.DataFrame, cases: dict[tuple[str, str], dict[str, Any]]
                    ) -> dict[str, dict[str, dict[str, dict[str, dict[str, Any]]]]]:
    """suite → scorer → tag → checkpoint → {mean, cases, images}, from the tidy score table."""
    tags = {key: tuple(meta.get("tags") or ()) for key, meta in cases.items()}
    scored = frame.dropna(subset=["value"])
    if scored.empty or not any(tags.values()):
        return {}
    case_means = scored.groupby(["suite", "scorer", "checkpoint", "case_id"], sort=True)["value"].agg(["mean", "size"])
    grouped: dict[tuple[str, str, str, str], list[tuple[float, int]]] = defaultdict(list)
    for (suite, scorer, checkpoint, case_id), row in case_means.iterrows():
        for tag in tags.get((str(suite), str(case_id)), ()):
            grouped[(str(suite), str(scorer), tag, str(checkpoint))].append((float(row["mean"]), int(row["size"])))
    result: dict[str, dict[str, dict[str, dict[str, dict[str, Any]]]]] = {}
    for (suite, scorer, tag, checkpoint), values in sorted(grouped.items()):
        means = [mean for mean, _ in values]
        result.setdefault(suite, {}).setdefault(scorer, {}).setdefault(tag, {})[checkpoint] = {
            "mean": sum(means) / len(means), "cases": len(values), "images": sum(size for _, size in values)}
    return result
