"""The Keras runtime (TensorFlow backend): device, threads, and the compiled forward pass."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.models import ModelSpec
from workers.model.devices import RuntimeUnavailable as RuntimeUnavailable  # where callers have found it
from workers.model.devices import choose_device

# Keras runs on TensorFlow here: the project installs no other Keras backend (jax, torch).
KERAS_BACKEND = "tensorflow"


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
    """`gpu:0` when TensorFlow sees a GPU (and it is not refused), else `cpu`. On a GPU, memory
    growth is set first: TensorFlow would otherwise take all of the GPU's memory at once."""
    if requested == "cpu":
        return "cpu"
    gpus = visible_gpus()
    device = choose_device(requested, len(gpus))
    if device != "cpu":
        grow_gpu_memory(gpus)
    return device


def grow_gpu_memory(gpus: list[Any]) -> None:
    """Allocate GPU memory as needed rather than all at once; must run before a GPU is used."""
    import tensorflow as tf

    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)


def limit_tensorflow_threads(threads: int) -> None:
    """Cap TensorFlow's intra-op pool (0 leaves its default, one thread per core). Must run
    before TensorFlow executes its first operation."""
    if threads > 0:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)


def use_mixed_precision(enabled: bool, device: str) -> None:
    """The `mixed_float16` policy, set before the model is built; refused on CPU, where float16
    is emulated and slower than float32."""
    if not enabled:
        return
    if device == "cpu":
        raise RuntimeUnavailable("ASYNCINFER_MIXED_PRECISION=true needs a GPU, and this worker runs on the CPU; "
                                 "unset it")
    import keras

    keras.mixed_precision.set_global_policy("mixed_float16")


def use_xla(model: Any, enabled: bool) -> None:
    """Compile the forward pass with XLA (`predict_on_batch` then runs the jit-compiled function)."""
    if enabled:
        model.compile(jit_compile=True)


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
        return np.asarray(self.model.predict_on_batch(batch), dtype="float32")
