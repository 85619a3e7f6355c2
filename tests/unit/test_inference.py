"""process_batch on the real lifecycle and SQLite store: no job of a batch is dropped because of
another one, and an image that kills the worker or hangs its forward pass takes only itself down."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from shared.errors import StoreUnavailable
from shared.jobs import JobStatus
from shared.lifecycle import TIMED_OUT_FIELD, JobLifecycle
from shared.store.base import ManyFound
from shared.store.sqlite import SqliteStore
from tests.support.models import blank_pixels, builtin, queued_job
from tests.support.publishers import RecordingPublisher
from workers.inference import process_batch
from workers.time_limit import TIMED_OUT_EXIT_CODE, InferenceTimeLimit

PIXELS = blank_pixels()
MAX_ATTEMPTS = 3




class Classifier:
    spec = builtin()
    max_batch_size = 8
    info: ClassVar = {"name": "mobilenet_v2", "version": "1", "weights": "random", "weights_sha256": "0" * 64,
                      "backend": "onnxruntime", "device": "cpu"}

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        return np.full((len(inputs), 1000), 1 / 1000, dtype="float32")


class Crash(BaseException):
    """Stands for the worker process dying: nothing after it runs, nothing is written."""


class FlakyStore(SqliteStore):
    """The real store, failing every read of the jobs in `unavailable`: alone in a batch's read, as
    a Couchbase key that times out does."""

    unavailable: ClassVar[set[str]] = set()

    def _down(self, key: str) -> bool:
        return any(job_id in key for job_id in self.unavailable)

    def _get(self, key: str) -> tuple[dict[str, Any], int] | None:
        if self._down(key):
            raise StoreUnavailable(f"{key}: the store did not answer")
        return super()._get(key)

    def _get_many(self, keys: list[str]) -> ManyFound:
        return super()._get_many(keys) | {key: StoreUnavailable(f"{key}: the store did not answer")
                                          for key in keys if self._down(key)}


@pytest.fixture
def store(tmp_path: Path) -> FlakyStore:
    return FlakyStore(str(tmp_path / "jobs.db"), ttl_s=3600)


@pytest.fixture
def lifecycle(store: FlakyStore) -> JobLifecycle:
    return JobLifecycle(store, RecordingPublisher(), max_attempts=MAX_ATTEMPTS)  # type: ignore[arg-type]


def test_a_message_whose_job_is_gone_does_not_fail_its_batch_mates(store: FlakyStore,
                                                                   lifecycle: JobLifecycle) -> None:
    jobs = [queued_job(store) for _ in range(3)]

    report = process_batch([jobs[0], "no-such-job", *jobs[1:]], lifecycle, Classifier())  # type: ignore[arg-type]

    assert (report.delivered, report.inferred, report.skipped, report.unfinished) == (4, 3, 1, [])
    assert {store.get_job(job_id)["status"] for job_id in jobs} == {"succeeded"}


def test_a_job_the_store_fails_is_handed_back_not_dropped(store: FlakyStore, lifecycle: JobLifecycle) -> None:
    jobs = [queued_job(store) for _ in range(3)]
    store.unavailable = {jobs[1]}

    report = process_batch(jobs, lifecycle, Classifier())  # type: ignore[arg-type]

    assert report.unfinished == [jobs[1]] and report.inferred == 2
    store.unavailable = set()
    assert store.get_job(jobs[1])["status"] == "queued"  # untouched: the worker queues it again


def test_an_image_whose_read_fails_alone_in_the_batchs_read_is_read_again_alone(
        store: FlakyStore, lifecycle: JobLifecycle, monkeypatch: pytest.MonkeyPatch) -> None:
    """As a Couchbase key times out alone in a multi-key read: that image is read again by itself (waiting out
    the store as every read does), not handed back, which would cost the job a second attempt."""
    jobs = [queued_job(store) for _ in range(3)]
    read_many = store._get_binary_many

    def one_key_times_out(keys: list[str]) -> dict[str, bytes | Exception | None]:
        return read_many(keys) | {keys[1]: StoreUnavailable(f"{keys[1]}: timed out")}

    monkeypatch.setattr(store, "_get_binary_many", one_key_times_out)

    report = process_batch(jobs, lifecycle, Classifier())  # type: ignore[arg-type]

    assert (report.inferred, report.unfinished) == (3, [])
    assert [(doc["status"], doc["attempts"]) for doc in map(store.get_job, jobs)] == [("succeeded", 1)] * 3


def test_a_job_delivered_twice_in_one_batch_runs_once(store: FlakyStore, lifecycle: JobLifecycle) -> None:
    job = queued_job(store)

    report = process_batch([job, job], lifecycle, Classifier())  # type: ignore[arg-type]

    doc = store.get_job(job)
    assert report.inferred == 1 and doc["attempts"] == 1 and doc["status"] == "succeeded"


def test_redelivered_jobs_run_alone_after_the_fresh_ones(store: FlakyStore, lifecycle: JobLifecycle) -> None:
    fresh = [queued_job(store) for _ in range(2)]
    redelivered = [queued_job(store) for _ in range(2)]
    for job_id in redelivered:  # begun by a worker that was lost
        lifecycle.begin(job_id)

    report = process_batch([redelivered[0], *fresh, redelivered[1]], lifecycle, Classifier())  # type: ignore[arg-type]

    assert report.passes == 3 and report.inferred == 4
    assert [store.get_job(job_id)["result"]["batch_size"] for job_id in fresh] == [2, 2]
    for job_id in redelivered:
        doc = store.get_job(job_id)
        assert doc["result"]["batch_size"] == 1 and doc["attempts"] == 2


def test_an_image_that_kills_the_worker_fails_alone_and_its_batch_mates_succeed(
    store: FlakyStore, lifecycle: JobLifecycle
) -> None:
    poison = queued_job(store, sha256="f" * 64)
    mates = [queued_job(store) for _ in range(3)]

    def crash_on_poison(docs: Sequence[dict[str, Any]]) -> None:
        if any(doc["input"]["sha256"] == "f" * 64 for doc in docs):
            raise Crash

    deliveries = 0
    while deliveries < 10:
        open_jobs = [job_id for job_id in [poison, *mates] if not JobStatus(store.get_job(job_id)["status"]).terminal]
        if not open_jobs:
            break
        deliveries += 1  # Redis hands every unacknowledged message back after a crash
        try:
            process_batch(open_jobs, lifecycle, Classifier(), crash_on_poison)  # type: ignore[arg-type]
        except Crash:
            continue

    failed = store.get_job(poison)
    assert failed["status"] == "failed" and failed["error"]["code"] == "worker_lost"
    assert failed["attempts"] == MAX_ATTEMPTS and deliveries == MAX_ATTEMPTS + 1
    for job_id in mates:  # charged once, for the first crash, which they shared with the poison
        doc = store.get_job(job_id)
        assert doc["status"] == "succeeded" and doc["attempts"] == 2, doc["history"]


def test_an_image_that_hangs_inference_times_out_alone_and_its_batch_mates_succeed(
    store: FlakyStore, lifecycle: JobLifecycle
) -> None:
    stuck = queued_job(store, sha256="e" * 64)
    mates = [queued_job(store) for _ in range(3)]
    exit_codes: list[int] = []
    exited = threading.Event()

    def exit_process(code: int) -> None:  # the watchdog's os._exit: ends the hung pass below
        exit_codes.append(code)
        exited.set()

    def hang_on_stuck(docs: Sequence[dict[str, Any]]) -> None:
        if any(doc["id"] == stuck for doc in docs):
            assert exited.wait(10), "the time limit never fired"
            exited.clear()
            raise Crash

    def note_timeout(job_ids: Sequence[str]) -> None:
        for job_id in job_ids:
            lifecycle.note_timeout(job_id, 0.2)

    deliveries = 0
    while deliveries < 10:
        open_jobs = [job_id for job_id in [stuck, *mates] if not JobStatus(store.get_job(job_id)["status"]).terminal]
        if not open_jobs:
            break
        deliveries += 1
        time_limit = InferenceTimeLimit(0.2, note_timeout, exit_process)  # a new worker process each time
        try:
            process_batch(open_jobs, lifecycle, Classifier(), hang_on_stuck, time_limit.guard)  # type: ignore[arg-type]
        except Crash:
            continue

    failed = store.get_job(stuck)
    assert (failed["status"], failed["error"]["code"], failed["attempts"]) == ("failed", "timeout", MAX_ATTEMPTS)
    assert exit_codes == [TIMED_OUT_EXIT_CODE] * MAX_ATTEMPTS and deliveries == MAX_ATTEMPTS + 1
    for job_id in mates:  # charged once, for the pass they shared with the image that hangs
        doc = store.get_job(job_id)
        assert (doc["status"], doc["attempts"]) == ("succeeded", 2), doc["history"]
        assert TIMED_OUT_FIELD not in doc


def test_a_worker_lost_after_a_timed_out_attempt_is_charged_to_the_last_attempt(
    store: FlakyStore, lifecycle: JobLifecycle
) -> None:
    """The error code names what ended the last attempt: a timeout noted on an earlier one is
    forgotten when the job starts again."""
    job = queued_job(store)
    lifecycle.begin(job)
    lifecycle.note_timeout(job, 5)
    for _ in range(MAX_ATTEMPTS - 1):  # redelivered; each later attempt's worker is lost without a timeout
        assert lifecycle.begin(job) is not None
        assert TIMED_OUT_FIELD not in store.get_job(job)

    assert lifecycle.begin(job) is None
    assert store.get_job(job)["error"]["code"] == "worker_lost"


def test_passes_within_the_limit_never_trip_it() -> None:
    expired: list[Sequence[str]] = []
    time_limit = InferenceTimeLimit(0.3, expired.append, lambda code: expired.append([str(code)]))
    for index in range(5):  # 1 s in all, each pass well inside the limit
        with time_limit.guard([f"job-{index}"]):
            time.sleep(0.1)
        time.sleep(0.1)
    time.sleep(0.4)  # disarmed: waiting between batches is not inference
    assert expired == []
