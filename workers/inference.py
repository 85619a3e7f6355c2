"""One dynamic batch: mark its jobs running, read their pixels, one forward pass, write their results.

Each of those steps is one store round trip for the whole batch (each job keeps its own CAS), and
the batch's events go out in one Redis pipeline.

Two rules keep a batch from taking innocent jobs down with it:
- A job whose store reads or writes fail is left unfinished and handed back (BatchReport.unfinished,
  which the worker queues again), never acknowledged as if done; a message whose job is gone is
  skipped. Nothing one job does raises out of the batch.
- A redelivered job (its worker was lost while holding it, attempts > 1) runs in a forward pass
  of its own, begun only when its turn comes. An image that kills the worker, or hangs its
  forward pass past the time limit, then takes only itself down, and fails with `worker_lost`
  (or `timeout`) once it has had its attempts; its batch-mates, run alone after the first
  crash, succeed.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared.errors import JobNotFound, StoreUnavailable
from shared.jobs import ErrorCode, JobDoc, JobStatus, status_of
from shared.lifecycle import JobLifecycle
from shared.logs import about_job
from shared.preprocessing import model_pixels
from shared.queue import queue_of
from shared.store.base import Written
from shared.tracing import on as tracing_on
from shared.tracing import span
from workers.model.classifier import Classifier, to_model_input
from workers.scores import top_k

log = logging.getLogger(__name__)

# Called with the documents of the jobs about to be inferred together (the tests' fault injection).
BeforeInference = Callable[[Sequence[JobDoc]], None]
# Called with the ids of the jobs of one forward pass; the pass runs inside what it returns
# (workers/time_limit.py: past the limit, the worker notes the timeout and exits).
PassGuard = Callable[[Sequence[str]], AbstractContextManager[object]]


@dataclass
class BatchReport:
    """What one batch did with its jobs: delivered = inferred + skipped + failed + unfinished + misrouted."""

    delivered: int
    inferred: int  # succeeded
    # begin() returned None: the job had finished or was cancelled before (a redelivery, a
    # cancel), or it was given up as worker_lost there; or its document no longer exists.
    skipped: int = 0
    failures: dict[ErrorCode, int] = field(default_factory=dict)  # failed jobs by error code
    inference_ms: float = 0.0  # the forward passes; 0 when none ran or they raised
    passes: int = 0  # forward passes run: one for the fresh jobs, one per redelivered job
    unfinished: list[str] = field(default_factory=list)  # the store failed them: to be queued again
    # Jobs of another model (a message on the wrong queue): job id → the queue of its own model.
    misrouted: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())


@dataclass
class _Ready:
    begun: Written  # the job as begin wrote it, with its CAS: its result is written from it
    pixels: np.ndarray

    @property
    def doc(self) -> JobDoc:
        return self.begun.doc


class _Batch:
    def __init__(self, lifecycle: JobLifecycle, classifier: Classifier, before_inference: BeforeInference | None,
                 guard: PassGuard | None, delivered: int) -> None:
        self.lifecycle = lifecycle
        self.classifier = classifier
        self.before_inference = before_inference
        self.guard: PassGuard = guard or (lambda job_ids: nullcontext())
        self.report = BatchReport(delivered, 0)
        self.failures: Counter[ErrorCode] = Counter()
        self._request_ids: dict[str, str | None] = {}  # of the jobs read: the requests that submitted them
        self.trace_ids: Mapping[str, str | None] = {}  # each job's trace, from its message (tracing on)

    def about(self, job_id: str) -> AbstractContextManager[None]:
        """Log lines inside name the job, its request and its trace (shared/logs.py)."""
        return about_job(job_id, self._request_ids.get(job_id), self.trace_ids.get(job_id))

    def _store_failed(self, job_id: str, during: str, error: Exception) -> None:
        with self.about(job_id):
            log.warning("job %s: the store failed during %s (%s: %s); handing it back", job_id, during,
                        type(error).__name__, error)
        self.report.unfinished.append(job_id)

    def _fail(self, job_id: str, code: ErrorCode, message: str) -> None:
        try:
            with store_span("store.fail", job_id):
                self.lifecycle.fail(job_id, code, message, model=self.classifier.info)
            self.failures[code] += 1
        except Exception as e:
            self._store_failed(job_id, "fail", e)

    def begin_fresh(self, job_ids: list[str]) -> tuple[list[Written], list[str]]:
        """Begin the batch's jobs that are not running yet, in one read and one write: (the jobs
        begun, the ids of those that were running already: redelivered, their worker was lost).
        A job that is gone, finished or another model's (sent to that model's queue) is in neither."""
        with store_span("store.begin", *job_ids):
            outcomes = self.lifecycle.begin_fresh(job_ids, runs_here=self._serves)
        begun: list[Written] = []
        redelivered: list[str] = []
        for job_id, outcome in outcomes.items():
            if isinstance(outcome, Exception):
                self._not_begun(job_id, outcome)
                continue
            doc = outcome.doc
            self._request_ids[job_id] = doc.get("request_id")
            status = status_of(doc)
            if not self._serves(doc):
                with self.about(job_id):
                    log.warning("job %s is for model %s@%s, not %s; sending it to its own queue", job_id,
                                doc["model"]["name"], doc["model"]["version"], self.classifier.spec.ref)
                self.report.misrouted[job_id] = queue_of(doc)
            elif status is JobStatus.RUNNING and outcome.changed:
                begun.append(outcome)
            elif status is JobStatus.RUNNING:
                redelivered.append(job_id)
            else:  # finished or cancelled before (a redelivery, a cancel), or late: cancelled just now
                self.report.skipped += 1
        return begun, redelivered

    def _serves(self, doc: JobDoc) -> bool:
        spec = self.classifier.spec
        return (doc["model"]["name"], doc["model"]["version"]) == (spec.name, spec.version)

    def _not_begun(self, job_id: str, error: Exception) -> None:
        if isinstance(error, JobNotFound):
            with self.about(job_id):
                log.warning("job %s: no such job (its message outlived it); skipped", job_id)
            self.report.skipped += 1
        else:
            self._store_failed(job_id, "begin", error)

    def begin(self, job_id: str) -> Written | None:
        """Begin one redelivered job (a new attempt, or given up as worker_lost)."""
        try:
            with store_span("store.begin", job_id):
                doc = self.lifecycle.begin(job_id)
        except Exception as e:
            self._not_begun(job_id, e)
            return None
        if doc is None:
            self.report.skipped += 1
            return None
        return Written(doc, True, None)

    def prepare(self, begun: list[Written]) -> list[_Ready]:
        """The begun jobs' pixels, their images read in one round trip."""
        if not begun:
            return []
        job_ids = [written.doc["id"] for written in begun]
        try:
            with store_span("store.read_image", *job_ids):
                images = self.lifecycle.images(job_ids)
        except StoreUnavailable as e:  # past the store's retry window
            images = dict.fromkeys(job_ids, e)
        ready = []
        for written in begun:
            with self.about(written.doc["id"]):
                item = self._pixels(written, images[written.doc["id"]])
            if item is not None:
                ready.append(item)
        return ready

    def _pixels(self, begun: Written, image: bytes | Exception | None) -> _Ready | None:
        job_id = begun.doc["id"]
        if isinstance(image, Exception):
            self._store_failed(job_id, "image read", image)
            return None
        if image is None:
            self._fail(job_id, ErrorCode.INTERNAL, "the stored image is gone")
            return None
        try:
            # Pixels the gateway prepared, or (ASYNCINFER_PREPROCESS_AT=worker) the upload to decode.
            return _Ready(begun, model_pixels(image, self.classifier.spec.input))
        except Exception as e:  # any decoder failure is this image's problem alone
            self._fail(job_id, ErrorCode.DECODE_ERROR, f"the image does not decode: {e}")
            return None

    def infer(self, ready: list[_Ready]) -> None:
        """One forward pass over `ready`, then each job's result."""
        if not ready:
            return
        try:
            with self.guard([item.doc["id"] for item in ready]):
                if self.before_inference is not None:
                    self.before_inference([item.doc for item in ready])
                started = time.perf_counter()
                with span("inference", {"asyncinfer.batch_size": len(ready),
                                        "asyncinfer.model": self.classifier.spec.ref} if tracing_on() else None):
                    scores = self.classifier.predict(
                        to_model_input(self.classifier.spec, [item.pixels for item in ready]))
        except Exception as e:
            log.exception("inference failed for a batch of %d", len(ready))
            for item in ready:
                self._fail(item.doc["id"], ErrorCode.INTERNAL, f"inference failed: {e}")
            return
        inference_ms = (time.perf_counter() - started) * 1000
        self.report.inference_ms += inference_ms
        self.report.passes += 1
        labels = self.classifier.spec.labels()
        results: dict[str, dict[str, Any]] = {
            item.doc["id"]: {
                "predictions": top_k(row, item.doc["params"]["top_k"], labels),
                "batch_size": len(ready),
                "inference_ms": round(inference_ms, 2),
            }
            for item, row in zip(ready, scores, strict=True)
        }
        with store_span("store.succeed", *results):
            outcomes = self.lifecycle.succeed_many(results, model=self.classifier.info,
                                                   known={item.doc["id"]: item.begun for item in ready})
        for job_id, outcome in outcomes.items():
            if isinstance(outcome, Exception):
                self._store_failed(job_id, "succeed", outcome)
            else:
                self.report.inferred += 1


