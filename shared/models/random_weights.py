"""Explicit random weights for tests and benchmarks: the same compute as real ones, and signal."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def randomise_weights(model: Any, seed: int) -> None:
    """Explicit random weights with the same compute as the real ones.

    Keras' own initialisers leave MobileNet's softmax flat (every score 0.001), which would make
    any comparison of results meaningless. He-normal kernels with identity batch-norm keep
    activations alive, so different images get different predictions. Drawn with NumPy from
    `seed`, so every process and every backend gets the same model.
    """
    log.warning("USING RANDOM WEIGHTS (seed %d): predictions are meaningless; for tests and benchmarks only", seed)
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
