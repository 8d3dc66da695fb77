"""Writing a run's outputs (results.json, scores.csv, report/index.html) from the store.

Kept apart from the runner so that `ckptbench report` does not import the generation stack.
"""

from __future__ import annotations

from pathlib import Path

from ckptbench.analysis.results import build_results
from ckptbench.report.exports import write_results_json, write_scores_csv
from ckptbench.report.html import render_report
from ckptbench.store import Store


def write_outputs(store: Store, run_id: int | None = None, out: Path | None = None) -> tuple[Path, Path]:
    """results.json, scores.csv and report/index.html for a run (default: the latest)."""
    results, frame = build_results(store, run_id)
    out = out or store.root
    results_path = write_results_json(results, out)
    write_scores_csv(frame, out)
    report_path = render_report(results, out / "report")
    return results_path, report_path