def store_span(name: str, *job_ids: str) -> AbstractContextManager[object]:
    """A child span of the batch's around one store read or write of these jobs (a no-op when tracing is off)."""
    return span(name, {"asyncinfer.job_ids": list(job_ids)} if tracing_on() else None)


def process_batch(job_ids: list[str], lifecycle: JobLifecycle, classifier: Classifier,
                  before_inference: BeforeInference | None = None, guard: PassGuard | None = None,
                  trace_ids: Mapping[str, str | None] | None = None) -> BatchReport:
    """Run the jobs of one batch: fresh jobs in one forward pass, redelivered ones each alone.
    A bad image fails its own job only; a job that finished or was cancelled before is skipped.
    Each forward pass runs inside `guard` (the time limit). `trace_ids`: each job's trace, for its log lines."""
    batch = _Batch(lifecycle, classifier, before_inference, guard, delivered=len(job_ids))
    batch.trace_ids = trace_ids or {}
    begun, redelivered = batch.begin_fresh(list(dict.fromkeys(job_ids)))  # a message delivered twice runs once
    batch.infer(batch.prepare(begun))
    for job_id in redelivered:
        # Begun only now, so that an earlier one that kills the worker is not charged to it.
        with batch.about(job_id):
            written = batch.begin(job_id)
        batch.infer(batch.prepare([written] if written is not None else []))
    batch.report.failures = dict(batch.failures)
    return batch.report
