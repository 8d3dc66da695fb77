"""``ckptbench check results.json``: gates for CI on a finished run, with the exit codes of ``outcome``.

Two kinds of gate: the run's status (a failed run, or a partial one unless allowed) and score thresholds
(``clip-score>=20``: every selected checkpoint's mean must reach it). Every gate prints one line saying
what it checked and what it found, so a failing CI log says why.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ckptbench.errors import CkptbenchError
from ckptbench.failure_records import describe_failure
from ckptbench.outcome import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL, EXIT_THRESHOLD
from ckptbench.spec_errors import did_you_mean

_THRESHOLD = re.compile(r"^\s*(?P<scorer>[^=<>\s]+)\s*(?P<op>>=|<=|=)\s*(?P<value>[-+0-9.eE]+)\s*$")


@dataclass(frozen=True)
class Threshold:
    scorer: str
    value: float
    at_least: bool  # True: mean ≥ value; False: mean ≤ value

    @property
    def text(self) -> str:
        return f"{self.scorer} {'≥' if self.at_least else '≤'} {self.value:g}"


@dataclass
class CheckResult:
    lines: list[tuple[bool, str]] = field(default_factory=list)  # (passed, what was checked and found)
    code: int = EXIT_OK


def parse_threshold(text: str, at_least: bool) -> Threshold:
    """``SCORER=VALUE`` (or ``SCORER>=VALUE`` / ``SCORER<=VALUE``, which also set the direction)."""
    match = _THRESHOLD.match(text)
    if match is None:
        raise CkptbenchError(f"threshold '{text}': write SCORER=VALUE, e.g. clip-score=20.")
    try:
        value = float(match["value"])
    except ValueError:
        raise CkptbenchError(f"threshold '{text}': '{match['value']}' is not a number.") from None
    op = match["op"]
    return Threshold(match["scorer"], value, at_least if op == "=" else op == ">=")


def load_results(path: Path) -> dict[str, Any]:
    if path.is_dir():
        path = path / "results.json"
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CkptbenchError(f"{path} does not exist; give the results.json a run wrote (in its store), or the "
                             "store folder.") from None
    except (OSError, json.JSONDecodeError) as error:
        raise CkptbenchError(f"{path}: not a readable results file ({error}).") from None
    if not isinstance(results, dict) or "checkpoints" not in results:
        raise CkptbenchError(f"{path}: not a ckptbench results file (no 'checkpoints'); give the results.json a "
                             "run wrote.")
    return results


def check_results(results: Mapping[str, Any], thresholds: Sequence[Threshold], checkpoints: Sequence[str] = (),
                  allow_partial: bool = False, suite: str | None = None) -> CheckResult:
    """Apply the gates; ``checkpoints``: only these (default: every checkpoint of the run); ``suite``: read
    the means of that suite (default: over all images of the run)."""
    result = CheckResult()
    entries = {str(c["name"]): c for c in results.get("checkpoints") or []}
    for name in checkpoints:
        if name not in entries:
            raise CkptbenchError(f"--checkpoint '{name}' is not a checkpoint of this run{did_you_mean(name, entries)}.")
    chosen = [entries[name] for name in (checkpoints or list(entries))]
    _check_status(results, chosen, allow_partial, result)
    means = _means(results, suite)
    for threshold in thresholds:
        _check_threshold(threshold, chosen, means, result)
    return result


def _check_status(results: Mapping[str, Any], chosen: list[Mapping[str, Any]], allow_partial: bool,
                  result: CheckResult) -> None:
    run = results.get("run") or {}
    statuses = {str(c["name"]): str(c.get("status") or "ok") for c in chosen}
    status = str(run.get("status") or "ok")
    failures = [f for f in results.get("failures") or [] if f.get("scope") != "warning"]
    summary = ", ".join(f"{name} {state}" for name, state in statuses.items())
    if status == "failed" or any(state == "failed" for state in statuses.values()):
        result.lines.append((False, f"status: run #{run.get('id')} {status} ({summary})"))
        result.code = EXIT_FAILED
    elif status != "ok" or any(state != "ok" for state in statuses.values()):
        first = f"; first failure: {describe_failure(failures[0])}" if failures else ""
        text = f"status: run #{run.get('id')} {status} ({summary}; {len(failures)} failure(s){first})"
        result.lines.append((allow_partial, text + (" — allowed by --allow-partial" if allow_partial else "")))
        if not allow_partial:
            result.code = EXIT_PARTIAL
    else:
        result.lines.append((True, f"status: run #{run.get('id')} ok ({summary})"))


def _means(results: Mapping[str, Any], suite: str | None) -> dict[str, dict[str, float | None]]:
    """scorer → checkpoint → mean."""
    means: dict[str, dict[str, float | None]] = {}
    if suite is None:
        for checkpoint in results.get("checkpoints") or []:
            for scorer, summary in (checkpoint.get("scores") or {}).items():
                means.setdefault(scorer, {})[str(checkpoint["name"])] = (summary or {}).get("mean")
        return means
    suites = (results.get("analysis") or {}).get("suites") or {}
    if suite not in suites:
        raise CkptbenchError(f"--suite '{suite}' is not a suite of this run{did_you_mean(suite, suites)}.")
    for scorer, block in (suites[suite].get("scorers") or {}).items():
        means[scorer] = {str(name): (entry or {}).get("mean") for name, entry in (block.get("summary") or {}).items()}
    return means


def _check_threshold(threshold: Threshold, chosen: list[Mapping[str, Any]],
                     means: Mapping[str, Mapping[str, float | None]], result: CheckResult) -> None:
    if threshold.scorer not in means:
        raise CkptbenchError(f"threshold on '{threshold.scorer}': this run has no such scorer"
                             f"{did_you_mean(threshold.scorer, means)} (scorers: {', '.join(sorted(means))}).")
    values = {str(c["name"]): means[threshold.scorer].get(str(c["name"])) for c in chosen}
    missing = [name for name, value in values.items() if value is None or not math.isfinite(value)]
    below = [name for name, value in values.items() if name not in missing
             and (value < threshold.value if threshold.at_least else value > threshold.value)]  # type: ignore[operator]
    known = {name: value for name, value in values.items() if name not in missing}
    if not below and not missing:
        worst = (min if threshold.at_least else max)(known, key=known.__getitem__) if known else None
        result.lines.append((True, f"{threshold.text}: met by {len(known)} checkpoint(s)"
                             + (f" (closest: {worst} {known[worst]:.4g})" if worst else "")))
        return
    parts = [f"{name} {known[name]:.4g}" for name in below] + [f"{name} has no value" for name in missing]
    result.lines.append((False, f"{threshold.text}: not met by {', '.join(parts)}"))
    if result.code == EXIT_OK:
        result.code = EXIT_THRESHOLD
