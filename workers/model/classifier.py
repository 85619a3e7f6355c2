"""What the worker needs of a model, whatever runs it: the `Classifier` interface, its batch size,
its input scaling and its warm-up."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from PIL import Image

from shared.constants import MODEL_INPUT_SIZE

CPU_BATCH_SIZE = 16  # beyond this, CPU throughput is flat while latency keeps growing
GPU_BATCH_SIZE = 64  # a GPU needs larger batches to be busy; MobileNetV2 fits easily


class Classifier(Protocol):
    """A loaded model: Keras (workers/model/keras_runtime.py) or ONNX Runtime (onnx_runtime.py)."""

    max_batch_size: int

    @property
    def info(self) -> dict[str, str]:
        """The job document's `model` field: name, weights, backend, device."""
        ...

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Softmax scores, shape (n, 1000), for a preprocessed batch (n, 224, 224, 3)."""
        ...


def batch_size_for(device: str, configured: int) -> int:
    """The configured maximum batch size, or a default fitted to the device."""
    if configured > 0:
        return configured
    return GPU_BATCH_SIZE if device.startswith("gpu") else CPU_BATCH_SIZE


def to_model_input(images: Sequence[Image.Image | np.ndarray]) -> np.ndarray:
    """Stack 224×224 RGB images (or uint8 arrays) and scale to [-1, 1] with MobileNetV2's own
    preprocess_input."""
    from keras.applications.mobilenet_v2 import preprocess_input

    batch = np.stack([np.asarray(image, dtype="float32") for image in images])
    return np.asarray(preprocess_input(batch))


def warm_up(classifier: Classifier) -> float:
    """Run once per batch size it will see (1 and full), so that the first jobs pay neither for
    tracing the compiled function nor for allocation; returns seconds spent."""
    started = time.perf_counter()
    for size in sorted({1, classifier.max_batch_size}):
        classifier.predict(np.zeros((size, *MODEL_INPUT_SIZE, 3), dtype="float32"))
    return time.perf_counter() - started
