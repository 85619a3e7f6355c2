"""The store primitive of webhook deliveries, on every store: a terminal job's `delivery` record
changes under CAS and nothing else of the job does; an open job's record cannot be written."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from shared.errors import BatchNotFound, IllegalTransition, JobNotFound
from shared.jobs import JobStatus, new_job
from shared.store import JobStore
from tests.support.models import INPUT_INFO, MOBILENET_V2


def finished_job(store: JobStore) -> str:
    doc, _ = store.create_job(new_job(model=MOBILENET_V2, tenant="t", input_info=INPUT_INFO, top_k=1,
                                      callback_url="https://example.com/hook"), b"img")
    store.transition(doc["id"], JobStatus.RUNNING)
    store.transition(doc["id"], JobStatus.SUCCEEDED, result={"predictions": []})
    return str(doc["id"])


def test_a_terminal_jobs_delivery_record_is_written_and_nothing_else_changes(store: JobStore) -> None:
    job_id = finished_job(store)
    before = store.get_job(job_id)

    doc, changed = store.update_delivery(job_id, lambda current: {"state": "pending", "attempts": 1,
                                                                   "seen_before": current})

    assert changed
    assert store.get_job(job_id) == doc
    assert doc["delivery"] == {"state": "pending", "attempts": 1, "seen_before": None}
    assert {key: value for key, value in doc.items() if key != "delivery"} == before


def test_a_change_that_returns_none_writes_nothing(store: JobStore) -> None:
    job_id = finished_job(store)
    store.update_delivery(job_id, lambda current: {"state": "delivered"})

    doc, changed = store.update_delivery(job_id, lambda current: None)

    assert not changed
    assert doc["delivery"] == {"state": "delivered"}


def test_an_open_jobs_delivery_record_is_refused(store: JobStore) -> None:
    doc, _ = store.create_job(new_job(model=MOBILENET_V2, tenant="t", input_info=INPUT_INFO, top_k=1), b"img")

    with pytest.raises(IllegalTransition):
        store.update_delivery(doc["id"], lambda current: {"state": "pending"})

    assert "delivery" not in store.get_job(doc["id"])
    assert store.get_job(doc["id"])["status"] == "queued"


def test_an_unknown_job_is_not_found(store: JobStore) -> None:
    with pytest.raises(JobNotFound):
        store.update_delivery("no-such-job", lambda current: {"state": "pending"})


def test_concurrent_changes_lose_none(store: JobStore) -> None:
    """Every writer's change lands, each on the record the one before it left (CAS)."""
    job_id = finished_job(store)

    def count(current: dict[str, Any] | None) -> dict[str, Any]:
        return {"attempts": (current or {}).get("attempts", 0) + 1}

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: store.update_delivery(job_id, count), range(24)))

    doc = store.get_job(job_id)
    assert doc["delivery"] == {"attempts": 24}
    assert doc["status"] == "succeeded"
    assert [entry["status"] for entry in doc["history"]] == ["queued", "running", "succeeded"]


def test_a_batchs_delivery_record_is_written_and_its_members_are_untouched(store: JobStore) -> None:
    job_id = finished_job(store)
    store.create_batch({"id": "b-1", "type": "batch", "tenant": "t", "job_ids": [job_id],
                        "callback_url": "https://example.com/hook"})
    member_before = store.get_job(job_id)

    batch = store.update_batch_delivery("b-1", lambda current: {"state": "delivered", "seen_before": current})

    assert batch["delivery"] == {"state": "delivered", "seen_before": None}
    assert store.get_batch("b-1") == batch
    assert store.get_job(job_id) == member_before
    assert store.update_batch_delivery("b-1", lambda current: None) == batch


def test_an_unknown_batch_is_not_found(store: JobStore) -> None:
    with pytest.raises(BatchNotFound):
        store.update_batch_delivery("nope", lambda current: {"state": "pending"})
