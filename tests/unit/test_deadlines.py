"""A client's start deadline (`deadline_s`): a job not started by then ends `cancelled` with error
code `timeout`, and a worker that receives it later skips it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from shared.jobs import JobStatus, missed_its_start, new_job, transition
from shared.lifecycle import JobLifecycle
from shared.store.sqlite import SqliteStore
from tests.support.models import INPUT_INFO, MOBILENET_V2
from tests.support.publishers import RecordingPublisher


@pytest.fixture
def lifecycle(tmp_path: Path) -> JobLifecycle:
    return JobLifecycle(SqliteStore(str(tmp_path / "jobs.db"), ttl_s=3600), RecordingPublisher(), max_attempts=3)  # type: ignore[arg-type]


def test_only_a_queued_job_past_its_deadline_has_missed_its_start() -> None:
    doc = new_job(model=MOBILENET_V2, tenant="t", input_info=INPUT_INFO, top_k=1, deadline_s=0.5)
    now = time.time()
    assert not missed_its_start(doc, now)
    assert missed_its_start(doc, now + 1)
    assert not missed_its_start(transition(doc, JobStatus.RUNNING), now + 1)  # it started in time
    assert not missed_its_start(new_job(model=MOBILENET_V2, tenant="t", input_info=INPUT_INFO, top_k=1), now + 10**6)  # no deadline


def test_a_late_job_is_skipped_by_its_worker_and_cancelled_with_timeout(lifecycle: JobLifecycle) -> None:
    doc, _ = lifecycle.store.create_job(new_job(model=MOBILENET_V2, tenant="t", input_info=INPUT_INFO, top_k=1, deadline_s=0.2), b"img")
    time.sleep(0.3)

    assert lifecycle.begin(doc["id"]) is None

    late = lifecycle.store.get_job(doc["id"])
    assert late["status"] == "cancelled" and late["attempts"] == 0
    assert late["error"]["code"] == "timeout" and "deadline of 0.2 s" in late["error"]["message"]
    assert lifecycle.publisher.published[-1]["status"] == "cancelled"  # type: ignore[attr-defined]


def test_a_job_within_its_deadline_runs(lifecycle: JobLifecycle) -> None:
    doc, _ = lifecycle.store.create_job(new_job(model=MOBILENET_V2, tenant="t", input_info=INPUT_INFO, top_k=1, deadline_s=60), b"img")

    assert lifecycle.end_if_late(doc["id"]) is None
    started = lifecycle.begin(doc["id"])
    assert started is not None and started["status"] == "running"
