"""MobileNetV2, loaded once per worker process: weights, runtime, device, compiled forward pass.

Two runtimes behind one `Classifier` interface: `keras` (TensorFlow, JAX or torch backend) and
`onnxruntime` (the same Keras weights exported to ONNX, workers/onnx_runtime.py).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from shared.config import Settings
from shared.constants import MODEL_INPUT_SIZE, MODEL_NAME

log = logging.getLogger(__name__)

# The file Keras' MobileNetV2(weights="imagenet") downloads into its cache (alpha 1.0, 224 px).
IMAGENET_WEIGHTS_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"
CPU_BATCH_SIZE = 16  # beyond this, CPU throughput is flat while latency keeps growing
GPU_BATCH_SIZE = 64  # a GPU needs larger batches to be busy; MobileNetV2 fits easily


class WeightsUnavailable(RuntimeError):
    """The configured weights cannot be loaded; the message says how to provide them."""


def select_backend(settings: Settings) -> str:
    """KERAS_BACKEND wins when set; otherwise ASYNCINFER_KERAS_BACKEND. Must run before
    keras is imported, since Keras reads the variable once at import."""
    backend = os.environ.setdefault("KERAS_BACKEND", settings.keras_backend)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return backend


def detect_device(backend: str, requested: str = "auto") -> str:
    """`gpu:0` when the backend sees a GPU (and it is not refused), else `cpu`."""
    if requested == "cpu":
        return "cpu"
    gpus = _visible_gpus(backend)
    if requested == "gpu" and not gpus:
        raise RuntimeError("ASYNCINFER_DEVICE=gpu, but the Keras backend sees no GPU")
    return "gpu:0" if gpus else "cpu"


def _visible_gpus(backend: str) -> list[Any]:
    if backend == "tensorflow":
        import tensorflow as tf

        return list(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return [d for d in jax.devices() if d.platform == "gpu"]
    if backend == "torch":
        import torch

        return list(range(torch.cuda.device_count()))
    raise ValueError(f"unknown Keras backend {backend!r}")


def batch_size_for(device: str, configured: int) -> int:
    """The configured maximum batch size, or a default fitted to the device."""
    if configured > 0:
        return configured
    return GPU_BATCH_SIZE if device.startswith("gpu") else CPU_BATCH_SIZE


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


class Classifier(Protocol):
    """What the worker needs of a model, whatever runs it."""

    max_batch_size: int

    @property
    def info(self) -> dict[str, str]:
        """The job document's `model` field: name, weights, backend, device."""
        ...

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Softmax scores, shape (n, 1000), for a preprocessed batch (n, 224, 224, 3)."""
        ...


@dataclass
class KerasClassifier:
    """A loaded Keras model and the compiled forward pass the worker calls once per batch."""

    model: Any
    weights: str
    backend: str
    device: str
    max_batch_size: int

    @property
    def info(self) -> dict[str, str]:
        return {
            "name": MODEL_NAME,
            "weights": self.weights,
            "backend": self.backend,
            "device": self.device,
        }

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Softmax scores, shape (n, 1000). `predict_on_batch` runs the backend's compiled
        function (a tf.function under TensorFlow), never eager per-layer calls."""
        return np.asarray(self.model.predict_on_batch(batch))



def warm_up(classifier: Classifier) -> float:
    """Run once per batch size it will see (1 and full), so that the first jobs pay neither for
    tracing the compiled function nor for allocation; returns seconds spent."""
    started = time.perf_counter()
    for size in sorted({1, classifier.max_batch_size}):
        classifier.predict(np.zeros((size, *MODEL_INPUT_SIZE, 3), dtype="float32"))
    return time.perf_counter() - started


class RuntimeUnavailable(RuntimeError):
    """The configured runtime cannot run with the configured Keras backend."""


def limit_tensorflow_threads(backend: str, threads: int) -> None:
    """Cap TensorFlow's intra-op pool (0 leaves its default, one thread per core). Must run
    before TensorFlow executes its first operation."""
    if backend == "tensorflow" and threads > 0:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)


def load_classifier(settings: Settings) -> Classifier:
    """The model for `settings.runtime`, warmed up. The ONNX runtime starts from the same Keras
    weights, so both runtimes give the same scores (within 1e-4)."""
    backend = select_backend(settings)
    if settings.runtime == "onnxruntime" and backend != "tensorflow":
        raise RuntimeUnavailable(
            f"ASYNCINFER_RUNTIME=onnxruntime exports the Keras model through TensorFlow; the Keras "
            f"backend is {backend}: set ASYNCINFER_KERAS_BACKEND=tensorflow (and unset KERAS_BACKEND)"
        )
    limit_tensorflow_threads(backend, settings.intra_op_threads)
    model, weights = build_model(settings.weights, settings.random_seed)
    classifier: Classifier
    if settings.runtime == "onnxruntime":
        from workers.onnx_runtime import load_onnx_classifier

        classifier = load_onnx_classifier(settings, model, weights)
    else:
        device = detect_device(backend, settings.device)
        classifier = KerasClassifier(
            model=model,
            weights=weights,
            backend=backend,
            device=device,
            max_batch_size=batch_size_for(device, settings.max_batch_size),
        )
    info = classifier.info
    log.info(
        "model ready: %s runtime on %s, batches up to %d, %.1fs warm-up",
        info["backend"], info["device"], classifier.max_batch_size, warm_up(classifier),
    )
    return classifier
