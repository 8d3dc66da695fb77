"""Progress bars for long loops: done/total, rate and time left, in the units of the loop (images, scores)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Items per second, or seconds per item when slower than one a second (generation on a CPU)."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if not speed:
            return Text(f"– {self.unit}/s", style="progress.data.speed")
        text = f"{speed:.1f} {self.unit}/s" if speed >= 1 else f"{1 / speed:.1f} s/{self.unit}"
        return Text(text, style="progress.data.speed")


def progress_bars(console: Console, unit: str, transient: bool = False) -> Progress:
    """Bars showing done/total, the rate and the estimated time left (then the elapsed time)."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(unit),
                    TextColumn("eta"), TimeRemainingColumn(compact=True), TextColumn("·"), TimeElapsedColumn(),
                    console=console, transient=transient)
