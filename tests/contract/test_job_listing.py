"""Listing a tenant's jobs, newest first with cursors, and purging one, on every store (SQLite, and
Couchbase over the wire with key-value operations only)."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.errors import JobNotFound, NotPurgeable
from shared.jobs import JobDoc, JobStatus, new_job
from shared.store import JobStore
from shared.store.base import Idempotency
from shared.store.tenant_jobs import Entry, JobQuery
from tests.support.models import INPUT_INFO, MOBILENET_V2


def create(store: JobStore, tenant: str, batch_id: str | None = None, key: str | None = None) -> JobDoc:
    idempotency = Idempotency(key, "fingerprint") if key else None
    doc, _ = store.create_job(new_job(model=MOBILENET_V2, tenant=tenant, input_info=INPUT_INFO, top_k=1, batch_id=batch_id), b"img", idempotency)
    return doc


def now_ms() -> int:
    return int(time.time() * 1000)


def every_page(store: JobStore, tenant: str, query: JobQuery) -> list[list[str]]:
    """The ids of each page, following cursors to the end."""
    pages: list[list[str]] = []
    before: Entry | None = None
    while True:
        page, before = store.list_jobs(tenant, JobQuery(**{**query.__dict__, "before": before}), now_ms())
        pages.append([doc["id"] for doc in page])
        if before is None:
            return pages


def test_pages_list_each_job_of_the_tenant_once_newest_first_while_jobs_change(store: JobStore) -> None:
    tenant, other = f"t-{uuid.uuid4().hex}", f"o-{uuid.uuid4().hex}"
    with ThreadPoolExecutor(8) as pool:  # concurrent creators share the index documents
        mine = list(pool.map(lambda _: create(store, tenant), range(200)))
        list(pool.map(lambda _: create(store, other), range(50)))
    expected = [doc["id"] for doc in sorted(mine, key=lambda doc: (doc["created_at"], doc["id"]), reverse=True)]

    seen: list[str] = []
    before: Entry | None = None
    for turn in range(10):
        page, before = store.list_jobs(tenant, JobQuery(limit=100, before=before), now_ms())
        seen += [doc["id"] for doc in page]
        # Between pages: jobs start and finish, and new ones arrive; none of that moves the order.
        for doc in page[:20]:
            store.transition(doc["id"], JobStatus.RUNNING)
        for doc in mine[turn * 10:turn * 10 + 10]:
            if store.get_job(doc["id"])["status"] == "queued":
                store.transition(doc["id"], JobStatus.CANCELLED)
        create(store, tenant)
        if before is None:
            break

    assert seen == expected  # each once, newest first, none of the other tenant's, none created later


def test_filters_by_status_batch_and_time(store: JobStore) -> None:
    tenant = f"t-{uuid.uuid4().hex}"
    early = [create(store, tenant) for _ in range(5)]
    time.sleep(0.01)
    cutoff = now_ms()
    time.sleep(0.01)
    batch = [create(store, tenant, batch_id="b1") for _ in range(4)]
    late = [create(store, tenant) for _ in range(3)]
    for doc in late[:2]:
        store.transition(doc["id"], JobStatus.CANCELLED)

    def ids(**query: object) -> set[str]:
        return {job_id for page in every_page(store, tenant, JobQuery(**query)) for job_id in page}  # type: ignore[arg-type]

    assert ids(statuses=frozenset({"cancelled"})) == {doc["id"] for doc in late[:2]}
    assert ids(batch_id="b1") == {doc["id"] for doc in batch}
    assert ids(created_after_ms=cutoff) == {doc["id"] for doc in batch + late}
    assert ids(statuses=frozenset({"queued"}), created_after_ms=cutoff) == {doc["id"] for doc in batch + late[2:]}
    assert ids(limit=2) == {doc["id"] for doc in early + batch + late}


def test_a_page_of_a_selective_filter_ends_with_a_cursor_not_a_long_scan(store: JobStore) -> None:
    tenant = f"t-{uuid.uuid4().hex}"
    wanted = create(store, tenant, batch_id="rare")
    for _ in range(30):
        create(store, tenant)

    pages = every_page(store, tenant, JobQuery(limit=5, batch_id="rare"))

    assert [job_id for page in pages for job_id in page] == [wanted["id"]]


def test_a_purged_job_is_gone_from_every_listing_and_read_and_frees_its_key(store: JobStore) -> None:
    tenant = f"t-{uuid.uuid4().hex}"
    finished = create(store, tenant, key="k1")
    queued = create(store, tenant)
    store.transition(finished["id"], JobStatus.CANCELLED)

    with pytest.raises(NotPurgeable):
        store.purge_job(queued["id"], tenant)
    with pytest.raises(JobNotFound):
        store.purge_job(finished["id"], f"another-{tenant}")
    store.purge_job(finished["id"], tenant)

    assert [job_id for page in every_page(store, tenant, JobQuery()) for job_id in page] == [queued["id"]]
    with pytest.raises(JobNotFound):
        store.get_job(finished["id"])
    assert store.get_image(finished["id"]) is None
    again = create(store, tenant, key="k1")  # the key is free: a new job, not the purged one
    assert again["id"] != finished["id"]


def test_a_cursor_is_an_entry_or_a_value_error() -> None:
    entry = Entry(1_700_000_000_123, "job-1")
    assert Entry.decode(entry.encode()) == entry
    for bad in ("", "123:x", "abcdefghijklm:x", "1700000000123"):
        with pytest.raises(ValueError):
            Entry.decode(bad)
