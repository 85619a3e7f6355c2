"""The worker's own CPU per image outside the forward pass (`python -m bench --only worker_io`).

`process_batch` runs on the real lifecycle, SQLite store and Redis events, with a model that answers at
once, so every CPU millisecond measured is the batch's store and event work, unpacking the pixels and the
bookkeeping. Batches of 16 take turns with batches of 1 (each job its own round trips, as every job
was before the store's multi-key operations), so their ratio comes from one run. Celery's own handling
of the messages (celery-batches, acknowledgements) is not in it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import redis
from PIL import Image

from bench.stats import spread
from shared.events import EventPublisher
from shared.jobs import new_job
from shared.lifecycle import JobLifecycle
from shared.models.catalogue import Catalogue
from shared.preprocessing import pack_pixels
from shared.store.sqlite import SqliteStore
from workers.inference import process_batch


class _InstantModel:
    """The default model's spec and labels, and a forward pass that costs nothing."""

    def __init__(self) -> None:
        self.spec = Catalogue.discover(default_model="mobilenet_v2").resolve("mobilenet_v2")
        self.info = {"name": self.spec.name, "version": self.spec.version, "weights": "none",
                     "weights_sha256": "0" * 64, "backend": "none", "device": "cpu"}

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        return np.full((len(inputs), len(self.spec.labels())), 1 / len(self.spec.labels()), dtype="float32")


def _cpu_ms_per_image(lifecycle: JobLifecycle, model: _InstantModel, pixels: bytes, batch_size: int,
                      images: int) -> float:
    info = {"content_type": "image/png", "bytes": len(pixels), "sha256": "0" * 64, "width": 224, "height": 224}
    model_ref = {"name": model.spec.name, "version": model.spec.version}
    jobs = [lifecycle.store.create_job(new_job(model=model_ref, tenant="bench", input_info=info, top_k=5),
                                       pixels)[0]["id"] for _ in range(images)]
    started = time.process_time()
    for start in range(0, images, batch_size):
        report = process_batch(jobs[start:start + batch_size], lifecycle, model)  # type: ignore[arg-type]
        assert report.inferred == len(jobs[start:start + batch_size]), report
    return (time.process_time() - started) * 1000 / images


def measure_worker_io(redis_url: str, workdir: Path, *, rounds: int = 5, images: int = 320) -> dict[str, Any]:
    """CPU ms per image at batch 16 and at batch 1, in alternating rounds; medians and ranges, and the
    ratio of each round's pair."""
    workdir.mkdir(parents=True, exist_ok=True)
    client = redis.Redis.from_url(redis_url)
    lifecycle = JobLifecycle(SqliteStore(str(workdir / "worker-io.db"), ttl_s=3600), EventPublisher(client),
                             max_attempts=3)
    model = _InstantModel()
    pixels = pack_pixels(Image.new("RGB", model.spec.input.size))
    _cpu_ms_per_image(lifecycle, model, pixels, 16, 32)  # warm-up: imports, connections, caches
    by_batch: dict[int, list[float]] = {16: [], 1: []}
    for _ in range(rounds):
        for batch_size in by_batch:
            by_batch[batch_size].append(_cpu_ms_per_image(lifecycle, model, pixels, batch_size, images))
    client.close()
    return {
        "images_per_round": images,
        "cpu_ms_per_image": {str(batch_size): spread(values) for batch_size, values in by_batch.items()},
        "batch1_over_batch16": spread([one / sixteen for one, sixteen in zip(by_batch[1], by_batch[16], strict=True)]),
    }
