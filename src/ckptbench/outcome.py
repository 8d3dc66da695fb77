"""How a run ended, in words (statuses) and in numbers a script can test (exit codes).

A checkpoint is ``ok`` when every image planned for it was made and scored, ``partial`` when some are
missing (an image or a score failed), ``failed`` when it made no image at all (it could not be loaded,
or every image failed). A run is ``ok`` when every checkpoint is ``ok`` and no case was left out,
``failed`` when no checkpoint made an image (every checkpoint failed, or every case was left
out), ``partial`` otherwise, and ``interrupted`` when it was
stopped. An imported run (scores made elsewhere, no images) is judged by its scores alone.

Exit codes (documented in the README and in ``ckptbench --help``):

==== =====================================================================================
0    everything planned was made and scored (warnings such as a near-miss embedding name allowed)
1    an unexpected error (a bug: please report the traceback)
2    bad input: the spec, a model file or the store cannot be used; nothing ran
3    partial: the run finished but some images or scores are missing (see its failures)
4    failed: no checkpoint made an image (or ``check`` found a results file of such a run)
5    ``ckptbench check``: a score threshold is not met
130  interrupted (Ctrl-C); run the same command to resume
==== =====================================================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ckptbench.stop import INTERRUPTED_EXIT_CODE

if TYPE_CHECKING:
    from ckptbench.store import Store

Status = Literal["ok", "partial", "failed", "interrupted", "running"]

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_PARTIAL = 3
EXIT_FAILED = 4
EXIT_THRESHOLD = 5
EXIT_INTERRUPTED = INTERRUPTED_EXIT_CODE

EXIT_CODES: dict[str, int] = {"ok": EXIT_OK, "partial": EXIT_PARTIAL, "failed": EXIT_FAILED,
                              "interrupted": EXIT_INTERRUPTED}

# Failure scopes that leave a hole in the results; "warning" records do not.
MISSING_WORK_SCOPES = frozenset({"checkpoint", "shard", "case", "image", "score", "set-score"})


@dataclass(frozen=True)
class CheckpointTally:
    """What a run asked of one checkpoint and what it got."""

    name: str
    recorded_status: str  # as the runner recorded it: "ok", or "failed" when it could not be used
    planned: int
    made: int
    failures: int  # failure records of this checkpoint that leave a hole (images, scores, shards)


def checkpoint_status(tally: CheckpointTally, imported: bool = False) -> Status:
    if tally.recorded_status == "failed":
        return "failed"
    if imported:  # scores without images: the scores alone say whether anything is missing
        return "partial" if tally.failures else "ok"
    if tally.planned and not tally.made:
        return "failed"
    if tally.made < tally.planned or tally.failures:
        return "partial"
    return "ok"


def run_status(statuses: Mapping[str, Status], run_wide_failures: int, interrupted: bool = False,
               made_any: bool = True) -> Status:
    """``run_wide_failures``: failures not owned by one checkpoint (cases left out for every checkpoint);
    ``made_any``: whether the run has any image (or, imported, any score) at all."""
    if interrupted:
        return "interrupted"
    if (statuses and all(status == "failed" for status in statuses.values())) or (
            not made_any and run_wide_failures):
        return "failed"
    if run_wide_failures or any(status != "ok" for status in statuses.values()):
        return "partial"
    return "ok"


def tallies(items: Iterable[tuple[str, bool]], checkpoints: Iterable[Mapping[str, Any]],
            failures: Iterable[Mapping[str, Any]], image_owners: Mapping[str, str]
            ) -> tuple[list[CheckpointTally], int]:
    """Per-checkpoint tallies from a run's record, and the count of run-wide failures.

    ``items``: (checkpoint, has an image) per planned cell; ``checkpoints``: the run's checkpoint records
    (name, status); ``failures``: its failure records; ``image_owners``: image key → checkpoint, for
    scoring failures that name only their image."""
    planned: dict[str, int] = {}
    made: dict[str, int] = {}
    for name, has_image in items:
        planned[name] = planned.get(name, 0) + 1
        made[name] = made.get(name, 0) + int(has_image)
    holes: dict[str, int] = {}
    run_wide = 0
    for failure in failures:
        if failure.get("scope") not in MISSING_WORK_SCOPES:
            continue
        owner = failure.get("checkpoint") or image_owners.get(str(failure.get("image_key")))
        if owner:
            holes[str(owner)] = holes.get(str(owner), 0) + 1
        else:
            run_wide += 1
    result = [CheckpointTally(str(c["name"]), str(c.get("status") or "ok"), planned.get(str(c["name"]), 0),
                              made.get(str(c["name"]), 0), holes.get(str(c["name"]), 0)) for c in checkpoints]
    return result, run_wide


def exit_code(status: str) -> int:
    return EXIT_CODES.get(status, EXIT_OK)


def run_statuses(store: Store, run_id: int, interrupted: bool = False) -> tuple[dict[str, str], str]:
    """Each checkpoint's status and the run's, from the store's record of the run (no pandas: the runner
    calls this before it writes the outputs)."""
    run = store.run(run_id) or {}
    if interrupted:
        run = {**run, "status": "interrupted"}
    return statuses_of(run, store.run_item_rows(run_id), store.run_checkpoints(run_id), store.run_failures(run_id),
                       fresh=True)


def statuses_of(run: Mapping[str, Any], items: Sequence[Mapping[str, Any]], checkpoints: list[dict[str, object]],
                failures: list[dict[str, Any]], fresh: bool = False) -> tuple[dict[str, str], str]:
    """Statuses from a run's record: ``items`` are its cells (``Store.run_item_rows``). The run's recorded
    status stands when it says the run did not finish (running, interrupted); ``fresh``: the run is finishing
    now, so its record is not final."""
    imported = bool((run.get("provenance") or {}).get("imported"))
    owners = {str(item["image_key"]): str(item["checkpoint"]) for item in items}
    cells = [(str(item["checkpoint"]), item["image"] is not None) for item in items]
    counted, run_wide = tallies(cells, checkpoints, failures, owners)
    statuses = {tally.name: checkpoint_status(tally, imported) for tally in counted}
    recorded = str(run.get("status") or "ok")
    if recorded in ("running", "interrupted") and not (fresh and recorded == "running"):
        return statuses, recorded
    made_any = imported or any(tally.made for tally in counted)
    return statuses, run_status(statuses, run_wide, made_any=made_any)
