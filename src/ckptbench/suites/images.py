"""Finding reference and showcase images in folders."""

from __future__ import annotations

import re
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def image_files(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (not below it), in natural order ("2" before "10")."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
             and not p.name.startswith(".")]
    return sorted(found, key=_natural_key)


def image_files_below(folder: Path) -> list[Path]:
    """Image files in ``folder`` and every folder below it (hidden files and folders skipped), in natural order
    of their paths: what ``import infotext``, the infotext suite format and ``score`` read, so a store's own
    ``images/ab/<key>.png`` layout is found too."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
             and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    return sorted(found, key=lambda p: [_natural_key(Path(part)) for part in p.relative_to(folder).parts])


def _natural_key(path: Path) -> list[object]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]
