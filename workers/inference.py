"""One dynamic batch: mark jobs running, read each one's pixels, one forward pass, write each result."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from shared.jobs import ErrorCode
from shared.lifecycle import JobLifecycle
from shared.preprocessing import model_pixels
from workers.labels import imagenet_labels
from workers.model.classifier import Classifier, to_model_input
from workers.scores import top_k

log = logging.getLogger(__name__)


@dataclass
class BatchReport:
    """What one batch did with its jobs: delivered = inferred + skipped + failed."""

    delivered: int
    inferred: int  # succeeded, in one forward pass of this many images
    # begin() returned None: the job had finished or was cancelled before (a redelivery, a
    # cancel), or it was given up as worker_lost there.
    skipped: int = 0
    failures: dict[ErrorCode, int] = field(default_factory=dict)  # failed jobs by error code
    inference_ms: float = 0.0  # the forward pass; 0 when none ran or it raised

    @property
    def failed(self) -> int:
        return sum(self.failures.values())


def process_batch(job_ids: list[str], lifecycle: JobLifecycle, classifier: Classifier) -> BatchReport:
    """Run the jobs of one batch. A bad image fails its own job only; a job that finished
    or was cancelled before (a redelivery, a cancel) is skipped."""
    ready: list[tuple[str, int, np.ndarray]] = []
    failures: Counter[ErrorCode] = Counter()
    skipped = 0
    for job_id in job_ids:
        doc = lifecycle.begin(job_id)
        if doc is None:
            skipped += 1
            continue
        image_bytes = lifecycle.image(job_id)
        if image_bytes is None:
            lifecycle.fail(job_id, ErrorCode.INTERNAL, "the stored image is gone", model=classifier.info)
            failures[ErrorCode.INTERNAL] += 1
            continue
        try:
            # Pixels the gateway prepared, or (ASYNCINFER_PREPROCESS_AT=worker) the upload to decode.
            ready.append((job_id, doc["params"]["top_k"], model_pixels(image_bytes)))
        except Exception as e:  # any decoder failure is this image's problem alone
            lifecycle.fail(job_id, ErrorCode.DECODE_ERROR, f"the image does not decode: {e}", model=classifier.info)
            failures[ErrorCode.DECODE_ERROR] += 1
    if not ready:
        return BatchReport(len(job_ids), 0, skipped=skipped, failures=dict(failures))

    started = time.perf_counter()
    try:
        scores = classifier.predict(to_model_input([pixels for _, _, pixels in ready]))
    except Exception as e:
        log.exception("inference failed for a batch of %d", len(ready))
        for job_id, _, _ in ready:
            lifecycle.fail(job_id, ErrorCode.INTERNAL, f"inference failed: {e}", model=classifier.info)
        failures[ErrorCode.INTERNAL] += len(ready)
        return BatchReport(len(job_ids), 0, skipped=skipped, failures=dict(failures))
    inference_ms = (time.perf_counter() - started) * 1000

    labels = imagenet_labels()
    for (job_id, k, _), row in zip(ready, scores, strict=True):
        result = {
            "predictions": top_k(row, k, labels),
            "batch_size": len(ready),
            "inference_ms": round(inference_ms, 2),
        }
        lifecycle.succeed(job_id, result=result, model=classifier.info)
    return BatchReport(len(job_ids), len(ready), skipped=skipped, failures=dict(failures), inference_ms=inference_ms)
