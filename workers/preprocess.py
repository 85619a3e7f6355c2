"""The worker's side of the contract's fixed preprocessing: scaling a batch for the model, and
reading its scores. Decoding lives in shared/model_input.py, since the gateway runs it too."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from shared.model_input import decode, model_pixels

__all__ = ["decode", "model_pixels", "to_model_input", "top_k"]


def to_model_input(images: Sequence[Image.Image | np.ndarray]) -> np.ndarray:
    """Stack 224×224 RGB images (or uint8 arrays) and scale to [-1, 1] with MobileNetV2's own
    preprocess_input."""
    from keras.applications.mobilenet_v2 import preprocess_input

    batch = np.stack([np.asarray(image, dtype="float32") for image in images])
    return np.asarray(preprocess_input(batch))


def top_k(scores: np.ndarray, k: int, labels: tuple[str, ...]) -> list[dict[str, object]]:
    """The k best classes, best first."""
    best = np.argsort(-scores, kind="stable")[:k]
    return [
        {"label": labels[i], "class_id": int(i), "score": float(scores[i])} for i in best
    ]
