"""Checkpoint × case heatmaps (style, LoRA with NoTM exclusions), the pairwise win-rate matrix and the
agreement between scorers, read from ``analysis.suites.<suite>`` of the results document."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ckptbench.report.leaderboard import SIGNIFICANCE, analysis_suites, display_exponent, scorer_order


@dataclass(frozen=True)
class HeatCell:
    value: float | None
    heat: float | None  # 0 = worst of the table, 1 = best (oriented by the scorer's direction)
    n: int = 0
    excluded: bool = False  # NoTM: this LoRA's showcase images were made with this checkpoint
    significant: bool = False
    note: str = ""


@dataclass(frozen=True)
class Heatmap:
    title: str
    suite: str
    scorer: str
    higher_is_better: bool | None
    row_labels: list[str]
    column_labels: list[str]
    column_titles: list[str]
    cells: list[list[HeatCell]]
    caption: str = ""
    exponent: int = 0  # the values are shown divided by 10**exponent (the title says so)


def heat(values: Sequence[float | None], higher_is_better: bool | None) -> list[float | None]:
    """Place each value between the table's worst (0) and best (1); None stays None."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return [None] * len(values)
    low, high = min(finite), max(finite)
    span = high - low
    result: list[float | None] = []
    for v in values:
        if v is None or not math.isfinite(v):
            result.append(None)
            continue
        share = 0.5 if span == 0 else (v - low) / span
        result.append(share if higher_is_better is not False else 1.0 - share)
    return result


def case_heatmaps(results: Mapping[str, Any], order: Sequence[str] = ()) -> list[Heatmap]:
    """One heatmap per (style or LoRA suite, scorer): checkpoints × cases, mean over seeds; rows in
    ``order`` (the leaderboard's), the rest after.

    Colours compare checkpoints within each column: cases differ in scale (one LoRA's showcase image is
    simply harder to match than another's), and the question a column answers is "which checkpoint does
    this style or LoRA best". For a LoRA suite with NoTM the cells left out for a checkpoint are marked;
    their value is still shown (it is what the checkpoint made), but it does not enter that
    checkpoint's NoTM summary."""
    maps = []
    for suite, block in analysis_suites(results).items():
        tables: Mapping[str, Any] = block.get("matrices") or {}
        if not tables:
            continue
        labels: Mapping[str, str] = block.get("case_labels") or {}
        notm_tables: Mapping[str, Any] = (block.get("notm") or {}).get("matrices") or {}
        kind = str(block.get("kind") or "")
        for scorer in scorer_order(results, list(tables)):
            table = tables[scorer]
            excluded = (notm_tables.get(scorer) or {}).get("excluded")
            direction = table.get("higher_is_better")
            rows = [str(r) for r in table["rows"]]
            position = {name: i for i, name in enumerate(order)}
            row_order = sorted(range(len(rows)), key=lambda i: (position.get(rows[i], len(position)), i))
            columns = [str(c) for c in table["columns"]]
            column_heats = [heat([row[j] for row in table["mean"]], direction) for j in range(len(columns))]
            cells = [[HeatCell(value=table["mean"][i][j], heat=column_heats[j][i], n=int(table["n"][i][j]),
                               excluded=bool(excluded[i][j]) if excluded else False)
                      for j in range(len(columns))] for i in row_order]
            caption = (f"Mean {scorer} over seeds for each checkpoint and {('style' if kind == 'style' else 'case')}"
                       f"; {'higher' if direction else 'lower'} is better; in each column the colour runs from the"
                       " worst checkpoint (orange) to the best (blue).")
            if excluded:
                caption += " Crossed-out cells are left out of that checkpoint's NoTM summary (the LoRA's showcase " \
                           "images were made with that checkpoint)."
            maps.append(Heatmap(
                title=f"{suite}: checkpoint × {'style' if kind == 'style' else 'LoRA' if kind == 'lora' else 'case'}"
                      f" — {scorer}",
                suite=str(suite), scorer=scorer, higher_is_better=direction,
                row_labels=[rows[i] for i in row_order],
                column_labels=[str(labels.get(c, c)) for c in columns], column_titles=columns,
                cells=cells, caption=caption,
                exponent=display_exponent([cell.value for row in cells for cell in row])))
    return maps


def win_rate_heatmap(results: Mapping[str, Any], suite: str, scorer: str, order: Sequence[str]) -> Heatmap | None:
    """Row beats column: the share of shared (case, seed) cells where the row checkpoint scored better
    (ties count half). Marked where the Holm-corrected per-case Wilcoxon test is significant."""
    block = (analysis_suites(results).get(suite) or {}).get("scorers", {}).get(scorer)
    if not block or not block.get("pairs"):
        return None
    names = [n for n in order if n in set(block.get("summary") or {})]
    lookup: dict[tuple[str, str], HeatCell] = {}
    for pair in block["pairs"]:
        a, b, rate = str(pair["a"]), str(pair["b"]), pair.get("win_rate")
        if rate is None:
            continue
        p = pair.get("p_cases_holm")
        significant = p is not None and p < SIGNIFICANCE
        shared = int(pair.get("n_cells") or 0)
        lookup[(a, b)] = HeatCell(rate, rate, shared, significant=significant,
                                  note=_pair_note(pair.get("mean_diff"), shared, p))
        lookup[(b, a)] = HeatCell(1.0 - rate, 1.0 - rate, shared, significant=significant,
                                  note=_pair_note(_negate(pair.get("mean_diff")), shared, p))
    if not lookup:
        return None
    cells = [[lookup.get((row, column), HeatCell(None, None)) for column in names] for row in names]
    # Columns are numbered by leaderboard position (full names would make the table as wide as a screen).
    numbers = [f"#{i + 1}" for i in range(len(names))]
    return Heatmap(
        title=f"{suite}: pairwise win rate — {scorer}", suite=suite, scorer=scorer, higher_is_better=True,
        row_labels=[f"{n} {name}" for n, name in zip(numbers, names, strict=True)], column_labels=numbers,
        column_titles=names, cells=cells,
        caption="Share of shared (prompt, seed) images on which the row checkpoint scored better than the column "
                "checkpoint (ties count half). Bold: the difference is significant (per-prompt Wilcoxon, "
                f"Holm-corrected over all pairs, p < {SIGNIFICANCE}).")


def kendall_rows(results: Mapping[str, Any], suite: str) -> list[Mapping[str, Any]]:
    """Kendall's τ between every two scorers' rankings of the checkpoints in a suite."""
    block = analysis_suites(results).get(suite) or {}
    return list(block.get("kendall_tau") or [])


def _pair_note(difference: float | None, shared: int, p_holm: float | None) -> str:
    return (f"row − column: mean difference {_fmt(difference)} on {shared} shared images; "
            f"Holm-corrected p (per-prompt Wilcoxon) = {_fmt(p_holm)}")


def _negate(value: float | None) -> float | None:
    return None if value is None else -value


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:.3g}"
