"""Upload checks: type by content, sizes, decodability."""

from __future__ import annotations

import pytest

from api.admission.checks import normalise_declared_type, open_upload, sniff_type
from shared.errors import BadRequest, ImageTooLarge, UndecodableImage, UnsupportedImageType
from tests.support import images

LIMITS = {"max_bytes": 1_000_000, "max_pixels": 4_000_000, "min_side_px": 8, "draft_size": (224, 224)}


@pytest.mark.parametrize(("data", "expected"), [
    (images.jpeg(), "image/jpeg"), (images.png_with_alpha(), "image/png"), (images.webp(), "image/webp"),
    (images.gif(), "image/gif"), (images.bmp(), "image/bmp"), (b"<html>", None), (b"", None),
])
def test_type_is_sniffed_from_the_bytes(data: bytes, expected: str | None) -> None:
    assert sniff_type(data) == expected


def test_declared_types_are_normalised() -> None:
    assert normalise_declared_type("image/JPG; q=1") == "image/jpeg"
    assert normalise_declared_type("application/octet-stream") is None
    assert normalise_declared_type(None) is None


def test_a_good_image_is_described() -> None:
    info, _ = open_upload(images.jpeg(320, 240), "image/jpeg", **LIMITS)
    assert (info.content_type, info.width, info.height) == ("image/jpeg", 320, 240)
    assert len(info.sha256) == 64


def test_the_stored_size_is_reported_even_with_draft_decoding() -> None:
    info, _ = open_upload(images.jpeg(1600, 1200), None, **{**LIMITS, "max_bytes": 10_000_000})
    assert (info.width, info.height) == (1600, 1200)


@pytest.mark.parametrize(("data", "declared", "error"), [
    (b"", "image/jpeg", BadRequest),
    (b"\xff\xd8\xff" + b"0" * 1_000_000, None, ImageTooLarge),
    (b"GIF89a-not-really", "image/tiff", UnsupportedImageType),
    (b"just text", None, UnsupportedImageType),
    (images.jpeg(), "image/png", UndecodableImage),
    (images.jpeg(640, 480)[:2000], None, UndecodableImage),
    (images.encode(images.picture(4, 4), "PNG"), None, UndecodableImage),
    (images.encode(images.picture(2100, 2000), "BMP")[:100_000], None, ImageTooLarge),
])
def test_bad_uploads_raise_the_error_the_api_reports(data: bytes, declared: str | None, error: type) -> None:
    with pytest.raises(error):
        open_upload(data, declared, **LIMITS)
