"""PartiPrompts (``PartiPrompts.tsv``: Prompt, Category, Challenge, Note), read from the user's copy."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from ckptbench.errors import SuiteError
from ckptbench.suites.case import Case
from ckptbench.textfiles import closest

_COLUMNS = ("Prompt", "Category", "Challenge")


def load_parti(path: Path, suite: str, category: Sequence[str] = (), challenge: Sequence[str] = (),
               limit: int | None = None) -> list[Case]:
    """One case per prompt, filtered by category and challenge (case-insensitive; empty = all).

    Case ids are the prompt's row in the file (0000 = first prompt), so they do not change with the filters.
    """
    path = Path(path)
    if not path.is_file():
        raise SuiteError(f"{path}: PartiPrompts file not found; give the path of PartiPrompts.tsv.")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        missing = [c for c in _COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise SuiteError(f"{path}: column(s) {', '.join(missing)} missing; this is not PartiPrompts.tsv "
                             "(tab-separated, with a Prompt/Category/Challenge header).")
        rows = list(reader)
    wanted_categories = _check_values(path, "category", category, {r["Category"] for r in rows})
    wanted_challenges = _check_values(path, "challenge", challenge, {r["Challenge"] for r in rows})
    width = max(4, len(str(len(rows) - 1)))
    cases = []
    for index, row in enumerate(rows):
        if wanted_categories and row["Category"].lower() not in wanted_categories:
            continue
        if wanted_challenges and row["Challenge"].lower() not in wanted_challenges:
            continue
        cases.append(Case(suite=suite, case_id=f"{index:0{width}d}", prompt=row["Prompt"], kind="quality",
                          label=row["Category"], tags=(row["Category"], row["Challenge"])))
        if limit is not None and len(cases) >= limit:
            break
    if not cases and (category or challenge):  # an empty file is the caller's to report
        raise SuiteError(f"{path}: no prompt has category {list(category)} and challenge {list(challenge)}; "
                         "widen the filters.")
    return cases


def _check_values(path: Path, field: str, wanted: Sequence[str], present: set[str]) -> set[str]:
    known = {value.lower(): value for value in present}
    for value in wanted:
        if value.lower() not in known:
            close = closest(value, sorted(present), cutoff=0.5)
            hint = f" — did you mean '{close}'?" if close is not None else ""
            raise SuiteError(f"{path}: {field} '{value}' does not occur in PartiPrompts{hint}; known: "
                             f"{', '.join(sorted(present))}.")
    return {value.lower() for value in wanted}
