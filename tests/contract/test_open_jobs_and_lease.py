"""The store's record of open jobs and its lease, on every store (SQLite, and Couchbase over the wire):
key-value operations only, so recovery works on Couchbase without the query service."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.jobs import new_job
from shared.store import JobStore
from shared.store.open_jobs import BUCKET_S, CLOCK_SKEW_BUCKETS, OpenJobIndex, bucket_of
from tests.contract.conftest import StoreFactory
from tests.support.models import INPUT_INFO, MOBILENET_V2


def created(store: JobStore) -> str:
    doc, _ = store.create_job(new_job(model=MOBILENET_V2, tenant="t", input_info=INPUT_INFO, top_k=1), b"img")
    return str(doc["id"])


def listed(index: OpenJobIndex, now_s: float | None = None, among: set[str] | None = None) -> list[str]:
    """The ids the index lists (of `among` only: the Couchbase mock is one bucket for every test)."""
    ids = [job_id for entry in index.entries(now_s) for job_id in entry.job_ids]
    return [job_id for job_id in ids if among is None or job_id in among]


@pytest.fixture
def index(store: JobStore) -> OpenJobIndex:
    """An index of this test's own in the store."""
    return OpenJobIndex(store, name=f"test-{uuid.uuid4().hex}")


def test_every_created_job_is_listed_as_open_once(store: JobStore) -> None:
    with ThreadPoolExecutor(8) as pool:  # concurrent creators share index documents
        jobs = list(pool.map(lambda _: created(store), range(40)))

    assert sorted(listed(store.open_jobs, among=set(jobs))) == sorted(jobs)


def test_pruned_jobs_leave_the_index(store: JobStore) -> None:
    jobs = [created(store) for _ in range(10)]
    finished = set(jobs[:6])

    for entry in store.open_jobs.entries():
        store.open_jobs.prune(entry, finished)

    assert sorted(listed(store.open_jobs, among=set(jobs))) == sorted(jobs[6:])


def test_scans_start_at_the_oldest_bucket_that_may_hold_an_open_job(index: OpenJobIndex) -> None:
    """Buckets from the past, by creating jobs at earlier times: a scan reads from the oldest
    one still open, and once the scan moves on, empty older buckets are not read again."""
    now = time.time()
    old = now - 20 * BUCKET_S
    index.start_scans_at(bucket_of(old) - 1)
    early, late = "early-job", "late-job"
    index.add([early], at_s=old)
    index.add([late], at_s=now - 10 * BUCKET_S)

    assert listed(index, now) == [early, late]
    entry = next(iter(index.entries(now)))
    index.prune(entry, {early}, now)
    index.advance(bucket_of(now - 10 * BUCKET_S), now)

    assert listed(index, now) == [late]
    assert index.scanned_from() == bucket_of(now - 10 * BUCKET_S)


def test_the_scan_never_moves_past_what_a_slow_clock_still_writes(index: OpenJobIndex) -> None:
    now = time.time()
    index.start_scans_at(bucket_of(now) - 30)

    index.advance(bucket_of(now) + 5, now)

    assert index.scanned_from() == bucket_of(now) - CLOCK_SKEW_BUCKETS


def lease_name() -> str:
    return f"test-{uuid.uuid4().hex}"  # of this test's own: the Couchbase mock is shared


def test_one_holder_at_a_time_until_the_lease_expires(make_store: StoreFactory) -> None:
    name = lease_name()
    first_store, second_store = make_store(), make_store()  # two gateways on one store
    first = first_store.lease(name, "gateway-a", duration_s=10)
    second = second_store.lease(name, "gateway-b", duration_s=10)
    now = time.time()

    assert first.acquire(now) and first.acquire(now + 5)  # taken, then renewed
    assert not second.acquire(now + 5)
    assert second.holder_now(now + 5) == "gateway-a"
    assert second.acquire(now + 16)  # the first one stopped renewing: the lease is free after 10 s
    assert not first.acquire(now + 17)


def test_a_released_lease_is_free_at_once(make_store: StoreFactory) -> None:
    name = lease_name()
    first = make_store().lease(name, "gateway-a", duration_s=60)
    second = make_store().lease(name, "gateway-b", duration_s=60)

    assert first.acquire()
    first.release()

    assert second.acquire()


def test_racing_holders_get_one_lease(make_store: StoreFactory) -> None:
    name = lease_name()
    leases = [make_store().lease(name, f"gateway-{i}", duration_s=60) for i in range(6)]
    now = time.time()

    with ThreadPoolExecutor(6) as pool:
        won = list(pool.map(lambda lease: lease.acquire(now), leases))

    assert won.count(True) == 1
