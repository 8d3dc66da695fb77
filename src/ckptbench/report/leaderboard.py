"""The leaderboard of a suite, read from the results document's ``analysis.suites.<suite>`` block.

One row per checkpoint of the run: the composite rank (when the spec declares composite weights), each
scorer's mean with its 95% interval, seed SD, good-image rate and rank, and whether the checkpoint
differs significantly from the next one in the ranking. The same rows feed the HTML table and
``leaderboard.csv``. Without an ``analysis`` block (a results document from before the statistics
existed) the rows fall back to the run-wide ``checkpoints[].scores`` summaries.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ckptbench.analysis.human_ranking import HUMAN

SIGNIFICANCE = 0.05  # on Holm-corrected p-values of the per-case Wilcoxon test


@dataclass(frozen=True)
class ScorerColumn:
    name: str
    higher_is_better: bool | None
    threshold: float | None = None
    description: str = ""
    exponent: int = 0  # the column's values are shown divided by 10**exponent (unnormalised style losses: 9)

    @property
    def arrow(self) -> str:
        return {True: "↑", False: "↓"}.get(self.higher_is_better, "")  # type: ignore[arg-type]


@dataclass(frozen=True)
class NeighbourTest:
    """How a row compares with the next row of the ranking on one scorer."""

    other: str
    better: str | None
    mean_diff: float | None
    p_holm: float | None

    @property
    def significant(self) -> bool:
        return self.p_holm is not None and self.p_holm < SIGNIFICANCE


@dataclass(frozen=True)
class ScorerCell:
    mean: float | None
    ci95: tuple[float | None, float | None]
    seed_std: float | None
    pooled_std: float | None = None
    n: int = 0
    missing: int = 0
    excluded: int = 0
    good_rate: float | None = None
    good_ci95: tuple[float | None, float | None] = (None, None)
    rank: int | None = None
    ghostreview_standard: float | None = None
    vs_next: NeighbourTest | None = None


@dataclass(frozen=True)
class LeaderboardRow:
    checkpoint: str
    status: str
    error: str | None
    images_ok: int
    images_planned: int
    failures: int
    rank: int | None
    composite: float | None = None
    composite_ci95: tuple[float | None, float | None] = (None, None)
    p_rank1: float | None = None
    scores: dict[str, ScorerCell] = field(default_factory=dict)
    in_best_set: bool = False  # in the confidence set for the best on the ranking (analysis/best.py)
    # Bradley–Terry strength from the suite's arena votes, with its 95% interval, and the votes it rests on.
    human_theta: float | None = None
    human_ci95: tuple[float | None, float | None] = (None, None)
    human_votes: int = 0


@dataclass(frozen=True)
class Leaderboard:
    suite: str | None
    kind: str
    scorers: list[ScorerColumn]
    rows: list[LeaderboardRow]
    ranked_by: str
    composite: Mapping[str, Any] | None = None
    variant: str | None = None  # "NoTM" for a LoRA suite's NoTM view
    by: str | None = None  # what the rank column ranks by: a scorer, "composite" or "human"
    verdict: Mapping[str, Any] | None = None  # analysis.suites.<suite>.verdict
    family: str | None = None  # the Holm family of the ▲/▼/≈ marks, in words
    imported: bool = False  # scores made elsewhere (no images): the images column says so
    human: bool = False  # the suite has arena votes: a human-preference column

    @property
    def has_neighbour_tests(self) -> bool:
        return any(cell.vs_next is not None for row in self.rows for cell in row.scores.values())


@dataclass(frozen=True)
class BaselineCell:
    mean_diff: float | None
    ci95: tuple[float | None, float | None]
    win_rate: float | None
    p_cases: float | None
    n_cells: int
    p_cases_holm: float | None = None

    @property
    def significant(self) -> bool:
        """Holm-corrected per-prompt Wilcoxon p < 0.05 (the family is stated in the report)."""
        return self.p_cases_holm is not None and self.p_cases_holm < SIGNIFICANCE


@dataclass(frozen=True)
class BaselineView:
    suite: str
    baseline: str
    scorers: list[ScorerColumn]
    rows: list[tuple[str, dict[str, BaselineCell]]]
    family: str | None = None  # the Holm family of the comparisons with the baseline


def analysis_suites(results: Mapping[str, Any]) -> Mapping[str, Any]:
    """suite → analysis block of a results document ({} when it has none)."""
    return (results.get("analysis") or {}).get("suites") or {}


def suite_names(results: Mapping[str, Any]) -> list[str]:
    return list(analysis_suites(results).keys())


def has_notm(results: Mapping[str, Any], suite: str) -> bool:
    return bool((analysis_suites(results).get(suite) or {}).get("notm"))


def primary_suite(results: Mapping[str, Any]) -> str | None:
    """The suite the main leaderboard shows: the first quality suite, else the first suite."""
    suites = analysis_suites(results)
    for name, block in suites.items():
        if block.get("kind", "quality") == "quality":
            return str(name)
    return next(iter(suites), None)


def scorer_order(results: Mapping[str, Any], present: Sequence[str]) -> list[str]:
    """The spec's ``scorers.use`` order (the first named is the primary scorer), then any others."""
    declared = [str(n) for n in ((results.get("spec") or {}).get("scorers") or {}).get("use") or []]
    return [n for n in declared if n in present] + sorted(n for n in present if n not in declared)


