"""A compact leaderboard for the terminal at the end of a run; the HTML report has the full picture."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table


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
    """Checkpoints ordered by the first scorer of the spec (in its direction), each scorer's mean and 95% CI."""
    scorers = results.get("scorers", {})
    order = [name for name in (results.get("spec", {}).get("scorers", {}).get("use") or scorers) if name in scorers]
    image_scorers = [name for name in order if scorers[name].get("level", "image") != "set"][:max_scorers]
    table = Table(title=escape(f"{results['benchmark'].get('name')}: mean [95% CI] over all images"),
                  title_justify="left")
    table.add_column("checkpoint")
    for name in image_scorers:
        table.add_column(escape(f"{name} {'↑' if scorers[name].get('higher_is_better', True) else '↓'}"),
                         justify="right")
    table.add_column("images", justify="right")

    def sort_key(checkpoint: dict[str, Any]) -> tuple[int, float]:
        if checkpoint["status"] != "ok" or not image_scorers:
            return (1, 0.0)
        summary = checkpoint["scores"].get(image_scorers[0]) or {}
        mean = summary.get("mean")
        if mean is None:
            return (1, 0.0)
        return (0, -mean if scorers[image_scorers[0]].get("higher_is_better", True) else mean)

    for checkpoint in sorted(results["checkpoints"], key=sort_key):
        cells = []
        for name in image_scorers:
            summary = checkpoint["scores"].get(name) or {}
            low, high = (summary.get("ci95") or [None, None])[:2]
            digits = _decimals(low, high)
            cells.append(escape(f"{_number(summary.get('mean'), digits)} [{_number(low, digits)}, "
                                f"{_number(high, digits)}]") if summary else "–")
        images = checkpoint.get("images", {})
        label = escape(str(checkpoint["name"]))
        if checkpoint["status"] != "ok":
            label += f" [red]({escape(str(checkpoint['status']))})[/]"
        table.add_row(label, *cells, f"{images.get('ok', 0)}/{images.get('planned', 0)}")
    return table


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
