"""Reference image sets: the images a style or distribution scorer compares generated images with.

A set is known by its content (the sorted sha256 of its files), so the same images at another path are
the same set, and a changed reference image changes every score that used it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ckptbench.errors import SpecError
from ckptbench.hashing import DigestCache, content_key, sha256_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass(frozen=True)
class ReferenceSet:
    files: tuple[Path, ...]
    digests: tuple[str, ...]  # sha256 of each file, in the order of ``files``

    @property
    def key(self) -> str:
        return content_key(sorted(self.digests))

    def __len__(self) -> int:
        return len(self.files)


def image_files(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def reference_set(paths: Iterable[Path], cache: DigestCache | None, where: str) -> ReferenceSet:
    """A set from image files and folders (a folder stands for the images in it)."""
    files: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            files.extend(image_files(path))
        elif path.is_file():
            files.append(path)
        else:
            raise SpecError(f"{where}: reference image {path} does not exist; fix the path.")
    if not files:
        raise SpecError(f"{where}: no reference images found; give image files or a folder of images.")
    # One file named twice is one reference.
    unique = list(dict.fromkeys(p.resolve() for p in files))
    for path in unique:
        check_image_readable(path, where)
    return ReferenceSet(tuple(unique), tuple(sha256_file(p, cache) for p in unique))


def check_image_readable(path: Path, where: str) -> None:
    """Raise ``SpecError`` for an empty or undecodable reference image, before any work depends on it.

    ``verify`` reads the file's structure (for PNG every chunk and its checksum, so a truncated file is
    caught) without decoding the pixels, so checking thousands of references stays cheap.
    """
    if path.stat().st_size == 0:
        raise SpecError(f"{where}: reference image {path} is empty (0 bytes); replace it with the real image or "
                        "remove it from the references.")
    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as error:
        detail = (str(error).strip().splitlines() or [""])[0][:200]
        reason = ("not a known image format" if isinstance(error, UnidentifiedImageError)
                  else f"{type(error).__name__}: {detail}" if detail else type(error).__name__)
        raise SpecError(f"{where}: reference image {path} cannot be read as an image ({reason}); replace it with a "
                        "readable PNG, JPEG or WebP file or remove it from the references.") from None
