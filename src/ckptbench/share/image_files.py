"""Writing an image with its text in the place each format keeps it, so A1111, Civitai and
``ckptbench import infotext`` read it back: a PNG ``tEXt`` chunk (``parameters`` for infotext), or for
JPEG and WebP the EXIF UserComment (as A1111 writes it: "UNICODE" then UTF-16) and ImageDescription."""

from __future__ import annotations

import io
from typing import Literal

from PIL import Image
from PIL.PngImagePlugin import PngInfo

ImageFormat = Literal["png", "jpg", "webp"]
FORMATS: tuple[ImageFormat, ...] = ("png", "jpg", "webp")
SUFFIXES: dict[ImageFormat, str] = {"png": ".png", "jpg": ".jpg", "webp": ".webp"}
QUALITY = 92  # JPEG and WebP: visually lossless for generated images, a fifth of the PNG's size

_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286
_IMAGE_DESCRIPTION = 0x010E
_SOFTWARE = 0x0131


def encode_image(image: Image.Image, image_format: ImageFormat, texts: dict[str, str],
                 comment_key: str = "parameters", quality: int = QUALITY) -> bytes:
    """The file's bytes: ``texts`` as PNG text chunks; for JPEG/WebP ``texts[comment_key]`` goes into the
    EXIF UserComment, ``texts["Title"]`` into ImageDescription and ``texts["Software"]`` into Software."""
    buffer = io.BytesIO()
    if image_format == "png":
        info = PngInfo()
        for key, value in texts.items():
            info.add_text(key, value)  # Pillow writes an iTXt chunk for text beyond Latin-1
        image.save(buffer, format="PNG", pnginfo=info)
        return buffer.getvalue()
    exif = Image.Exif()
    if comment_key in texts:
        exif.get_ifd(_EXIF_IFD)[_USER_COMMENT] = b"UNICODE\0" + texts[comment_key].encode("utf-16-be")
    if "Title" in texts:
        exif[_IMAGE_DESCRIPTION] = texts["Title"]
    if "Software" in texts:
        exif[_SOFTWARE] = texts["Software"]
    rgb = image.convert("RGB")
    if image_format == "jpg":
        rgb.save(buffer, format="JPEG", quality=quality, exif=exif)
    else:
        rgb.save(buffer, format="WEBP", quality=quality, method=4, exif=exif)
    return buffer.getvalue()
