"""The HTML report: one self-contained page (styles and script inline, no CDN, no server) with its
thumbnails and per-prompt infotext scripts beside it, and links to the store's full PNGs.

Layout of the report folder::

    index.html                       the page
    thumbs/<size>/<key[:2]>/<key>.webp  thumbnails, content-addressed (made once)
    grids/grid-<hash>-<digest>.webp  each seed grid as one labelled image (the "grid image" button)
    infotext/grid-<hash>.js          the infotext of one prompt's images, loaded when a picture is opened

The infotexts live in small scripts rather than in the page because a 10,000-image report would carry
several megabytes of them; ``<script src>`` (unlike ``fetch``) also works when the page is opened from
the file system.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
from markupsafe import Markup, escape

from ckptbench.atomic import atomic_write_text
from ckptbench.report.contact_sheet import contact_sheet
from ckptbench.report.grid_images import with_grid_images
from ckptbench.report.grids import SeedGrid, build_grids, image_url
from ckptbench.report.leaderboard import (
    analysis_suites,
    build_baseline_view,
    build_leaderboard,
    has_notm,
    primary_suite,
    suite_names,
)
from ckptbench.report.matrices import case_heatmaps, kendall_rows, win_rate_heatmap
from ckptbench.report.sections import (
    all_scorers,
    distribution_charts,
    failure_rows,
    heat_style,
    missing_rows,
    provenance_items,
    rank_charts,
    scorer_directions,
    set_score_table,
    spec_text,
    truncated_rows,
    variance_charts,
)
from ckptbench.report.sweep_tables import sweep_heatmaps
from ckptbench.report.thumbnails import THUMBNAIL_SIZE, ThumbnailJob, make_thumbnails
from ckptbench.store import Store

_TEMPLATES = Path(__file__).parent / "templates"
EXPORTS = ("results.json", "scores.csv", "scores.parquet", "leaderboard.csv")


def image_owners(frame: pd.DataFrame) -> dict[str, str]:
    """image key → checkpoint (to attribute scoring failures, which name only the image)."""
    cells = frame.drop_duplicates("image_key")
    return dict(zip(cells["image_key"].astype(str), cells["checkpoint"].astype(str), strict=True))


def render_report(results: Mapping[str, Any], frame: pd.DataFrame, store: Store, report_dir: Path,
                  progress: Callable[[int, int], None] | None = None) -> Path:
    """Write ``report_dir/index.html`` (with thumbnails and infotext scripts); return its path."""
    report_dir.mkdir(parents=True, exist_ok=True)
    owners = image_owners(frame)
    primary = primary_suite(results)
    board = build_leaderboard(results, primary, owners)
    order = [row.checkpoint for row in board.rows]
    others = []
    for suite in suite_names(results):
        if suite != primary:
            others.append(build_leaderboard(results, suite, owners))
        if has_notm(results, suite):
            others.append(build_leaderboard(results, suite, owners, notm=True))
    grids = with_grid_images(_grids(results, frame, store, report_dir, order, progress), report_dir)
    _write_infotexts(grids, store, report_dir)
    context = {
        "title": (results.get("benchmark") or {}).get("name") or "ckptbench report",
        "run": results.get("run") or {},
        "scorer_infos": {name: info or {} for name, info in (results.get("scorers") or {}).items()},
        "checkpoint_infos": list(results.get("checkpoints") or []),
        "board": board,
        "other_boards": others,
        "baseline": build_baseline_view(results, primary) if primary else None,
        "heatmaps": case_heatmaps(results, order),
        "sweep": results.get("sweep"),
        "sweep_maps": sweep_heatmaps(results, order),
        "win_rates": [m for c in board.scorers if primary and (m := win_rate_heatmap(results, primary, c.name, order))],
        "kendall": kendall_rows(results, primary) if primary else [],
        "set_scores": set_score_table(results, order),
        "analysis_suites": _suites_in_order(results),
        "distributions": distribution_charts(frame, board),
        "variance": variance_charts(results),
        "ranks": rank_charts(results, board),
        "grids": grids,
        "contact": contact_sheet(grids),
        "grid_scorers": list(dict.fromkeys(s for g in grids for s in g.scorers)),
        "failures": failure_rows(results, owners),
        "missing": missing_rows(results),
        "truncated": truncated_rows(results),
        "provenance": provenance_items(results),
        "spec_text": spec_text(results),
        "human": results.get("human_preference"),
        "exports": [name for name in EXPORTS if (report_dir.parent / name).is_file()],
    }
    html = _environment().get_template("index.html.j2").render(**context)
    path = report_dir / "index.html"
    atomic_write_text(path, html)
    return path


def _suites_in_order(results: Mapping[str, Any]) -> dict[str, Any]:
    """analysis.suites with the leaderboard's suite first."""
    suites = analysis_suites(results)
    first = primary_suite(results)
    return {name: suites[name] for name in dict.fromkeys([first, *suites]) if name in suites}


