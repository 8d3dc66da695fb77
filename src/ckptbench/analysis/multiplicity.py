"""Holm's correction over stated families of paired tests (``[analysis] multiplicity``).

* ``"per-scorer"`` (default): one family per suite (and its NoTM view), scorer and kind of comparison —
  all pairs of checkpoints form one family (k(k−1)/2 tests), the comparisons with the baseline another
  (k − 1 tests). The family-wise error is controlled within each family, not across scorers or suites.
* ``"run"``: every pairwise test of the run — all suites, views and scorers — is one family; comparisons
  with the baseline are among those pairs and take their adjusted p-value.

Either way a family grows when checkpoints are added, so adjusted p-values depend on the pool (raw
p-values do not); the families and their sizes are written into results.json and the report. ``p_cells``
(images as if independent) is adjusted over the same families as ``p_cases``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

MODES = ("per-scorer", "run")
FIELDS = ("p_cases", "p_cells")


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment (family-wise error); ``None`` entries are left out and stay ``None``.

    Hand-written: scipy offers only false-discovery-rate control (``false_discovery_control``), and
    statsmodels, which has Holm, is not worth a dependency for eight lines."""
    indexed = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    count = len(indexed)
    for rank, (p, index) in enumerate(indexed):
        running = max(running, min(1.0, (count - rank) * p))
        adjusted[index] = running
    return adjusted


def views(suites: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(label, analysis block) of every suite and of its NoTM view."""
    for suite, block in suites.items():
        yield suite, block
        if block.get("notm"):
            yield f"{suite} (NoTM)", block["notm"]


def apply_holm(suites: Mapping[str, Any], mode: str) -> dict[str, Any]:
    """Add ``*_holm`` to every pair and baseline comparison of ``suites`` (in place); return the description
    of the families for results.json."""
    if mode not in MODES:
        raise ValueError(f"multiplicity '{mode}': give one of {', '.join(MODES)}")
    families: list[dict[str, Any]] = []
    if mode == "run":
        pairs = [pair for _, block in views(suites) for scorer in block["scorers"].values() for pair in scorer["pairs"]]
        _adjust(pairs)
        tested = sum(1 for pair in pairs if pair["p_cases"] is not None)
        label = f"run: every pairwise test of every suite and scorer ({tested} tests)"
        families.append({"family": label, "tests": tested})
    for view, block in views(suites):
        for scorer, result in block["scorers"].items():
            if mode == "per-scorer":
                tested = _adjust(result["pairs"])
                label = f"{view} · {scorer}: all pairs ({tested} tests)"
                families.append({"family": label, "tests": tested})
            result["holm_family"] = {"pairs": label, "tests": tested}
            baseline = result.get("baseline")
            if baseline:
                result["holm_family"]["baseline"] = _baseline_family(view, scorer, baseline, result["pairs"], mode,
                                                                     families)
    return {"mode": mode, "alpha": 0.05, "method": "Holm's step-down (family-wise error rate)", "families": families}


def _adjust(entries: Sequence[dict[str, Any]]) -> int:
    for field in FIELDS:
        for entry, adjusted in zip(entries, holm([e[field] for e in entries]), strict=True):
            entry[f"{field}_holm"] = adjusted
    return sum(1 for entry in entries if entry["p_cases"] is not None)


def _baseline_family(view: str, scorer: str, baseline: dict[str, Any], pairs: Sequence[dict[str, Any]], mode: str,
                     families: list[dict[str, Any]]) -> str:
    entries = [entry for name, entry in baseline["scores"].items() if name != baseline["checkpoint"]]
    if mode == "per-scorer":
        tested = _adjust(entries)
        label = f"{view} · {scorer}: comparisons with {baseline['checkpoint']} ({tested} tests)"
        families.append({"family": label, "tests": tested})
        baseline["scores"][baseline["checkpoint"]].update(p_cases_holm=None, p_cells_holm=None)
        return label
    by_names = {frozenset((pair["a"], pair["b"])): pair for pair in pairs}
    for name, entry in baseline["scores"].items():
        pair = by_names.get(frozenset((name, baseline["checkpoint"])), {})
        entry.update({f"{field}_holm": pair.get(f"{field}_holm") for field in FIELDS})
    return "run: the same family as the pairs (each comparison with the baseline is one of them)"
