"""BentoML: one service with the same classifier behind two endpoints.

- `classify`, a batchable API (synchronous): POST /classify, a multipart upload; BentoML's adaptive
  batcher gathers requests into one call, which decodes its images and runs one onnxruntime batch.
- `classify_task`, the same function as `@bentoml.task` (asynchronous): POST /classify_task/submit
  answers a task id; the client polls GET /classify_task/status?task_id=… and fetches
  GET /classify_task/get?task_id=…. Locally (BentoML 1.4.40, _bentoml_impl/server/app.py and
  tasks/result.py) each task's request, upload included, and then its result are written to a SQLite
  file ($BENTOML_HOME/task_result.db), but the task runs as an in-process background task of the
  submit response, with no queue: nothing re-runs a task its process died running, short of a client
  calling /classify_task/retry (which resubmits the stored request).

Uploads arrive as multipart files (BentoML's form for file inputs; it writes each to a temporary
file), decoded by asyncinfer's shared/preprocessing.py inside the batch.

Run by bench/peers/driver.py with the BentoML venv: `bentoml serve bench.peers.bentoml_service:Classifier`,
with PYTHONPATH the project.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bentoml

from bench.peers.inference import Model, max_batch_size

# BentoML's max_latency_ms is a deadline for a request's whole wait (503 past it), not a batch
# window: a minute, so that a saturated run queues instead of refusing.
DEADLINE_MS = 60_000


@bentoml.service(workers=1, traffic={"timeout": 300})
class Classifier:
    def __init__(self) -> None:
        self.model = Model()

    def _classify(self, images: list[Path]) -> list[dict[str, Any]]:
        return self.model.predict([self.model.pixels(path.read_bytes()) for path in images])

    @bentoml.api(batchable=True, max_batch_size=max_batch_size(), max_latency_ms=DEADLINE_MS)  # type: ignore[untyped-decorator]
    def classify(self, images: list[Path]) -> list[dict[str, Any]]:
        return self._classify(images)

    @bentoml.task(batchable=True, max_batch_size=max_batch_size(), max_latency_ms=DEADLINE_MS)  # type: ignore[untyped-decorator]
    def classify_task(self, images: list[Path]) -> list[dict[str, Any]]:
        return self._classify(images)
