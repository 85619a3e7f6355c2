"""JobLifecycle.cancel_queued, what a gateway does to a batch it withdraws: the members still queued
are cancelled in one write, each with its event; one that a worker has begun runs to its end."""

from __future__ import annotations

import logging
from pathlib import Path
from unittest import mock

import pytest

from shared.errors import StoreUnavailable
from shared.lifecycle import JobLifecycle
from shared.store.sqlite import SqliteStore
from tests.support.models import queued_job
from tests.support.publishers import RecordingPublisher


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def lifecycle(tmp_path: Path, publisher: RecordingPublisher) -> JobLifecycle:
    return JobLifecycle(SqliteStore(str(tmp_path / "jobs.db"), ttl_s=3600), publisher,  # type: ignore[arg-type]
                        max_attempts=3)


def test_only_the_members_still_queued_are_cancelled_each_with_its_event(lifecycle: JobLifecycle,
                                                                          publisher: RecordingPublisher) -> None:
    ids = [queued_job(lifecycle.store) for _ in range(3)]
    assert lifecycle.begin(ids[0]) is not None  # its message reached a worker before the withdrawal
    publisher.published.clear()

    lifecycle.cancel_queued(ids)

    assert [lifecycle.store.get_job(job_id)["status"] for job_id in ids] == ["running", "cancelled", "cancelled"]
    assert [(doc["id"], doc["status"]) for doc in publisher.published] == [(ids[1], "cancelled"), (ids[2], "cancelled")]


def test_a_withdrawal_the_store_refuses_is_logged_and_the_jobs_stay_queued(
        lifecycle: JobLifecycle, publisher: RecordingPublisher, caplog: pytest.LogCaptureFixture) -> None:
    ids = [queued_job(lifecycle.store) for _ in range(2)]

    with mock.patch.object(lifecycle.store, "update_many", side_effect=StoreUnavailable("the store is down")), \
            caplog.at_level(logging.WARNING, logger="shared.lifecycle"):
        lifecycle.cancel_queued(ids)

    assert [lifecycle.store.get_job(job_id)["status"] for job_id in ids] == ["queued", "queued"]
    assert publisher.published == []
    warned = [record.getMessage() for record in caplog.records]
    assert all(any(job_id in line and "stays queued" in line and "the store is down" in line for line in warned)
               for job_id in ids)
