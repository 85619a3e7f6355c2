"""Sessions on every store (SQLite, and Couchbase over the wire with sub-document appends): created,
read by their own tenant only, appended to by racing writers without losing an entry, and gone
when they expire, appending never extending their life."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from shared.errors import SessionNotFound
from shared.jobs import JobDoc, JobStatus, new_job
from shared.lifecycle import JobLifecycle
from shared.sessions import jobs_in, new_session, session_view, submitted_entry
from shared.store import JobStore
from tests.contract.conftest import StoreFactory
from tests.support.models import MOBILENET_V2
from tests.support.publishers import RecordingPublisher

INFO = {"content_type": "image/png", "bytes": 3, "sha256": "0" * 64, "width": 8, "height": 8}




def a_job(session_id: str, tenant: str = "tenant-a") -> JobDoc:
    return new_job(model=MOBILENET_V2, tenant=tenant, input_info=INFO, top_k=1, session_id=session_id)


def a_session(store: JobStore, tenant: str = "tenant-a", ttl_s: int = 3600) -> dict[str, Any]:
    session = new_session(tenant, ttl_s)
    store.sessions.create(session)
    return session


def wait_until_gone(store: JobStore, session_id: str, timeout_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            store.sessions.get(session_id)
        except SessionNotFound:
            return time.monotonic() - started
        time.sleep(0.1)
    pytest.fail(f"session {session_id} still there after {timeout_s} s")


def test_a_session_reads_back_for_its_tenant_only(store: JobStore) -> None:
    session = a_session(store)

    assert store.sessions.get(session["id"], tenant="tenant-a")["log"] == []
    with pytest.raises(SessionNotFound):
        store.sessions.get(session["id"], tenant="tenant-b")
    with pytest.raises(SessionNotFound):
        store.sessions.get(str(uuid.uuid4()), tenant="tenant-a")


def test_racing_writers_never_lose_an_entry(make_store: StoreFactory) -> None:
    """Sixteen writers on four store connections append 400 entries at once; every one is kept."""
    stores = [make_store() for _ in range(4)]
    session = a_session(stores[0])
    jobs = [a_job(session["id"]) for _ in range(400)]

    def append(index: int) -> None:
        stores[index % len(stores)].sessions.append(session, submitted_entry(jobs[index], f"{index}.png"))

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(append, range(len(jobs))))

    stored = stores[1].sessions.get(session["id"])
    assert sorted(jobs_in(stored)) == sorted(doc["id"] for doc in jobs)


def test_a_job_that_ends_leaves_its_result_in_the_session(store: JobStore) -> None:
    session = a_session(store)
    doc = a_job(session["id"])
    store.sessions.append(session, submitted_entry(doc, "cat.png"))
    store.create_job(doc, b"img")
    lifecycle = JobLifecycle(store, RecordingPublisher(), max_attempts=3)  # type: ignore[arg-type]
    prediction = {"label": "tabby", "class_id": 281, "score": 0.75}

    lifecycle.begin(doc["id"])
    lifecycle.succeed(doc["id"], result={"predictions": [prediction], "batch_size": 1, "inference_ms": 1.0},
                      model=doc["model"])
    store.purge_job(doc["id"], "tenant-a")  # the job's document is gone: the session still has its result

    view = session_view(store.sessions.get(session["id"]), live={})
    assert [(entry["job_id"], entry["status"], entry["top_prediction"], entry["input"]["filename"])
            for entry in view["history"]] == [(doc["id"], JobStatus.SUCCEEDED.value, prediction, "cat.png")]


def test_sessions_expire_and_appending_does_not_extend_their_life(store: JobStore) -> None:
    session = a_session(store, ttl_s=4)
    created_at = time.monotonic()
    time.sleep(2)

    store.sessions.append(session, submitted_entry(a_job(session["id"]), None))

    lived_s = time.monotonic() - created_at + wait_until_gone(store, session["id"], timeout_s=5)
    # An extended life would keep it until 2 + 4 = 6 s; Couchbase counts whole seconds.
    assert lived_s < 5, f"the session lived {lived_s:.1f} s with a TTL of 4 s"
    with pytest.raises(SessionNotFound):
        store.sessions.append(session, submitted_entry(a_job(session["id"]), None))
