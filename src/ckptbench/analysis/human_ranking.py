"""Ranking a suite by human preference (``rank_by = "human"``): the arena's Bradley–Terry strengths of that
suite's votes (``arena/analysis.py``), with their confidence set for the most preferred checkpoint, in the
same ranking shape as a scorer's (its verdict is ``verdict.human_verdict``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

HUMAN = "human"


def human_label(human: Mapping[str, Any]) -> str:
    return f"human preference (Bradley–Terry strength from {int(human.get('votes') or 0):,} arena votes)"
