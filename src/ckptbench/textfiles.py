"""Reading the project's own TOML files (specs, suites) and suggesting names, with one-sentence errors."""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ckptbench.errors import CkptbenchError


def read_toml(path: Path | str, error: type[CkptbenchError], what: str) -> dict[str, Any]:
    """Parse a TOML file; a missing, non-UTF-8 or malformed file raises ``error`` naming the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {what} file not found; check the path.")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as problem:
        raise error(f"{path}: not valid TOML ({problem}); fix the syntax at that line.") from None
    except UnicodeDecodeError:
        raise error(f"{path}: not a UTF-8 text file; save the {what} as UTF-8 TOML.") from None


def closest(name: str, candidates: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The candidate most like ``name`` (for "did you mean"), or None when nothing is close."""
    found = difflib.get_close_matches(name, list(candidates), n=1, cutoff=cutoff)
    return found[0] if found else None
