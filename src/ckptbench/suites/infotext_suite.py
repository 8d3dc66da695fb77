"""Cases from images that carry A1111 infotext (e.g. showcase images saved from Civitai).

The infotext is read from a PNG's ``parameters`` text chunk, a JPEG/WebP's EXIF UserComment (where A1111
writes it), or a sidecar ``.txt`` beside the image. Each image becomes one case: its prompt and negative
prompt, the image itself as the reference, the checkpoint it was made with (``Model`` / ``Model hash``:
NoTM) and its LoRAs' hashes (``Lora hashes``: resolution by hash).
"""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ckptbench.errors import SuiteError
from ckptbench.infotext import parse_infotext
from ckptbench.prompt import extract_lora_tags
from ckptbench.spec import SuiteKind
from ckptbench.suites.case import Case
from ckptbench.suites.images import IMAGE_SUFFIXES, image_files_below

_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286
_HASH_ENTRY = re.compile(r"\s*(?P<name>[^:,]+?)\s*:\s*(?P<hash>[0-9a-fA-F]{8,64})\s*(?:,|$)")


def read_image_infotext(path: Path) -> str | None:
    """The A1111 parameters text of an image, or None when it has none."""
    try:
        with Image.open(path) as image:
            text = image.info.get("parameters")
            if isinstance(text, str) and text.strip():
                return text
            comment = image.getexif().get_ifd(_EXIF_IFD).get(_USER_COMMENT)
    except (UnidentifiedImageError, OSError) as error:
        raise SuiteError(f"{path}: cannot read the image ({error}); remove it or replace it.") from None
    if comment:
        text = decode_user_comment(comment)
        if text.strip():
            return text
    sidecar = path.with_suffix(".txt")
    if sidecar.is_file():
        return sidecar.read_text(encoding="utf-8", errors="replace")
    return None


def decode_user_comment(value: bytes | str) -> str:
    """EXIF UserComment: an 8-byte charset prefix, then the text (A1111 writes UTF-16 after 'UNICODE')."""
    if isinstance(value, str):
        return value
    prefix, body = value[:8], value[8:]
    if prefix.startswith(b"UNICODE"):
        if body[:2] in (b"\xff\xfe", b"\xfe\xff"):
            return body.decode("utf-16", errors="replace")
        # No byte-order mark: ASCII-range text has its zero bytes first in big-endian, second in little.
        zeros_first = body[0::2].count(0)
        zeros_second = body[1::2].count(0)
        return body.decode("utf-16-be" if zeros_first >= zeros_second else "utf-16-le", errors="replace")
    if prefix.startswith(b"ASCII"):
        return body.decode("ascii", errors="replace")
    return (body if prefix == b"\0" * 8 else value).decode("utf-8", errors="replace").strip("\0")


def lora_hashes(text: str) -> tuple[tuple[str, str], ...]:
    """``Lora hashes: "name: 0123456789ab, other: …"`` → (name, "autov3:…") pairs.

    A1111 writes the first 12 hex digits of the sha256 of the file's tensor data (Civitai's AutoV3);
    10 digits are taken as AutoV2 (sha256 of the whole file), 64 as the full sha256.
    """
    kinds = {10: "autov2", 12: "autov3", 64: "sha256"}
    pairs = []
    for match in _HASH_ENTRY.finditer(text):
        digest = match["hash"].lower()
        if len(digest) in kinds:
            pairs.append((match["name"], f"{kinds[len(digest)]}:{digest}"))
    return tuple(pairs)


def cases_from_images(path: Path, suite: str, kind: SuiteKind | None = None) -> tuple[list[Case], list[Path]]:
    """One case per image with infotext under ``path`` (a file, or a folder searched with its subfolders);
    also the images without."""
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise SuiteError(f"{path}: not an image ({', '.join(IMAGE_SUFFIXES)}); give an image or a folder of them.")
        images = [path]
    elif path.is_dir():
        images = image_files_below(path)
        if not images:
            raise SuiteError(f"{path}: no images (png, jpg, webp) in this folder or below it; give the folder of "
                             "showcase images.")
    else:
        raise SuiteError(f"{path}: not found; give an image or a folder of images.")
    cases: list[Case] = []
    skipped: list[Path] = []
    used: set[str] = set()
    for image in images:
        text = read_image_infotext(image)
        if text is None:
            skipped.append(image)
            continue
        info = parse_infotext(text)
        if not info.prompt:
            skipped.append(image)
            continue
        _, tags = extract_lora_tags(info.prompt)
        case_id = _unique_id(image.stem, used)
        models = tuple(dict.fromkeys(v for v in (info.parameters.get("Model"), info.parameters.get("Model hash"))
                                     if v))
        case_kind: SuiteKind = kind or ("lora" if tags else "quality")
        cases.append(Case(
            suite=suite, case_id=case_id, prompt=info.prompt, negative_prompt=info.negative_prompt or None,
            references=(image.resolve(),), kind=case_kind, showcase_models=models,
            label=tags[0].name if tags else None,
            lora_files=lora_hashes(info.parameters.get("Lora hashes", "")),
        ))
    return cases, skipped


def _unique_id(stem: str, used: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-") or "image"
    candidate, counter = base, 2
    while candidate in used:
        candidate, counter = f"{base}-{counter}", counter + 1
    used.add(candidate)
    return candidate
