"""``ckptbench validate``: every check a run makes before it loads any weights, with the run's messages.

It plans the run exactly as a dry run does (the same code: spec, suites and reference folders, scorer
weights and their folder layouts, checkpoint headers and tensor sizes against their family's or the
spec's config, LoRA and embedding names) and reports what the run would stop at, leave out or skip.
Nothing is generated, scored or recorded. File digests are read from (and kept in) the spec's store when
one exists, as a dry run keeps them; otherwise a throwaway store is used and nothing is written beside
the spec.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from ckptbench.dry_run import DryRun, dry_run
from ckptbench.errors import StoreError
from ckptbench.spec import BenchmarkSpec
from ckptbench.spec_load import load_spec
from ckptbench.store import DATABASE_NAME, Store
from ckptbench.suites.load import LoadedSuite, checked_suites


@dataclass
class Validation:
    spec: BenchmarkSpec
    suites: list[LoadedSuite]
    plan: DryRun
    problems: list[str] = field(default_factory=list)  # what the run would fail or leave out
    notes: list[str] = field(default_factory=list)  # warnings the run would record (embedding near misses)
    skipped: dict[str, dict[str, int]] = field(default_factory=dict)  # scorer → reason → images it cannot score


def validate_spec(path: Path, console: Console) -> Validation:
    """Raise ``CkptbenchError`` for what stops a run before it starts (the spec, a suite, a scorer's weights);
    return the checkpoints and cases a run would fail or leave out as ``problems``. ``console`` gets what
    the run's planning prints (each checkpoint's detected family, skipped cases)."""
    spec = load_spec(path)
    suites = checked_suites(spec)
    with _planning_store(spec) as store_root:
        plan = dry_run(spec, store_root, console, executor="local")
    result = Validation(spec, suites, plan)
    result.problems += [work.error for work in plan.checkpoints if work.error]
    result.problems += plan.skipped_cases
    result.problems += plan.image_problems
    result.notes += plan.notes
    result.skipped = {work.name: work.skip_reasons for work in plan.scorers if work.skip_reasons}
    return result


@contextmanager
def _planning_store(spec: BenchmarkSpec) -> Iterator[Path]:
    """The spec's store when it exists and can be opened (its cached file digests spare re-hashing large
    checkpoints), else a temporary one."""
    if (spec.store_path / DATABASE_NAME).is_file():
        try:
            Store(spec.store_path).close()
        except StoreError:
            pass
        else:
            yield spec.store_path
            return
    with tempfile.TemporaryDirectory(prefix="ckptbench-validate-") as scratch:
        yield Path(scratch) / "store"
