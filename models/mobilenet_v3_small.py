"""MobileNetV3-Small (Keras Applications, alpha 1.0): 224×224, bicubic, pixels as they are (0-255),
since the network rescales inside. Its input differs from MobileNetV2's on purpose: it shows that
the gateway and the workers follow each model's declared input."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from models.keras_applications import build_application, imagenet_labels, missing_weights
from shared.models import InputSpec, ModelSpec

IMAGENET_FILE = "weights_mobilenet_v3_small_224_1.0_float.h5"


def build(weights: str, seed: int) -> tuple[Any, str]:
    import keras

    return build_application(
        lambda path: keras.applications.MobileNetV3Small(weights=path, include_preprocessing=True),
        IMAGENET_FILE, weights, seed,
    )


spec = ModelSpec(
    name="mobilenet_v3_small",
    version="1",
    input=InputSpec(224, 224, resize="bicubic", normalisation="raw"),
    build=build,
    labels=imagenet_labels,
    weights_missing=partial(missing_weights, IMAGENET_FILE),
    description="MobileNetV3-Small 1.0 on ImageNet's 1,000 classes",
    batch_sizes={"cpu": 32, "gpu": 128},
    panel=str(Path(__file__).parent / "panels" / "mobilenet_v3_small" / "panel.js"),
)
