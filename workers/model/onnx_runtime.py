"""The onnxruntime worker runtime: the Keras model exported to ONNX once, cached by its weights.

On this kind of machine ONNX Runtime runs MobileNetV2 about twice as fast as TensorFlow. The
export goes Keras → `tf.function` → tf2onnx; it takes seconds, so the file is kept under
`<cache_dir>/onnx/<sha256>.onnx`, where the hash covers every weight, the input size and the
export recipe, and any worker with the same model loads it directly the next time.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared.config import Settings
from shared.models import ModelSpec
from workers.model.devices import CUDA_PROVIDER, choose_providers
from workers.model.weights import weights_sha256

log = logging.getLogger(__name__)

# Part of the cache key: changing how we export (opset, input name) must not reuse old files.
ONNX_OPSET = 17
INPUT_NAME = "images"
EXPORT_RECIPE = f"tf2onnx-function/opset{ONNX_OPSET}/{INPUT_NAME}/v1"


def export_key(model: Any, input_size: tuple[int, int]) -> str:
    """The cache key of an export: the recipe, the input size and every weight."""
    return weights_sha256(model, salt=f"{EXPORT_RECIPE}/{input_size[0]}x{input_size[1]}")


def onnx_cache_path(cache_dir: str | Path, sha256: str) -> Path:
    return Path(cache_dir).expanduser() / "onnx" / f"{sha256}.onnx"


def export_onnx(model: Any, path: Path, input_size: tuple[int, int]) -> None:
    """Write the model as ONNX, through a compiled `tf.function` with a dynamic batch axis.

    Written to a temporary file and renamed: workers starting together may export at the
    same time, and none of them may ever load a half-written file.
    """
    import tensorflow as tf
    import tf2onnx

    width, height = input_size
    spec = (tf.TensorSpec((None, height, width, 3), tf.float32, name=INPUT_NAME),)

    @tf.function(input_signature=spec)  # type: ignore[untyped-decorator]
    def forward(images: Any) -> Any:
        return model(images, training=False)

    proto, _ = tf2onnx.convert.from_function(forward, input_signature=spec, opset=ONNX_OPSET)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".part", delete=False) as part:
        part.write(proto.SerializeToString())
    os.replace(part.name, path)


def cached_onnx(model: Any, cache_dir: str | Path, input_size: tuple[int, int]) -> tuple[Path, float | None]:
    """The ONNX file of `model` at `input_size` (width, height), exported when the cache lacks it.
    Returns the path and the seconds the export took (None on a cache hit)."""
    path = onnx_cache_path(cache_dir, export_key(model, input_size))
    if path.is_file():
        return path, None
    started = time.perf_counter()
    export_onnx(model, path, input_size)
    export_s = time.perf_counter() - started
    log.info("exported the model to ONNX in %.1fs: %s", export_s, path)
    return path, export_s


def intra_op_threads(configured: int) -> int:
    """The configured thread count, or one per core: a worker's inference owns the machine
    while it runs, and more threads than cores only adds switching."""
    return configured if configured > 0 else max(1, os.cpu_count() or 1)


def execution_providers(device: str) -> list[str]:
    """CUDA first when a GPU may be used and this onnxruntime build has it, CPU otherwise."""
    import onnxruntime as ort

    return choose_providers(device, ort.get_available_providers())


def open_session(path: Path, *, threads: int, providers: list[str]) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    # MobileNets are one chain of layers: nothing runs in parallel between operators.
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # ORT's threads spin while waiting for work by default. On a machine the worker shares with
    # the gateway (which decodes uploads), spinning burned CPU that decoding needed: the worker
    # took 19-21 CPU ms per image with it and 13-14 without, and throughput rose 10-15% (bench/).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=providers)


@dataclass
class OnnxClassifier:
    """Same interface as the Keras classifier: `predict(batch)` returns softmax scores."""

    spec: ModelSpec
    session: Any
    weights: str
    weights_sha256: str
    device: str
    max_batch_size: int

    @property
    def info(self) -> dict[str, str]:
        return {"name": self.spec.name, "version": self.spec.version, "weights": self.weights,
                "weights_sha256": self.weights_sha256, "backend": "onnxruntime", "device": self.device}

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Scores, shape (n, classes)."""
        return np.asarray(self.session.run(None, {INPUT_NAME: batch.astype("float32", copy=False)})[0])


def load_onnx_classifier(settings: Settings, spec: ModelSpec, keras_model: Any, weights: str,
                         sha256: str) -> OnnxClassifier:
    """Export (or find) the ONNX file of `keras_model` and open an inference session on it."""
    path, export_s = cached_onnx(keras_model, settings.cache_dir, spec.input.size)
    if export_s is None:
        log.info("ONNX model from cache: %s", path)
    providers = execution_providers(settings.device)
    device = "gpu:0" if providers[0] == CUDA_PROVIDER else "cpu"
    session = open_session(path, threads=intra_op_threads(settings.intra_op_threads), providers=providers)
    return OnnxClassifier(
        spec=spec,
        session=session,
        weights=weights,
        weights_sha256=sha256,
        device=device,
        max_batch_size=spec.batch_size_for(device, settings.max_batch_size),
    )
