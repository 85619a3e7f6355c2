"""Property test of a job's life (hypothesis): any sequence of submissions, deliveries, worker
crashes, cancels and replayed messages, on the real lifecycle, store and batch code, leaves
every job with a consistent history, and once the queue drains, in exactly one terminal state."""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from shared.errors import IllegalTransition
from shared.jobs import ALLOWED, JobStatus, new_job
from shared.lifecycle import JobLifecycle
from shared.store.sqlite import SqliteStore
from tests.support.models import MOBILENET_V2, blank_pixels, builtin, input_info
from tests.support.publishers import RecordingPublisher
from workers.inference import process_batch

PIXELS = blank_pixels()
MAX_ATTEMPTS = 3


class Crash(BaseException):
    """The worker process dies: nothing after it runs, and its messages are delivered again."""




class Classifier:
    spec = builtin()
    max_batch_size = 8
    info: dict[str, str] = {"name": "mobilenet_v2", "version": "1", "weights": "random",  # noqa: RUF012
                            "weights_sha256": "0" * 64, "backend": "onnxruntime", "device": "cpu"}

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        return np.full((len(inputs), 1000), 1 / 1000, dtype="float32")


class JobLives(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.TemporaryDirectory()
        self.store = SqliteStore(str(Path(self.directory.name) / "jobs.db"), ttl_s=3600)
        self.publisher = RecordingPublisher()
        self.lifecycle = JobLifecycle(self.store, self.publisher, max_attempts=MAX_ATTEMPTS)  # type: ignore[arg-type]
        self.jobs: list[str] = []
        self.queue: list[str] = []  # messages in Redis, in order; a delivered batch leaves only when acked

    def teardown(self) -> None:
        self.store.close()
        self.directory.cleanup()

    @rule()
    def submit(self) -> None:
        info = input_info(f"{len(self.jobs):064x}")
        doc, _ = self.store.create_job(new_job(model=MOBILENET_V2, tenant="t", input_info=info, top_k=1), PIXELS)
        self.jobs.append(doc["id"])
        self.queue.append(doc["id"])

    @precondition(lambda self: self.queue)
    @rule(size=st.integers(1, 8), crash_in_pass=st.none() | st.integers(0, 3))
    def deliver(self, size: int, crash_in_pass: int | None) -> None:
        """A worker takes up to `size` messages; with `crash_in_pass`, it dies in that forward pass."""
        batch, self.queue = self.queue[:size], self.queue[size:]
        passes = 0

        def maybe_crash(docs: Sequence[dict[str, Any]]) -> None:
            nonlocal passes
            if passes == crash_in_pass:
                raise Crash
            passes += 1

        try:
            report = process_batch(batch, self.lifecycle, Classifier(), maybe_crash)  # type: ignore[arg-type]
        except Crash:
            self.queue.extend(batch)  # unacknowledged: back after the visibility timeout
            return
        self.queue.extend(report.unfinished)  # acked, and the unfinished ones queued again

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self.jobs))
        try:
            self.lifecycle.cancel(job_id, "t")
        except IllegalTransition:
            assert self.store.get_job(job_id)["status"] != "queued"

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        """A message sent twice (a client's idempotent retry after a gateway crash, or recovery)."""
        self.queue.append(data.draw(st.sampled_from(self.jobs)))

    @invariant()
    def every_history_is_consistent(self) -> None:
        for job_id in self.jobs:
            doc = self.store.get_job(job_id)
            history = doc["history"]
            assert [entry["seq"] for entry in history] == list(range(1, len(history) + 1))
            statuses = [JobStatus(entry["status"]) for entry in history]
            assert statuses[0] is JobStatus.QUEUED and statuses[-1].value == doc["status"]
            for before, after in itertools.pairwise(statuses):
                assert after in ALLOWED[before], statuses
            assert doc["attempts"] == statuses.count(JobStatus.RUNNING) <= MAX_ATTEMPTS
            assert all(not status.terminal for status in statuses[:-1])  # a terminal state is the last
            published = [seq for published_id, seq in [(doc["id"], doc["history"][-1]["seq"]) for doc in self.publisher.published] if published_id == job_id]
            assert published == list(range(2, len(history) + 1))  # every change announced, once, in order

    def drained(self) -> None:
        """Deliver without crashes until the queue is empty; then every job is terminal."""
        while self.queue:
            self.deliver(8, None)
        for job_id in self.jobs:
            assert JobStatus(self.store.get_job(job_id)["status"]).terminal


class DrainedJobLives(JobLives):
    def teardown(self) -> None:
        try:
            self.drained()
            self.every_history_is_consistent()
        finally:
            super().teardown()


DrainedJobLives.TestCase.settings = settings(max_examples=60, stateful_step_count=25, deadline=None)
test_job_lives = DrainedJobLives.TestCase
