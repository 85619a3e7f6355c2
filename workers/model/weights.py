"""Where the model's weights come from: ImageNet's file in Keras' cache, a file, or explicit random
weights (tests and benchmarks) with the same compute."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from shared.errors import StartupError

log = logging.getLogger(__name__)

# The file Keras' MobileNetV2(weights="imagenet") downloads into its cache (alpha 1.0, 224 px).
IMAGENET_WEIGHTS_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"


class WeightsUnavailable(StartupError):
    """The configured weights cannot be loaded; the message says how to provide them."""


def imagenet_weights_path() -> Path:
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    return keras_home / "models" / IMAGENET_WEIGHTS_FILE


def randomise_weights(model: Any, seed: int) -> None:
    """Explicit random weights with the same compute as the real ones.

    Keras' own initialisers leave MobileNetV2's softmax flat (every score 0.001), which
    would make any comparison of results meaningless. He-normal kernels with identity
    batch-norm keep activations alive, so different images get different predictions. Drawn
    with NumPy from `seed`, so every process and every backend gets the same model.
    """
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        name, shape = weight.path, tuple(weight.shape)
        if name.endswith(("gamma", "moving_variance")):
            value = np.ones(shape)
        elif name.endswith(("beta", "moving_mean", "bias")):
            value = np.zeros(shape)
        else:
            receptive = int(np.prod(shape[:2])) if len(shape) == 4 else 1
            fan_in = receptive * (1 if "depthwise" in name else shape[-2])
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        weight.assign(value.astype("float32"))


def build_model(weights: str, seed: int) -> tuple[Any, str]:
    """The Keras model and how its weights are described in job documents."""
    import keras

    if weights == "random":
        log.warning(
            "USING RANDOM WEIGHTS (seed %d): predictions are meaningless; for tests and "
            "benchmarks only", seed
        )
        model = keras.applications.MobileNetV2(weights=None)
        randomise_weights(model, seed)
        return model, "random"
    if weights == "imagenet":
        path = imagenet_weights_path()
        if not path.is_file():
            raise WeightsUnavailable(
                f"ImageNet weights not found at {path}: copy {IMAGENET_WEIGHTS_FILE} there "
                "(or set KERAS_HOME), or set ASYNCINFER_WEIGHTS=/path/to/weights.h5"
            )
        return keras.applications.MobileNetV2(weights=str(path)), "imagenet"
    if not Path(weights).is_file():
        raise WeightsUnavailable(f"ASYNCINFER_WEIGHTS={weights}: no such file")
    try:
        return keras.applications.MobileNetV2(weights=weights), weights
    except (ValueError, OSError) as e:
        raise WeightsUnavailable(f"ASYNCINFER_WEIGHTS={weights}: cannot load: {e}") from e
