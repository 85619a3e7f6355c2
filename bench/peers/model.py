"""The model every system of `python -m bench.peers` serves: the bench's MobileNetV2 with random
weights (ASYNCINFER_WEIGHTS=random, the default seed), exported to ONNX by the worker's own code
(workers/model/onnx_runtime.py), into the same cache file an asyncinfer onnxruntime worker loads.

    python -m bench.peers.model    prints {"onnx": PATH, "input": {...}, "max_batch_size": N,
                                   "batch_wait_ms": N} on stdout

A process of its own, so that the driver never loads TensorFlow.
"""

from __future__ import annotations

import json
import os


def describe() -> dict[str, object]:
    from shared.config import Settings
    from workers.model.onnx_runtime import cached_onnx

    settings = Settings(weights="random", runtime="onnxruntime", device="cpu")
    spec = settings.catalogue().resolve(None)
    model, _ = spec.build(settings.weights, settings.random_seed)
    path, _ = cached_onnx(model, settings.cache_dir, spec.input.size)
    spec_input = spec.input
    return {
        "onnx": str(path),
        "model": spec.ref,
        "input": {"width": spec_input.width, "height": spec_input.height, "resize": spec_input.resize,
                  "normalisation": spec_input.normalisation},
        "max_batch_size": spec.batch_size_for("cpu", settings.max_batch_size),
        "batch_wait_ms": settings.max_batch_wait_ms,
    }


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(json.dumps(describe()))
