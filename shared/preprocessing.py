"""Preprocessing up to a model's RGB pixels, as its declared input says (shared/models/spec.py:
size and resize method), and the compact form in which those pixels travel from the gateway to a
worker through the store. Normalising the pixels to the network's floats is the worker's
(`InputSpec.normalise`).

The gateway opens and decodes every upload anyway to validate it, so it finishes the job there
and stores the pixels (150 KB at 224×224) instead of the upload (up to 10 MiB): the worker, the scarce
machine, then spends its cores on inference only (bench/ has the figures).
"""

from __future__ import annotations

import io
import re

import numpy as np
from PIL import Image, ImageOps

from shared.models.spec import InputSpec

# The gateway checks pixel counts itself before decoding (api/admission/checks.py), with a
# clearer error than Pillow's own bomb guard.
Image.MAX_IMAGE_PIXELS = None

WHITE = (255, 255, 255)


def open_image(data: bytes) -> Image.Image:
    """Open without decoding pixels; `image.size` is still the stored size."""
    return Image.open(io.BytesIO(data))


def use_draft_mode(image: Image.Image, size: tuple[int, int]) -> None:
    """Make a JPEG decode scaled down by 1/2, 1/4 or 1/8 in the DCT domain (never below the
    model's input `size`): 3-5x faster on photos, mean pixel difference under 2/255."""
    if image.format == "JPEG":
        image.draft("RGB", size)


# Stored bytes that start with `asyncinfer:rgb8:<width>x<height>\n` are model pixels, not an
# upload. No image format we accept starts like this (they are told apart by their magic bytes,
# api/admission/checks.py).
PIXELS_MAGIC = b"asyncinfer:rgb8:"
_HEADER = re.compile(rb"asyncinfer:rgb8:([0-9]{1,5})x([0-9]{1,5})\n")
_RESAMPLING = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
               "nearest": Image.Resampling.NEAREST}


def to_model_image(image: Image.Image, spec: InputSpec) -> Image.Image:
    """An opened image → the model's RGB pixels: EXIF orientation, alpha over white, resize to
    its size ignoring aspect ratio, with its resize method. Decodes the pixels unless they are
    loaded already."""
    # In place: without an orientation to apply, the default would copy the full-size image.
    ImageOps.exif_transpose(image, in_place=True)
    return _to_rgb(image).resize(spec.size, _RESAMPLING[spec.resize])


def decode(data: bytes, spec: InputSpec) -> Image.Image:
    """Bytes → the model's RGB pixels: JPEG draft decode, then `to_model_image` (an animation
    opens on its first frame)."""
    image = open_image(data)
    use_draft_mode(image, spec.size)
    return to_model_image(image, spec)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image  # convert() would return a full-size copy
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    if not has_alpha:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (*WHITE, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def pack_pixels(image: Image.Image) -> bytes:
    """An RGB image as stored bytes: the header with its size, then the raw pixels row by row."""
    if image.mode != "RGB":
        raise ValueError(f"model pixels are RGB, not {image.mode}")
    width, height = image.size
    return PIXELS_MAGIC + f"{width}x{height}\n".encode() + image.tobytes()


def packed_size(data: bytes) -> tuple[int, int] | None:
    """The (width, height) of packed pixels; None for anything else (an upload)."""
    header = _HEADER.match(data[:32]) if data.startswith(PIXELS_MAGIC) else None
    if header is None:
        return None
    width, height = int(header.group(1)), int(header.group(2))
    return (width, height) if len(data) == header.end() + width * height * 3 else None


def model_pixels(data: bytes, spec: InputSpec) -> np.ndarray:
    """Stored bytes → (height, width, 3) uint8 at the model's size: packed pixels as they are,
    an upload decoded here."""
    size = packed_size(data)
    if size is None:
        return np.asarray(decode(data, spec))
    if size != spec.size:
        raise ValueError(f"the stored pixels are {size[0]}×{size[1]}; this model takes {spec.width}×{spec.height}")
    flat = np.frombuffer(data, dtype=np.uint8, offset=data.index(b"\n") + 1)
    return flat.reshape(spec.height, spec.width, 3)