def failure_counts(results: Mapping[str, Any], image_owners: Mapping[str, str]) -> dict[str, int]:
    """Failures per checkpoint; a scoring failure names only its image, so ``image_owners`` maps
    image key → checkpoint."""
    counts: dict[str, int] = {}
    for failure in results.get("failures") or []:
        owner = failure.get("checkpoint") or image_owners.get(str(failure.get("image_key")))
        if owner:
            counts[str(owner)] = counts.get(str(owner), 0) + 1
    return counts


def build_leaderboard(results: Mapping[str, Any], suite: str | None,
                      image_owners: Mapping[str, str] | None = None, notm: bool = False) -> Leaderboard:
    """The leaderboard of ``suite``; ``notm``: of its NoTM variant (a LoRA suite without the LoRAs whose
    showcase images each checkpoint made itself)."""
    failures = failure_counts(results, image_owners or {})
    block = analysis_suites(results).get(suite) if suite else None
    if block is None:
        return _fallback_leaderboard(results, failures)
    kind = str(block.get("kind") or "quality")
    if notm:
        block = block.get("notm") or {}
    scorer_blocks: Mapping[str, Any] = block.get("scorers") or {}
    names = scorer_order(results, list(scorer_blocks))
    infos = results.get("scorers") or {}
    columns = [ScorerColumn(n, scorer_blocks[n].get("higher_is_better"), scorer_blocks[n].get("threshold"),
                            str((infos.get(n) or {}).get("description") or "")) for n in names]
    composite = block.get("composite")
    composite_scores = (composite or {}).get("scores") or {}
    ranking = block.get("ranking") or {}
    # Results written before the ranking was recorded: the composite when there is one, else the first scorer.
    by = ranking.get("by") or ("composite" if composite_scores else (names[0] if names else None))

    human = block.get("human") or {}
    human_rows = {str(row["checkpoint"]): row for row in human.get("checkpoints") or ()}

    def default_rank(checkpoint: str) -> int | None:
        if by == "composite":
            return (composite_scores.get(checkpoint) or {}).get("rank")
        if by == HUMAN:
            return (human_rows.get(checkpoint) or {}).get("rank")
        if by in scorer_blocks:
            return ((scorer_blocks[by].get("summary") or {}).get(checkpoint) or {}).get("rank")
        return None

    verdict = block.get("verdict") or None
    best = set((verdict or {}).get("best_set") or ())
    order = _ordered(results, [str(c) for c in block.get("checkpoints") or []], default_rank)
    rows = []
    for checkpoint in order:
        meta = _checkpoint_meta(results, checkpoint)
        entry = composite_scores.get(checkpoint) or {}
        scores = {n: _scorer_cell((scorer_blocks[n].get("summary") or {}).get(checkpoint)) for n in names}
        voted = human_rows.get(checkpoint) or {}
        rows.append(LeaderboardRow(
            checkpoint=checkpoint, status=str(meta.get("status") or "ok"), error=meta.get("error"),
            images_ok=int((meta.get("images") or {}).get("ok") or 0),
            images_planned=int((meta.get("images") or {}).get("planned") or 0),
            failures=failures.get(checkpoint, 0), rank=default_rank(checkpoint),
            composite=entry.get("value"), composite_ci95=_pair(entry.get("ci95")), p_rank1=entry.get("p_rank1"),
            scores=scores, in_best_set=checkpoint in best, human_theta=voted.get("theta"),
            human_ci95=_pair(voted.get("ci95")), human_votes=int(voted.get("votes") or 0)))
    rows = _mark_neighbours(rows, {n: scorer_blocks[n].get("pairs") or [] for n in names})
    if ranking:
        ranked_by = f"{ranking.get('label') or by} ({ranking.get('source')})"
    elif by == "composite":
        ranked_by = "composite score (" + ", ".join(f"{w:g} × {n}" for n, w in composite["weights"].items()) + ")"
    else:
        ranked_by = f"{by} (the first scorer the spec names)" if by else "name"
    return Leaderboard(suite=suite, kind=kind, scorers=_with_exponents(columns, rows), rows=rows,
                       ranked_by=ranked_by, composite=composite if composite_scores else None,
                       variant="NoTM" if notm else None, by=by, verdict=verdict,
                       family=_pairs_family(scorer_blocks, suite, notm), imported=is_imported(results),
                       human=bool(human_rows))


