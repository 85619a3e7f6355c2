"""What the worker needs of a model, whatever runs it: the `Classifier` interface, its input
scaling and its warm-up."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from PIL import Image

from shared.models import ModelSpec


class Classifier(Protocol):
    """A loaded model: Keras (workers/model/keras_runtime.py) or ONNX Runtime (onnx_runtime.py)."""

    spec: ModelSpec
    max_batch_size: int

    @property
    def info(self) -> dict[str, str]:
        """The job document's `model` field: name, version, weights, weights_sha256, backend, device."""
        ...

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Scores, shape (n, classes), for a batch the model's input spec normalised."""
        ...


def to_model_input(spec: ModelSpec, images: Sequence[Image.Image | np.ndarray]) -> np.ndarray:
    """Stack RGB images (or uint8 arrays) at the model's size and normalise them as it declares,
    straight into one float32 array."""
    batch = np.empty((len(images), spec.input.height, spec.input.width, 3), dtype="float32")
    for index, image in enumerate(images):
        pixels = np.asarray(image, dtype="uint8")
        if pixels.shape != batch.shape[1:]:  # assignment would broadcast a grey (h, w, 1) image silently
            raise ValueError(f"image {index} is {pixels.shape}; model {spec.ref} takes {batch.shape[1:]}")
        batch[index] = pixels
    return spec.input.normalise_in_place(batch)


def warm_up(classifier: Classifier) -> float:
    """Run once per batch size it will see (1 and full), so that the first jobs pay neither for
    tracing the compiled function nor for allocation; returns seconds spent."""
    started = time.perf_counter()
    size_in = classifier.spec.input
    for size in sorted({1, classifier.max_batch_size}):
        classifier.predict(np.zeros((size, size_in.height, size_in.width, 3), dtype="float32"))
    return time.perf_counter() - started