def _grids(results: Mapping[str, Any], frame: pd.DataFrame, store: Store, report_dir: Path,
           order: list[str], progress: Callable[[int, int], None] | None) -> list[SeedGrid]:
    cells = frame.drop_duplicates("image_key")
    with_images = cells[cells["image"].notna()]
    thumbnails = make_thumbnails(
        (ThumbnailJob(str(row.image_key), store.root / str(row.image)) for row in with_images.itertuples()),
        report_dir, THUMBNAIL_SIZE, progress)
    urls = {str(row.image_key): image_url(store.root, str(row.image), report_dir)
            for row in with_images.itertuples()}
    labels: dict[tuple[str, str], str] = {}
    for suite, block in analysis_suites(results).items():
        for case_id, label in (block.get("case_labels") or {}).items():
            labels[(str(suite), str(case_id))] = str(label)
    reasons: dict[str, str] = {}
    for failure in results.get("failures") or []:
        if failure.get("image_key") and failure.get("scope") in ("image", "score"):
            scorer = f"{failure['scorer']}: " if failure.get("scorer") else ""
            reasons.setdefault(str(failure["image_key"]), f"failed: {scorer}{failure.get('message')}")
    row_reasons = {str(c["name"]): f"failed: {c['error']}" for c in results.get("checkpoints") or [] if c.get("error")}
    scorers = list(all_scorers(results, frame))
    grids = build_grids(_with_unscored_cells(frame, store, results, scorers), order, scorers,
                        scorer_directions(results), labels,
                        urls, {key: path.as_posix() for key, path in thumbnails.items()}, reasons, row_reasons)
    # The leaderboard's suite first, then the others in the analysis' order.
    suites = [s for s in [primary_suite(results), *suite_names(results)] if s]
    rank = {suite: i for i, suite in enumerate(dict.fromkeys(suites))}
    return sorted(grids, key=lambda g: rank.get(g.suite, len(rank)))


def _with_unscored_cells(frame: pd.DataFrame, store: Store, results: Mapping[str, Any], scorers: list[str]
                         ) -> pd.DataFrame:
    """The score table plus a row for each planned cell that has no score at all (its image failed), so the
    seed grids show that cell, with the reason on hover, instead of leaving the prompt or seed out."""
    run_id = (results.get("run") or {}).get("id")
    if run_id is None or not scorers:
        return frame
    items = store.run_items(int(run_id))
    absent = items[~items["image_key"].isin(set(frame["image_key"].astype(str)))]
    if absent.empty:
        return frame
    extra = absent.assign(scorer=scorers[0], value=float("nan"))[[c for c in frame.columns if c in absent.columns
                                                                   or c in ("scorer", "value")]]
    return pd.concat([frame, extra], ignore_index=True)


def _write_infotexts(grids: list[SeedGrid], store: Store, report_dir: Path) -> None:
    folder = report_dir / "infotext"
    if folder.is_dir():
        shutil.rmtree(folder)  # the report owns this folder; old prompts' scripts must not linger
    for grid in grids:
        keys = [cell.image_key for _, cells in grid.rows for cell in cells if cell.image_url and cell.image_key]
        if not keys:
            continue
        texts = store.image_infotexts(keys)
        # JSON inside a script: "</" is escaped so an infotext can never close the script element.
        payload = json.dumps(texts, ensure_ascii=False).replace("</", "<\\/")
        atomic_write_text(report_dir / grid.infotext_script,
                          f"ckptbenchInfotext({json.dumps(grid.anchor)}, {payload});\n")


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(_TEMPLATES), autoescape=True,
                                     undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    environment.filters.update(num=format_number, est=format_estimate, pct=format_percent, heat=heat_style,
                               sortkey=sort_key, scorer_index=lambda name, names: names.index(name),
                               breakable=breakable, times_ten=times_ten)
    return environment


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def times_ten(exponent: int) -> str:
    """" ×10⁹" for a column shown divided by 10⁹; "" for none."""
    return f" ×10{str(exponent).translate(_SUPERSCRIPT)}" if exponent else ""


def breakable(text: Any) -> Markup:
    """A name that may wrap after its hyphens, dots and underscores (long names in narrow table headers)."""
    escaped = str(escape(str(text)))
    return Markup(escaped.replace("-", "-<wbr>").replace(".", ".<wbr>").replace("_", "_<wbr>"))


def format_number(value: Any, digits: int = 4, exponent: int = 0) -> str:
    """Four significant digits; "–" for a missing value; very large or small numbers as "7.138×10⁹", not
    "7.138e+09"; ``exponent``: the value is shown divided by 10**exponent (its column says so)."""
    if not _finite(value):
        return "–"
    value = value / 10**exponent
    text = f"{value:.{digits}g}"
    if "e" in text:
        mantissa, power = text.split("e")
        return f"{mantissa}×10{str(int(power)).translate(_SUPERSCRIPT)}"
    return text


def format_estimate(value: Any, interval: Any = None, exponent: int = 0) -> str:
    """A mean shown with as many decimals as its 95% interval can tell apart (two more than the
    interval width's first digit), so a tight interval is not rounded into a single number."""
    if not _finite(value):
        return "–"
    scale = 10**exponent
    value = value / scale
    if interval and all(_finite(v) for v in interval) and interval[1] > interval[0] and abs(value) < 1e6:
        decimals = min(8, max(0, 1 - math.floor(math.log10((interval[1] - interval[0]) / scale))))
        return f"{value:.{decimals}f}"
    return format_number(value)


def format_percent(value: Any) -> str:
    return f"{100 * value:.0f}%" if _finite(value) else "–"


def sort_key(value: Any) -> str:
    """The ``data-sort`` attribute: a plain number, or empty (sorted last either way)."""
    return repr(float(value)) if _finite(value) else ""
