"""The report's sweep tables: per suite, axis and scorer, checkpoints × axis values (A1111's X/Y/Z as
numbers), read from ``sweep`` of the results document."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ckptbench.report.leaderboard import scorer_order
from ckptbench.report.matrices import HeatCell, Heatmap, heat


def sweep_heatmaps(results: Mapping[str, Any], order: Sequence[str] = ()) -> list[Heatmap]:
    """One table per (suite, axis, scorer): rows the checkpoints in ``order`` (the leaderboard's), columns
    the axis values; a cell is the mean over the images made with that value, coloured from the table's
    worst (orange) to its best (blue); bold where the value differs from the axis' first value for that
    checkpoint (the 95% interval of the paired difference excludes 0)."""
    sweep = results.get("sweep") or {}
    titles = {axis["name"]: axis.get("title") or axis["name"] for axis in sweep.get("axes") or []}
    pooled = " and the other axes' values" if len(titles) > 1 else ""
    maps = []
    for suite, axes in (sweep.get("suites") or {}).items():
        for axis, tables in axes.items():
            for scorer in scorer_order(results, list(tables)):
                maps.append(_heatmap(str(suite), str(axis), titles.get(axis, axis), scorer, tables[scorer], order,
                                     pooled))
    return maps


def _heatmap(suite: str, axis: str, title: str, scorer: str, table: Mapping[str, Any], order: Sequence[str],
             pooled: str) -> Heatmap:
    by_value: Mapping[str, Mapping[str, Any]] = table.get("by_value") or {}
    labels = list(by_value)
    present = list(dict.fromkeys(name for entries in by_value.values() for name in entries))
    rows = [name for name in order if name in present] + [name for name in present if name not in order]
    direction = table.get("higher_is_better")
    means = [[(by_value[label].get(name) or {}).get("mean") for label in labels] for name in rows]
    heats = heat([value for row in means for value in row], direction)
    effects: Mapping[str, Mapping[str, Any]] = table.get("effects") or {}
    reference = table.get("reference")
    cells = []
    for i, name in enumerate(rows):
        row = []
        for j, label in enumerate(labels):
            entry = by_value[label].get(name) or {}
            effect = (effects.get(name) or {}).get(label) or {}
            row.append(HeatCell(value=means[i][j], heat=heats[i * len(labels) + j], n=int(entry.get("n") or 0),
                                significant=bool(effect.get("interval_excludes_0")),
                                note=_note(entry, effect, reference)))
        cells.append(row)
    arrow = {True: "↑", False: "↓"}.get(direction, "")
    return Heatmap(
        title=f"{suite} · {title} · {scorer} {arrow}", suite=suite, scorer=scorer, higher_is_better=direction,
        row_labels=rows, column_labels=labels, column_titles=[f"{axis} = {label}" for label in labels], cells=cells,
        caption=f"Mean {scorer} per checkpoint and {title} value (over every prompt, seed{pooled}); bold: "
                f"differs from {title} = {reference} for that checkpoint (95% interval of the paired "
                "difference excludes 0); hover a cell for its interval.")


def _note(entry: Mapping[str, Any], effect: Mapping[str, Any], reference: Any) -> str:
    parts = []
    interval = entry.get("ci95") or [None, None]
    if interval[0] is not None:
        parts.append(f"95% CI [{interval[0]:.4g}, {interval[1]:.4g}], {entry.get('n')} images")
    if entry.get("missing"):
        parts.append(f"{entry['missing']} missing")
    if effect.get("mean_diff") is not None:
        low, high = effect.get("ci95") or [None, None]
        span = f" [{low:.4g}, {high:.4g}]" if low is not None else ""
        parts.append(f"vs {reference}: {effect['mean_diff']:+.4g}{span}")
    return "; ".join(parts)
