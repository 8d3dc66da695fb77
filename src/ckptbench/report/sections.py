"""The report's sections other than the leaderboard, grids and matrices: charts, failures and provenance.

Each function reads one named part of the results document (or the tidy score table for per-image
distributions) and returns None or an empty list when that part is absent, so the page simply leaves
the section out.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from markupsafe import Markup

from ckptbench.report.charts import box_plot, rank_intervals, variance_bars
from ckptbench.report.leaderboard import Leaderboard, analysis_suites, scorer_order


@dataclass(frozen=True)
class Chart:
    title: str
    svg: Markup
    caption: str = ""


def distribution_charts(frame: pd.DataFrame, board: Leaderboard) -> list[Chart]:
    """Per scorer, a box plot of per-image values for each checkpoint (from the score table)."""
    rows = frame if board.suite is None else frame[frame["suite"] == board.suite]
    charts = []
    for column in board.scorers:
        values = rows[rows["scorer"] == column.name]
        groups = [(row.checkpoint, values.loc[values["checkpoint"] == row.checkpoint, "value"].to_numpy())
                  for row in board.rows]
        svg = box_plot(groups, column.name, column.higher_is_better)
        if svg is not None:
            charts.append(Chart(f"{column.name}", svg, "Box: quartiles; line: median; dot: mean; whiskers: "
                                                       "furthest images within 1.5 IQR; small dots: the rest."))
    return charts


def variance_charts(results: Mapping[str, Any]) -> list[Chart]:
    """Per suite, how the variance of each scorer splits into model, prompt, model × prompt and seed."""
    charts = []
    for suite, block in analysis_suites(results).items():
        scorers = block.get("scorers") or {}
        rows = [(name, (scorers[name].get("variance") or {}).get("shares") or {})
                for name in scorer_order(results, list(scorers))]
        svg = variance_bars(rows)
        if svg is not None:
            notes = {(scorers[n].get("variance") or {}).get("estimator") for n in scorers} - {None}
            charts.append(Chart(f"{suite}", svg, "; ".join(sorted(str(n) for n in notes))
                                + ". Negative estimates count as 0 in the shares; seed = the seed's shared and "
                                  "per-model effects together."))
    return charts


def rank_charts(results: Mapping[str, Any], board: Leaderboard) -> list[Chart]:
    """Bootstrap rank distributions in the leaderboard's suite: the composite first, then each scorer."""
    block = analysis_suites(results).get(board.suite) if board.suite else None
    if not block:
        return []
    order = [row.checkpoint for row in board.rows]
    charts = []
    composite = (board.composite or {}).get("scores") or {}
    if any((entry or {}).get("rank_ci95") for entry in composite.values()):
        ranked = [name for name in order if name in composite]
        svg = rank_intervals([(name, composite[name]) for name in ranked], len(ranked), "composite")
        if svg is not None:
            charts.append(Chart("composite", svg))
    for column in board.scorers:
        ranks = (block.get("scorers") or {}).get(column.name, {}).get("ranks") or {}
        ranked = [name for name in order if name in ranks]
        svg = rank_intervals([(name, ranks[name]) for name in ranked], len(ranked), column.name)
        if svg is not None:
            charts.append(Chart(column.name, svg))
    return charts


@dataclass(frozen=True)
class SetScoreTable:
    """Set-level scorers (KID, FID, CMMD…): one value per checkpoint and suite, from
    ``checkpoints[].sets`` of the results document."""

    scorers: list[tuple[str, bool | None, str]]  # name, higher is better, description
    rows: list[tuple[str, str, list[Mapping[str, Any] | None]]]  # checkpoint, suite, one entry per scorer


def set_score_table(results: Mapping[str, Any], order: Sequence[str]) -> SetScoreTable | None:
    infos = results.get("scorers") or {}
    checkpoints = {str(c.get("name")): c for c in results.get("checkpoints") or []}
    names = scorer_order(results, sorted({n for c in checkpoints.values() for n in (c.get("sets") or {})}))
    if not names:
        return None
    rows = []
    for checkpoint in [*order, *(c for c in checkpoints if c not in order)]:
        sets = (checkpoints.get(checkpoint) or {}).get("sets") or {}
        suites = list(dict.fromkeys(suite for name in names for suite in sets.get(name) or {}))
        for suite in suites:
            rows.append((checkpoint, suite, [(sets.get(name) or {}).get(suite) for name in names]))
    columns = [(n, (infos.get(n) or {}).get("higher_is_better"), str((infos.get(n) or {}).get("description") or ""))
               for n in names]
    return SetScoreTable(columns, rows)


@dataclass(frozen=True)
class FailureRow:
    scope: str
    checkpoint: str
    scorer: str
    image_key: str
    message: str


