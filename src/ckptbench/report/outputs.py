"""Writing a run's outputs from the store: results.json, scores.csv, scores.parquet, leaderboard.csv and
report/index.html (with its thumbnails).

Kept apart from the runner so that `ckptbench report` does not import the generation stack.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ckptbench.analysis.results import build_results
from ckptbench.report.exports import (
    write_leaderboard_csv,
    write_results_json,
    write_scores_csv,
    write_scores_parquet,
)
from ckptbench.report.html import image_owners, render_report
from ckptbench.report.leaderboard import build_leaderboard, primary_suite
from ckptbench.store import Store


def write_outputs(store: Store, run_id: int | None = None, out: Path | None = None,
                  console: Console | None = None, rank_by: str | None = None) -> tuple[Path, Path]:
    """All outputs of a run (default: the latest) into ``out`` (default: the store folder); returns the
    paths of results.json and report/index.html. ``rank_by`` overrides the ranking the run's spec asks for."""
    results, frame = build_results(store, run_id, rank_by)
    out = out or store.root
    out.mkdir(parents=True, exist_ok=True)
    results_path = write_results_json(results, out)
    write_scores_csv(frame, out)
    write_scores_parquet(frame, out)
    write_leaderboard_csv(build_leaderboard(results, primary_suite(results), image_owners(frame)), out)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console or Console(stderr=True, quiet=True), transient=True)
    with progress:
        task: list[int] = []

        def advance(done: int, total: int) -> None:
            if not task:
                task.append(progress.add_task("making report thumbnails", total=total))
            progress.update(task[0], completed=done)

        report_path = render_report(results, frame, store, out / "report", advance)
    return results_path, report_path