def _pairs_family(scorer_blocks: Mapping[str, Any], suite: str | None, notm: bool) -> str | None:
    """The Holm family of the pairwise marks: the run-wide one, or one per scorer of this suite."""
    families = [block.get("holm_family") or {} for block in scorer_blocks.values()]
    labels = [str(f.get("pairs")) for f in families if f.get("pairs")]
    if not labels:
        return None
    if labels[0].startswith("run:"):
        return labels[0]
    sizes = sorted({int(f.get("tests") or 0) for f in families})
    view = f"suite “{suite}”" + (" (NoTM)" if notm else "")
    return (f"all pairs of {view}, one family per scorer ("
            + " or ".join(str(n) for n in sizes) + " tests each)")


def is_imported(results: Mapping[str, Any]) -> bool:
    """Scores made elsewhere and imported (no images were made by this run)."""
    return bool((results.get("run") or {}).get("imported") or (results.get("provenance") or {}).get("imported"))


def display_exponent(values: Sequence[float | None]) -> int:
    """A power of ten (a multiple of 3) to divide a column by so that its numbers read as "7.14" rather than
    "7.138e+09"; 0 for numbers that already read well (below 10⁵)."""
    finite = [abs(v) for v in values if isinstance(v, int | float) and math.isfinite(v) and v != 0]
    if not finite or max(finite) < 1e5:
        return 0
    return 3 * math.floor(math.log10(max(finite)) / 3)


def _with_exponents(columns: list[ScorerColumn], rows: Sequence[LeaderboardRow]) -> list[ScorerColumn]:
    return [replace(column, exponent=display_exponent([row.scores[column.name].mean for row in rows
                                                       if column.name in row.scores])) for column in columns]


def build_baseline_view(results: Mapping[str, Any], suite: str) -> BaselineView | None:
    """Differences to the spec's baseline checkpoint on shared cells; None when no baseline is set."""
    block = analysis_suites(results).get(suite) or {}
    scorer_blocks: Mapping[str, Any] = block.get("scorers") or {}
    names = [n for n in scorer_order(results, list(scorer_blocks)) if scorer_blocks[n].get("baseline")]
    if not names:
        return None
    baseline = str(scorer_blocks[names[0]]["baseline"]["checkpoint"])
    columns = [ScorerColumn(n, scorer_blocks[n].get("higher_is_better")) for n in names]
    rows = []
    for checkpoint in block.get("checkpoints") or []:
        cells = {}
        for n in names:
            entry = (scorer_blocks[n]["baseline"].get("scores") or {}).get(checkpoint) or {}
            cells[n] = BaselineCell(entry.get("mean_diff"), _pair(entry.get("ci95")), entry.get("win_rate"),
                                    entry.get("p_cases"), int(entry.get("n_cells") or 0), entry.get("p_cases_holm"))
        rows.append((str(checkpoint), cells))
    family = (scorer_blocks[names[0]].get("holm_family") or {}).get("baseline")
    return BaselineView(suite=suite, baseline=baseline, scorers=columns, rows=rows, family=family)


def _ordered(results: Mapping[str, Any], names: Sequence[str], rank_of: Callable[[str], int | None]) -> list[str]:
    """Ranked checkpoints first (best first), then unranked ones, then checkpoints that failed outright
    (not in the analysis at all): every checkpoint of the run gets a row."""
    every = list(dict.fromkeys([*names, *(str(c["name"]) for c in results.get("checkpoints") or [])]))
    position = {name: i for i, name in enumerate(every)}

    def key(name: str) -> tuple[int, int, int]:
        rank = rank_of(name) if name in names else None
        return (0 if rank is not None else (1 if name in names else 2), rank or 0, position[name])

    return sorted(every, key=key)


