"""What every peer service runs, inside the peer's own venv: the upload decoded by asyncinfer's own
shared/preprocessing.py (on PYTHONPATH: the driver puts the project there, so the pixels are the
very ones asyncinfer's gateway makes), normalised as shared/models/spec.py says, and the ONNX file
the asyncinfer worker loads, run by onnxruntime with the worker's session options.

Imports only numpy, Pillow, onnxruntime and those two stdlib-only project modules; configured by
the driver through PEER_* environment variables.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import onnxruntime as ort

from shared.models.spec import InputSpec
from shared.preprocessing import decode

TOP_K = 5


def max_batch_size() -> int:
    return int(os.environ.get("PEER_MAX_BATCH_SIZE", "16"))


def batch_wait_s() -> float:
    return float(os.environ.get("PEER_BATCH_WAIT_MS", "20")) / 1000


class Model:
    def __init__(self) -> None:
        self.spec = InputSpec(**json.loads(os.environ["PEER_INPUT"]))
        options = ort.SessionOptions()
        # As workers/model/onnx_runtime.py open_session: one thread per core, sequential, no spinning.
        options.intra_op_num_threads = int(os.environ.get("PEER_THREADS", "0")) or (os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(os.environ["PEER_ONNX"], options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.predict([np.zeros((self.spec.height, self.spec.width, 3), dtype="uint8")])  # warm up

    def pixels(self, data: bytes) -> np.ndarray:
        """Upload bytes → (height, width, 3) uint8, as asyncinfer's gateway decodes it."""
        return np.asarray(decode(data, self.spec))

    def predict(self, pixels: list[np.ndarray]) -> list[dict[str, Any]]:
        """One batch; per image, the best TOP_K classes as asyncinfer reports them."""
        batch = self.spec.normalise_in_place(np.stack(pixels).astype("float32"))
        scores = np.asarray(self.session.run(None, {self.input_name: batch})[0])
        answers = []
        for row in scores:
            best = np.argsort(-row, kind="stable")[:TOP_K]
            answers.append({"predictions": [{"class_id": int(i), "score": float(row[i])} for i in best],
                            "batch_size": len(pixels)})
        return answers
