"""Cheap, strict checks of an uploaded image before the gateway accepts it.

Images are opened the one way the preprocessing opens them (shared/preprocessing.py), so what
the gateway accepts is what a worker can decode.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import asdict, dataclass

from PIL import Image, UnidentifiedImageError

from shared.constants import SUPPORTED_IMAGE_TYPES
from shared.errors import BadRequest, ImageTooLarge, UndecodableImage, UnsupportedImageType
from shared.preprocessing import open_image, use_draft_mode

_FORMAT_TO_TYPE = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
    "GIF": "image/gif",
}
_TYPE_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-png": "image/png",
                 "image/x-ms-bmp": "image/bmp", "image/x-bmp": "image/bmp"}


@dataclass(frozen=True)
class ImageInfo:
    content_type: str
    bytes: int
    sha256: str
    width: int
    height: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def sniff_type(data: bytes) -> str | None:
    """The image type told by the magic bytes, never by a file name or header."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data.startswith(b"BM") and len(data) > 26:
        return "image/bmp"
    return None


def normalise_declared_type(content_type: str | None) -> str | None:
    """`image/png; charset=…` → `image/png`; generic or missing types → None."""
    if not content_type:
        return None
    base = content_type.split(";", 1)[0].strip().lower()
    base = _TYPE_ALIASES.get(base, base)
    if base in ("", "application/octet-stream", "image/*"):
        return None
    return base


def open_upload(
    data: bytes,
    declared_type: str | None,
    *,
    max_bytes: int,
    max_pixels: int,
    min_side_px: int,
    draft_size: tuple[int, int],
) -> tuple[ImageInfo, Image.Image]:
    """Validate an upload and raise the error the API reports; or return what it is and the
    image it decoded (in JPEG draft mode, never below `draft_size`), so that the caller goes on from there without
    decoding the upload a second time."""
    if not data:
        raise BadRequest("the request carries no image: the body is empty")
    if len(data) > max_bytes:
        raise ImageTooLarge(
            f"the image is {len(data):,} bytes; the limit is {max_bytes:,} bytes"
        )
    declared = normalise_declared_type(declared_type)
    if declared is not None and declared not in SUPPORTED_IMAGE_TYPES:
        raise UnsupportedImageType(
            f"{declared} is not an image type we decode; send JPEG, PNG, WebP, BMP or GIF"
        )
    sniffed = sniff_type(data)
    if sniffed is None:
        raise UnsupportedImageType(
            "the bytes are not a JPEG, PNG, WebP, BMP or GIF image (checked by content, "
            "not by file name)"
        )
    if declared is not None and declared != sniffed:
        raise UndecodableImage(f"declared as {declared}, but the bytes are {sniffed}")
    try:
        image = open_image(data)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise UndecodableImage(f"the {sniffed} header does not decode: {e}") from e
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"the image is {width}×{height} = {width * height:,} pixels; the limit is "
            f"{max_pixels:,} (a decompression bomb guard)"
        )
    if min(width, height) < min_side_px:
        raise UndecodableImage(
            f"the image is {width}×{height} pixels; the smallest accepted side is "
            f"{min_side_px} pixels"
        )
    use_draft_mode(image, draft_size)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()  # truncated or corrupt data fails here
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as e:
        raise UndecodableImage(f"the {sniffed} data is corrupt or truncated: {e}") from e
    info = ImageInfo(
        content_type=sniffed,
        bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        width=width,
        height=height,
    )
    return info, image
