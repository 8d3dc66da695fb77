"""Failures named by what a person can find again: checkpoint, suite and case, prompt and seed.

The store records a failure with whatever its stage knew (an image failure its image key, a scoring
failure its image and scorer, a skipped case its suite and case id); the run's cells and cases fill in
the rest, so results.json, the report and the console all name the same cell.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the runner and `check` describe failures without pandas
    import pandas as pd

CELL_FIELDS = ("checkpoint", "suite", "case_id", "prompt", "seed")


def traced_failures(failures: Iterable[Mapping[str, Any]], items: pd.DataFrame,
                    cases: Mapping[tuple[str, str], Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each failure record with ``checkpoint``, ``suite``, ``case_id``, ``prompt`` and ``seed`` filled in
    where the run's record knows them (None where a failure concerns more than one cell, such as a
    checkpoint that could not be loaded or a case left out for every checkpoint)."""
    cells: dict[str, list[dict[str, Any]]] = {}
    for row in items.itertuples(index=False):
        cells.setdefault(str(row.image_key), []).append(
            {"checkpoint": str(row.checkpoint), "suite": str(row.suite), "case_id": str(row.case_id),
             "prompt": str(row.prompt), "seed": int(row.seed)})
    traced = []
    for failure in failures:
        record = {**dict.fromkeys(CELL_FIELDS), **failure}
        candidates = cells.get(str(failure.get("image_key")), [])
        # One image can answer two cells (the same file under two checkpoint names): prefer the failure's own.
        cell = next((c for c in candidates if c["checkpoint"] == failure.get("checkpoint")),
                    candidates[0] if candidates else None)
        if cell is not None:
            record.update({key: record.get(key) or value for key, value in cell.items()})
        elif record.get("suite") and record.get("case_id"):
            case = cases.get((str(record["suite"]), str(record["case_id"]))) or {}
            record["prompt"] = record.get("prompt") or case.get("prompt")
        traced.append(record)
    return traced


def cell_label(failure: Mapping[str, Any], already_said: str = "") -> str:
    """Where a failure happened, in words: "checkpoint 'a', case quality/002 ('a red cube'), seed 3"; parts
    that ``already_said`` (the failure's message) names are left out."""
    parts = []
    if failure.get("checkpoint") and f"checkpoint '{failure['checkpoint']}'" not in already_said:
        parts.append(f"checkpoint '{failure['checkpoint']}'")
    if failure.get("suite") and failure.get("case_id") and f"case {failure['suite']}/{failure['case_id']}" \
            not in already_said:
        prompt = str(failure.get("prompt") or "")
        shown = f" ('{prompt if len(prompt) <= 60 else prompt[:59] + '…'}')" if prompt else ""
        parts.append(f"case {failure['suite']}/{failure['case_id']}{shown}")
    if failure.get("seed") is not None:
        parts.append(f"seed {failure['seed']}")
    if failure.get("scorer"):
        parts.append(f"scorer {failure['scorer']}")
    return ", ".join(parts)


def describe_failure(failure: Mapping[str, Any]) -> str:
    """The failure's cell and its message in one sentence."""
    message = str(failure.get("message") or "failed")
    label = cell_label(failure, message)
    return f"{label}: {message}" if label else message