def failure_rows(results: Mapping[str, Any], image_owners: Mapping[str, str]) -> list[FailureRow]:
    rows = []
    recorded = {(f.get("scope"), f.get("checkpoint")) for f in results.get("failures") or []}
    for checkpoint in results.get("checkpoints") or []:
        if checkpoint.get("status") != "ok" and ("checkpoint", checkpoint.get("name")) not in recorded:
            rows.append(FailureRow("checkpoint", str(checkpoint["name"]), "", "", str(checkpoint.get("error") or "")))
    for failure in results.get("failures") or []:
        key = str(failure.get("image_key") or "")
        rows.append(FailureRow(str(failure.get("scope") or ""),
                               str(failure.get("checkpoint") or image_owners.get(key, "")),
                               str(failure.get("scorer") or ""), key, str(failure.get("message") or "")))
    return rows


def missing_rows(results: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """(suite, scorer, checkpoint) combinations with planned images that have no value."""
    return list((results.get("analysis") or {}).get("missing") or [])


def provenance_items(results: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What produced the results, as (label, value) pairs, in reading order."""
    run = results.get("run") or {}
    provenance = results.get("provenance") or {}
    benchmark = results.get("benchmark") or {}
    analysis = results.get("analysis") or {}
    settings = analysis.get("settings") or {}
    items: list[tuple[str, Any]] = [
        ("benchmark", benchmark.get("name")),
        ("preset", benchmark.get("preset")),
        ("run", f"#{run.get('id')} · {run.get('status')}"),
        ("started", _timestamp(run.get("started_at"))),
        ("finished", _timestamp(run.get("finished_at"))),
        ("duration", _duration(run.get("duration_s"))),
        ("ckptbench", provenance.get("ckptbench")),
        ("python", provenance.get("python")),
        ("platform", provenance.get("platform")),
        ("device", " · ".join(str(v) for v in (provenance.get("device"), provenance.get("device_name")) if v)),
        ("generation dtype", provenance.get("generation_dtype")),
        ("scorer dtypes", _pairs(provenance.get("scorer_dtypes"))),
        ("packages", _pairs(provenance.get("packages"))),
        ("bootstrap resamples", settings.get("bootstrap_resamples")),
        ("analysis seed", settings.get("analysis_seed")),
        ("baseline", settings.get("baseline")),
        ("ranked by", _ranking(results)),
        ("Holm families", (analysis.get("multiplicity") or {}).get("mode")),
        ("composite weights", _pairs(settings.get("composite_weights"))),
        ("good-image thresholds", _pairs(settings.get("thresholds"))),
    ]
    for key, value in provenance.items():
        if key not in {"ckptbench", "python", "platform", "device", "device_name", "generation_dtype", "scorer_dtypes",
                       "packages", "text_truncated", "duration_s"} and isinstance(value, str | int | float):
            items.append((key.replace("_", " "), value))  # whatever else a run or an import recorded
    return [(label, str(value)) for label, value in items if value not in (None, "", {})]


def _ranking(results: Mapping[str, Any]) -> str | None:
    ranking = (results.get("analysis") or {}).get("ranking") or {}
    return f"{ranking['by']} ({ranking.get('source')})" if ranking.get("by") else None


def spec_text(results: Mapping[str, Any]) -> str:
    spec = results.get("spec")
    return json.dumps(spec, indent=2, sort_keys=True, default=str) if spec else ""


def truncated_rows(results: Mapping[str, Any]) -> list[tuple[str, str, int]]:
    """(scorer, suite, prompts truncated to the text encoder's context)."""
    rows = []
    for scorer, suites in (results.get("text_truncated") or {}).items():
        for suite, count in (suites or {}).items():
            rows.append((str(scorer), str(suite), int(count)))
    return rows


def _timestamp(value: Any) -> str | None:
    if value is None:
        return None
    return dt.datetime.fromtimestamp(float(value), tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(value: Any) -> str | None:
    if value is None:
        return None
    seconds = float(value)
    minutes, rest = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{int(hours)} h {int(minutes)} min {rest:.0f} s" if hours else f"{int(minutes)} min {rest:.1f} s"


def _pairs(mapping: Any) -> str | None:
    if not mapping:
        return None
    return ", ".join(f"{key} {value}" for key, value in sorted(mapping.items()) if value is not None)


def heat_style(value: float | None) -> str:
    """The inline custom property the stylesheet turns into a cell colour."""
    return "" if value is None else f"--h:{value:.2f}"


def scorer_directions(results: Mapping[str, Any]) -> dict[str, bool | None]:
    directions = {name: (info or {}).get("higher_is_better") for name, info in (results.get("scorers") or {}).items()}
    for name, traits in ((results.get("analysis") or {}).get("scorers") or {}).items():
        directions[name] = traits.get("higher_is_better", directions.get(name))
    return directions


def all_scorers(results: Mapping[str, Any], frame: pd.DataFrame) -> Sequence[str]:
    present = set(results.get("scorers") or {}) | set(frame["scorer"].astype(str).unique())
    return scorer_order(results, sorted(present))
