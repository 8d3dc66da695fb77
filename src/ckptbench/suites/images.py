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


def _natural_key(path: Path) -> list[object]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]
