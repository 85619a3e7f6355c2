"""MobileNetV2 (Keras Applications, alpha 1.0): 224×224, bilinear, pixels scaled to [-1, 1]."""

from __future__ import annotations

from functools import partial
from typing import Any

from models.keras_applications import build_application, imagenet_labels, missing_weights
from shared.models import InputSpec, ModelSpec

# The file Keras' MobileNetV2(weights="imagenet") downloads into its cache (alpha 1.0, 224 px).
IMAGENET_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"


def build(weights: str, seed: int) -> tuple[Any, str]:
    import keras

    return build_application(lambda path: keras.applications.MobileNetV2(weights=path), IMAGENET_FILE, weights, seed)


spec = ModelSpec(
    name="mobilenet_v2",
    version="1",
    input=InputSpec(224, 224, resize="bilinear", normalisation="minus_one_to_one"),
    build=build,
    labels=imagenet_labels,
    weights_missing=partial(missing_weights, IMAGENET_FILE),
    description="MobileNetV2 1.0 on ImageNet's 1,000 classes",
)
