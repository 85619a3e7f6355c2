"""The contract's fixed preprocessing up to the model's 224×224 RGB pixels, and the compact
form in which those pixels travel from the gateway to a worker through the store.

The gateway opens and decodes every upload anyway to validate it, so it finishes the job there
and stores the pixels (150 KB) instead of the upload (up to 10 MiB): the worker, the scarce
machine, then spends its cores on inference only (bench/ has the figures).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

from shared.constants import MODEL_INPUT_SIZE

# The gateway checks pixel counts itself before decoding (api/admission/checks.py), with a
# clearer error than Pillow's own bomb guard.
Image.MAX_IMAGE_PIXELS = None

WHITE = (255, 255, 255)


def open_image(data: bytes) -> Image.Image:
    """Open without decoding pixels; `image.size` is still the stored size."""
    return Image.open(io.BytesIO(data))


def use_draft_mode(image: Image.Image) -> None:
    """Make a JPEG decode scaled down by 1/2, 1/4 or 1/8 in the DCT domain (never below the
    model's input size): 3-5x faster on photos, mean pixel difference under 2/255."""
    if image.format == "JPEG":
        image.draft("RGB", MODEL_INPUT_SIZE)


# Stored bytes that start with this header are model pixels, not an upload. No image format we
# accept starts like this (they are told apart by their magic bytes, api/admission/checks.py).
PIXELS_HEADER = b"asyncinfer:rgb8:224x224\n"
PIXELS_BYTES = MODEL_INPUT_SIZE[0] * MODEL_INPUT_SIZE[1] * 3


def to_model_image(image: Image.Image) -> Image.Image:
    """An opened image → 224×224 RGB: EXIF orientation, alpha over white, bilinear resize
    ignoring aspect ratio. Decodes the pixels unless they are loaded already."""
    # In place: without an orientation to apply, the default would copy the full-size image.
    ImageOps.exif_transpose(image, in_place=True)
    return _to_rgb(image).resize(MODEL_INPUT_SIZE, Image.Resampling.BILINEAR)


def decode(data: bytes) -> Image.Image:
    """Bytes → 224×224 RGB: JPEG draft decode, then `to_model_image` (an animation opens on
    its first frame)."""
    image = open_image(data)
    use_draft_mode(image)
    return to_model_image(image)


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
    """A 224×224 RGB image as stored bytes: the header, then the raw pixels row by row."""
    if image.mode != "RGB" or image.size != MODEL_INPUT_SIZE:
        raise ValueError(f"model pixels are {MODEL_INPUT_SIZE} RGB, not {image.size} {image.mode}")
    return PIXELS_HEADER + image.tobytes()


def is_packed_pixels(data: bytes) -> bool:
    return data.startswith(PIXELS_HEADER) and len(data) == len(PIXELS_HEADER) + PIXELS_BYTES


def model_pixels(data: bytes) -> np.ndarray:
    """Stored bytes → (224, 224, 3) uint8: packed pixels as they are, an upload decoded here."""
    if is_packed_pixels(data):
        flat = np.frombuffer(data, dtype=np.uint8, offset=len(PIXELS_HEADER))
        return flat.reshape(MODEL_INPUT_SIZE[1], MODEL_INPUT_SIZE[0], 3)
    return np.asarray(decode(data))
