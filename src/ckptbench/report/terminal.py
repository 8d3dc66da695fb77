"""A compact leaderboard for the terminal at the end of a run; the HTML report has the full picture."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ckptbench.report.leaderboard import analysis_suites, build_leaderboard, primary_suite


def _number(value: Any, decimals: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.3g}" if abs(value) >= 1e5 else f"{value:.{decimals}f}"


def _decimals(low: Any, high: Any) -> int:
    """Enough decimals that an interval's two ends differ: at least 3, at most 8."""
    if low is None or high is None or not math.isfinite(high - low) or high <= low:
        return 3
    return min(8, max(3, 1 - math.floor(math.log10(high - low))))


def leaderboard_table(results: dict[str, Any], max_scorers: int = 4) -> Table:
    """Checkpoints in the order of the leaderboard's ranking (its suite and scorer or composite, as the report),
    each scorer's mean and 95% CI over all images."""
    scorers = results.get("scorers", {})
    order = [name for name in (results.get("spec", {}).get("scorers", {}).get("use") or scorers) if name in scorers]
    image_scorers = [name for name in order if scorers[name].get("level", "image") != "set"][:max_scorers]
    suite = primary_suite(results)
    board = build_leaderboard(results, suite)
    title = f"{results['benchmark'].get('name')}: mean [95% CI] over all images"
    if board.suite:
        title += f"; ranked by {board.ranked_by} in suite {board.suite}"
    table = Table(title=title, title_justify="left")
    table.add_column("checkpoint")
    for name in image_scorers:
        table.add_column(f"{name} {'↑' if scorers[name].get('higher_is_better', True) else '↓'}", justify="right")
    table.add_column("images", justify="right")
    checkpoints = {str(c["name"]): c for c in results["checkpoints"]}
    for row in board.rows:
        checkpoint = checkpoints.get(row.checkpoint)
        if checkpoint is None:
            continue
        cells = []
        for name in image_scorers:
            summary = checkpoint["scores"].get(name) or {}
            low, high = (summary.get("ci95") or [None, None])[:2]
            digits = _decimals(low, high)
            cells.append(f"{_number(summary.get('mean'), digits)} [{_number(low, digits)}, {_number(high, digits)}]"
                         if summary else "–")
        images = checkpoint.get("images", {})
        label = checkpoint["name"] if checkpoint["status"] == "ok" else f"{checkpoint['name']} [red](failed)[/]"
        table.add_row(label, *cells, f"{images.get('ok', 0)}/{images.get('planned', 0)}")
    return table


def verdict_lines(results: dict[str, Any]) -> list[str]:
    """Each suite's one-sentence verdict and its warnings, as plain lines for the console."""
    lines = []
    suites = analysis_suites(results)
    first = primary_suite(results)
    for suite, block in sorted(suites.items(), key=lambda item: item[0] != first):
        for label, view in ((suite, block), (f"{suite} (NoTM)", block.get("notm") or {})):
            verdict = view.get("verdict")
            if verdict:
                lines.append(f"{label}: {verdict['text']}")
                lines.extend(f"{label}: warning: {warning}" for warning in verdict.get("warnings") or ())
    return lines


def print_notes(truncated: dict[str, dict[str, int]], skipped: dict[str, dict[str, int]], console: Console) -> None:
    for scorer, suites in truncated.items():
        for suite, count in suites.items():
            console.print(f"[yellow]note[/]: {count} prompt(s) of suite '{suite}' are longer than the text "
                          f"encoder's context and are truncated for {scorer}")
    for scorer, reasons in skipped.items():
        for reason, count in reasons.items():
            hint = f" (set [scorers.{scorer}] references to give a default)" if "reference" in reason else ""
            console.print(f"[yellow]note[/]: {escape(f'{scorer} skips {count} image(s): {reason}{hint}')}",
                          highlight=False)
