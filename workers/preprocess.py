"""The fixed preprocessing of the contract, so results are reproducible."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

from shared.constants import MODEL_INPUT_SIZE
from shared.images import open_image, use_draft_mode

WHITE = (255, 255, 255)


def decode(data: bytes) -> Image.Image:
    """Bytes → 224×224 RGB: JPEG draft decode, EXIF orientation, first frame, alpha over
    white, bilinear resize ignoring aspect ratio."""
    image = open_image(data)  # an animation opens on its first frame
    use_draft_mode(image)
    image = ImageOps.exif_transpose(image)
    image = _to_rgb(image)
    return image.resize(MODEL_INPUT_SIZE, Image.Resampling.BILINEAR)


def _to_rgb(image: Image.Image) -> Image.Image:
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    if not has_alpha:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (*WHITE, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def to_model_input(images: list[Image.Image]) -> np.ndarray:
    """Stack and scale to [-1, 1] with MobileNetV2's own preprocess_input."""
    from keras.applications.mobilenet_v2 import preprocess_input

    batch = np.stack([np.asarray(image, dtype="float32") for image in images])
    return np.asarray(preprocess_input(batch))


def top_k(scores: np.ndarray, k: int, labels: tuple[str, ...]) -> list[dict[str, object]]:
    """The k best classes, best first."""
    best = np.argsort(-scores, kind="stable")[:k]
    return [
        {"label": labels[i], "class_id": int(i), "score": float(scores[i])} for i in best
    ]
