"""Thumbnails for the report: small WebP files named by image key and size, made once.

A report over 10,000 images must stay small enough to share, so the page shows thumbnails and only
links the full PNGs. A thumbnail's name is ``thumbs/<size>/<key[:2]>/<key>.webp``: the image key
already hashes everything that changes the pixels, so an existing file is never made again and a
re-render costs only the images that are new.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

THUMBNAIL_SIZE = 128  # longest side in pixels: 32 seeds of a prompt fit a wide screen at this size
WEBP_QUALITY = 70  # ≈ 4–7 KB for a 128 px thumbnail of a 512×768 image


@dataclass(frozen=True)
class ThumbnailJob:
    image_key: str
    source: Path  # the full PNG in the store


def thumbnail_path(image_key: str, size: int = THUMBNAIL_SIZE) -> Path:
    """Where the thumbnail of an image lives, relative to the report folder."""
    return Path("thumbs") / str(size) / image_key[:2] / f"{image_key}.webp"


def encode_thumbnail(source: Path, size: int = THUMBNAIL_SIZE) -> bytes:
    with Image.open(source) as image:
        image = image.convert("RGB")
        # reducing_gap lets Pillow shrink by an integer factor first: much faster on hires images,
        # with no visible difference at thumbnail size.
        image.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
        buffer = io.BytesIO()
        image.save(buffer, format="WEBP", quality=WEBP_QUALITY, method=4)
    return buffer.getvalue()


def make_thumbnails(jobs: Iterable[ThumbnailJob], report_dir: Path, size: int = THUMBNAIL_SIZE,
                    progress: Callable[[int, int], None] | None = None) -> dict[str, Path]:
    """Make the thumbnails that do not exist yet; return image key → thumbnail path (relative to the
    report folder) for every image whose thumbnail exists afterwards. A source that cannot be read is
    left out (the grid then shows its scores without a picture)."""
    wanted = {job.image_key: job for job in jobs}
    done: dict[str, Path] = {}
    todo: list[ThumbnailJob] = []
    for key, job in wanted.items():
        relative = thumbnail_path(key, size)
        target = report_dir / relative
        # A thumbnail is a cache entry: an empty file (a write cut short by a power loss) is made again.
        if target.is_file() and target.stat().st_size > 0:
            done[key] = relative
        elif job.source.is_file():
            todo.append(job)

    def make(job: ThumbnailJob) -> tuple[str, Path | None]:
        relative = thumbnail_path(job.image_key, size)
        try:
            data = encode_thumbnail(job.source, size)
        except OSError:
            return job.image_key, None
        _write_file(report_dir / relative, data)
        return job.image_key, relative

    # Pillow releases the GIL while decoding, resizing and encoding, so threads use every core.
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for count, (key, relative) in enumerate(pool.map(make, todo), start=1):
            if relative is not None:
                done[key] = relative
            if progress is not None:
                progress(count, len(todo))
    return done


def _write_file(path: Path, data: bytes) -> None:
    """Write via a temporary file and a rename, so a reader never sees half a thumbnail. No fsync (a lost
    thumbnail is simply made again) and no umask juggling (not safe across threads): 0644 so that any
    static web server can read it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