def _checkpoint_meta(results: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    return next((c for c in results.get("checkpoints") or [] if c.get("name") == name), {})


def _pair(value: Any) -> tuple[float | None, float | None]:
    if isinstance(value, Sequence) and len(value) == 2:
        return (value[0], value[1])
    return (None, None)


def _scorer_cell(summary: Mapping[str, Any] | None) -> ScorerCell:
    if not summary:
        return ScorerCell(None, (None, None), None)
    good = summary.get("good_rate") or {}
    return ScorerCell(
        mean=summary.get("mean"), ci95=_pair(summary.get("ci95")), seed_std=summary.get("seed_std"),
        pooled_std=summary.get("pooled_std"), n=int(summary.get("n") or 0), missing=int(summary.get("missing") or 0),
        excluded=int(summary.get("excluded") or 0), good_rate=good.get("rate"), good_ci95=_pair(good.get("ci95")),
        rank=summary.get("rank"), ghostreview_standard=summary.get("ghostreview_standard"))


def _mark_neighbours(rows: list[LeaderboardRow], pairs: Mapping[str, Sequence[Mapping[str, Any]]]
                     ) -> list[LeaderboardRow]:
    """Attach to each row, per scorer, the paired test against the next row of the ranking."""
    marked = []
    for index, row in enumerate(rows):
        if index + 1 == len(rows):
            marked.append(row)
            continue
        following = rows[index + 1].checkpoint
        scores = dict(row.scores)
        for scorer, cell in row.scores.items():
            pair = next((p for p in pairs.get(scorer, ()) if {p.get("a"), p.get("b")} == {row.checkpoint, following}),
                        None)
            if pair is None:
                continue
            difference = pair.get("mean_diff")
            if difference is not None and pair.get("a") != row.checkpoint:
                difference = -difference  # pairs store a − b; the row reads "this minus the next"
            scores[scorer] = replace(cell, vs_next=NeighbourTest(following, pair.get("better"), difference,
                                                                  pair.get("p_cases_holm")))
        marked.append(replace(row, scores=scores))
    return marked


def _fallback_leaderboard(results: Mapping[str, Any], failures: Mapping[str, int]) -> Leaderboard:
    # Set-level scorers (one value per checkpoint, no per-image scores) have their own table.
    infos = {n: i for n, i in (results.get("scorers") or {}).items() if (i or {}).get("level") != "set"}
    checkpoints = list(results.get("checkpoints") or [])
    present = dict.fromkeys([*infos, *(name for c in checkpoints for name in (c.get("scores") or {}))])
    names = scorer_order(results, list(present))
    columns = [ScorerColumn(n, (infos.get(n) or {}).get("higher_is_better"), None,
                            str((infos.get(n) or {}).get("description") or "")) for n in names]
    primary = names[0] if names else None

    def primary_mean(c: Mapping[str, Any]) -> float | None:
        return ((c.get("scores") or {}).get(primary) or {}).get("mean") if primary else None

    sign = -1.0 if primary and (infos.get(primary) or {}).get("higher_is_better") is False else 1.0
    ranked = sorted((c for c in checkpoints if primary_mean(c) is not None), key=lambda c: -sign * primary_mean(c))
    ranks = {str(c["name"]): i + 1 for i, c in enumerate(ranked)}
    order = ranked + [c for c in checkpoints if primary_mean(c) is None]
    rows = [LeaderboardRow(
        checkpoint=str(c["name"]), status=str(c.get("status") or "ok"), error=c.get("error"),
        images_ok=int((c.get("images") or {}).get("ok") or 0),
        images_planned=int((c.get("images") or {}).get("planned") or 0),
        failures=failures.get(str(c["name"]), 0), rank=ranks.get(str(c["name"])),
        scores={n: _scorer_cell((c.get("scores") or {}).get(n)) for n in names}) for c in order]
    return Leaderboard(suite=None, kind="quality", scorers=_with_exponents(columns, rows), rows=rows,
                       ranked_by=f"{primary} mean (all images of the run)" if primary else "name",
                       imported=is_imported(results))
