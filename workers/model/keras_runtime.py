"""The Keras runtime (TensorFlow backend): device, threads, and the compiled forward pass."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.errors import StartupError
from shared.models import ModelSpec

# Keras runs on TensorFlow here: the project installs no other Keras backend (jax, torch).
KERAS_BACKEND = "tensorflow"


class RuntimeUnavailable(StartupError):
    """The configured runtime or device cannot run on this installation."""


def select_backend() -> str:
    """Make Keras use TensorFlow; a KERAS_BACKEND naming another backend is refused. Must run
    before keras is imported, since Keras reads the variable once at import."""
    backend = os.environ.setdefault("KERAS_BACKEND", KERAS_BACKEND)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if backend != KERAS_BACKEND:
        raise RuntimeUnavailable(
            f"KERAS_BACKEND={backend}: asyncinfer runs Keras on {KERAS_BACKEND} only (no other backend is "
            "installed); unset KERAS_BACKEND"
        )
    return backend


def visible_gpus() -> list[Any]:
    import tensorflow as tf

    return list(tf.config.list_physical_devices("GPU"))


def detect_device(requested: str = "auto") -> str:
    """`gpu:0` when TensorFlow sees a GPU (and it is not refused), else `cpu`."""
    if requested == "cpu":
        return "cpu"
    gpus = visible_gpus()
    if requested == "gpu" and not gpus:
        raise RuntimeUnavailable("ASYNCINFER_DEVICE=gpu, but TensorFlow sees no GPU")
    return "gpu:0" if gpus else "cpu"


def limit_tensorflow_threads(threads: int) -> None:
    """Cap TensorFlow's intra-op pool (0 leaves its default, one thread per core). Must run
    before TensorFlow executes its first operation."""
    if threads > 0:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)


@dataclass
class KerasClassifier:
    """A loaded Keras model and the compiled forward pass the worker calls once per batch."""

    spec: ModelSpec
    model: Any
    weights: str
    weights_sha256: str
    backend: str
    device: str
    max_batch_size: int

    @property
    def info(self) -> dict[str, str]:
        return {
            "name": self.spec.name,
            "version": self.spec.version,
            "weights": self.weights,
            "weights_sha256": self.weights_sha256,
            "backend": self.backend,
            "device": self.device,
        }

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Scores, shape (n, classes). `predict_on_batch` runs the backend's compiled
        function (a tf.function under TensorFlow), never eager per-layer calls."""
        return np.asarray(self.model.predict_on_batch(batch))
