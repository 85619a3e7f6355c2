"""What every job store must do, run against each of them (SQLite, and Couchbase over the wire)."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from shared.errors import (
    BatchNotFound,
    CasMismatch,
    DocumentExists,
    IdempotencyConflict,
    IllegalTransition,
    JobNotFound,
    StoreUnavailable,
)
from shared.jobs import JobDoc, JobStatus, new_job, public_view, status_of, transition
from shared.lifecycle import JobLifecycle
from shared.store import Idempotency, JobStore
from shared.store.base import JobQuery, Written
from shared.store.open_jobs import SHARDS as OPEN_SHARDS
from shared.store.tenant_jobs import SHARDS as LISTING_SHARDS
from tests.contract.conftest import StoreFactory
from tests.support.models import MOBILENET_V2
from tests.support.publishers import RecordingPublisher

IMAGE = b"\x89PNG not really, but bytes are bytes"


def a_job(tenant: str = "tenant-a", batch_id: str | None = None) -> JobDoc:
    info = {"content_type": "image/png", "bytes": len(IMAGE), "sha256": "0" * 64, "width": 8, "height": 8}
    return new_job(model=MOBILENET_V2, tenant=tenant, input_info=info, top_k=3, batch_id=batch_id)


def created(store: JobStore, tenant: str = "tenant-a") -> JobDoc:
    doc, was_created = store.create_job(a_job(tenant), IMAGE)
    assert was_created
    return doc




# ---- create and read ---------------------------------------------------------------------
def test_a_created_job_reads_back_with_its_image(store: JobStore) -> None:
    job = a_job()

    doc, was_created = store.create_job(job, IMAGE)

    assert was_created and doc["id"] == job["id"]
    assert public_view(store.get_job(job["id"])) == job
    assert public_view(store.get_job(job["id"], tenant="tenant-a")) == job
    assert store.get_image(job["id"]) == IMAGE


def test_a_batch_of_jobs_is_stored_listed_and_open_in_one_call(store: JobStore,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """create_jobs writes each index document the batch shares once: every member still reads back
    with its image, is listed once and is known to recovery as open."""
    jobs = [a_job(batch_id="b-many") for _ in range(24)]  # more than the listing's and the open index's shards
    images = [IMAGE + bytes([index]) for index in range(len(jobs))]
    appends: list[str] = []
    real_append = store._append
    monkeypatch.setattr(store, "_append", lambda key, *args, **kwargs: (appends.append(key),
                                                                        real_append(key, *args, **kwargs)))

    store.create_jobs(list(zip(jobs, images, strict=True)))

    index_documents = OPEN_SHARDS + LISTING_SHARDS + 1  # and the day's list of minutes
    assert len(appends) == len(set(appends)) <= 2 * index_documents  # twice if a minute ended meanwhile

    for job, image in zip(jobs, images, strict=True):
        assert public_view(store.get_job(job["id"], tenant="tenant-a")) == job
        assert store.get_image(job["id"]) == image
    page, _ = store.list_jobs("tenant-a", JobQuery(limit=100, batch_id="b-many"), now_ms=int(time.time() * 1000))
    assert sorted(doc["id"] for doc in page) == sorted(job["id"] for job in jobs)
    open_ids = [job_id for entry in store.open_jobs.entries() for job_id in entry.job_ids]
    assert all(open_ids.count(job["id"]) == 1 for job in jobs)


def test_a_batch_the_store_fails_part_way_keeps_none_of_its_members(store: JobStore,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a transaction too: the members' documents are written, and the store fails as they
    are added to the open index. Kept, they would not be open to recovery, and would wait as
    queued until they expired."""
    jobs = [a_job(batch_id="b-failing") for _ in range(5)]

    def the_store_stops_answering(job_ids: list[str], at_s: float | None = None) -> None:
        assert all(store.get_job(job_id) for job_id in job_ids)  # the documents are there (in SQLite's transaction)
        raise StoreUnavailable("the cluster stopped answering")

    monkeypatch.setattr(store.open_jobs, "add", the_store_stops_answering)
    with pytest.raises(StoreUnavailable):
        store.create_jobs([(job, IMAGE) for job in jobs])

    for job in jobs:
        with pytest.raises(JobNotFound):
            store.get_job(job["id"])
        assert store.get_image(job["id"]) is None
    page, _ = store.list_jobs("tenant-a", JobQuery(limit=100, batch_id="b-failing"), now_ms=int(time.time() * 1000))
    assert page == []


def test_an_unknown_job_is_not_found(store: JobStore) -> None:
    with pytest.raises(JobNotFound):
        store.get_job("no-such-job")
    with pytest.raises(JobNotFound):
        store.transition("no-such-job", JobStatus.RUNNING)
    assert store.get_image("no-such-job") is None


def test_another_tenants_job_is_not_found(store: JobStore) -> None:
    job = created(store, tenant="tenant-a")

    with pytest.raises(JobNotFound):
        store.get_job(job["id"], tenant="tenant-b")


def test_a_discarded_job_is_gone_with_its_image(store: JobStore) -> None:
    job = created(store)

    store.discard_job(job["id"])

    with pytest.raises(JobNotFound):
        store.get_job(job["id"])
    assert store.get_image(job["id"]) is None


# ---- the state machine -------------------------------------------------------------------
def test_transitions_follow_the_state_machine_and_keep_a_history(store: JobStore) -> None:
    job = created(store)

    running = store.transition(job["id"], JobStatus.RUNNING)
    done = store.transition(job["id"], JobStatus.SUCCEEDED, result={"predictions": []})

    assert running["attempts"] == 1 and running["started_at"]
    stored = store.get_job(job["id"])
    assert stored == done
    assert stored["status"] == "succeeded" and stored["finished_at"] and stored["result"] == {"predictions": []}
    assert [(h["seq"], h["status"]) for h in stored["history"]] == [(1, "queued"), (2, "running"), (3, "succeeded")]


def test_a_redelivered_job_runs_again_and_counts_the_attempt(store: JobStore) -> None:
    job = created(store)
    store.transition(job["id"], JobStatus.RUNNING)

    again = store.transition(job["id"], JobStatus.RUNNING)

    assert again["attempts"] == 2 and len(again["history"]) == 3


@pytest.mark.parametrize(
    ("path", "refused"),
    [
        ([], JobStatus.SUCCEEDED),
        ([], JobStatus.FAILED),
        ([JobStatus.RUNNING], JobStatus.CANCELLED),
        ([JobStatus.RUNNING], JobStatus.QUEUED),
        ([JobStatus.CANCELLED], JobStatus.RUNNING),
        ([JobStatus.RUNNING, JobStatus.SUCCEEDED], JobStatus.FAILED),
        ([JobStatus.RUNNING, JobStatus.FAILED], JobStatus.RUNNING),
    ],
)
def test_illegal_transitions_are_refused_and_change_nothing(
    store: JobStore, path: list[JobStatus], refused: JobStatus
) -> None:
    job = created(store)
    for status in path:
        store.transition(job["id"], status)
    before = store.get_job(job["id"])

    with pytest.raises(IllegalTransition):
        store.transition(job["id"], refused)

    assert store.get_job(job["id"]) == before


# ---- concurrent writers ------------------------------------------------------------------
def race(make_store: StoreFactory, job_id: str, mutations: list[Any]) -> list[Any]:
    """Run each mutation through its own store (its own connection), all reading the same
    version first, so every writer but one meets a CAS conflict. Returns results or errors."""
    barrier = threading.Barrier(len(mutations), timeout=10)
    stores = [make_store() for _ in mutations]
    calls: list[None] = []

    def contend(store: JobStore, mutate: Any) -> Any:
        first_read = True

        def synchronised(doc: JobDoc) -> JobDoc | None:
            nonlocal first_read
            calls.append(None)
            if first_read:
                first_read = False
                barrier.wait()  # everyone holds the same version before anyone writes
            return mutate(doc)  # type: ignore[no-any-return]

        try:
            return store.update(job_id, synchronised)[0]
        except Exception as e:
            return e

    with ThreadPoolExecutor(len(mutations)) as pool:
        outcomes = list(pool.map(contend, stores, mutations))
    # Each loser re-read and decided again at least once: the race really happened.
    assert len(calls) >= 2 * len(mutations) - 1, f"{len(calls)} decisions for {len(mutations)} writers"
    return outcomes


def test_two_workers_racing_on_a_transition_exactly_one_wins(store: JobStore, make_store: StoreFactory) -> None:
    job = created(store)

    outcomes = race(
        make_store,
        job["id"],
        [lambda doc: transition(doc, JobStatus.RUNNING), lambda doc: transition(doc, JobStatus.CANCELLED)],
    )

    errors = [outcome for outcome in outcomes if isinstance(outcome, Exception)]
    assert len(errors) == 1 and isinstance(errors[0], IllegalTransition), outcomes
    final = store.get_job(job["id"])
    assert final["status"] in ("running", "cancelled")
    assert [h["status"] for h in final["history"]] == ["queued", final["status"]]


def test_racing_writers_lose_no_change_and_apply_none_twice(store: JobStore, make_store: StoreFactory) -> None:
    job = created(store)

    def increment(doc: JobDoc) -> JobDoc:
        return {**doc, "counter": doc.get("counter", 0) + 1}

    outcomes = race(make_store, job["id"], [increment, increment, increment])

    assert not [outcome for outcome in outcomes if isinstance(outcome, Exception)], outcomes
    assert store.get_job(job["id"])["counter"] == 3


def test_a_write_whose_reply_was_lost_is_not_applied_twice(store: JobStore) -> None:
    """The store times out after the write reached it (ambiguous): the retry must see that
    the job already moved on, not count a second attempt."""
    job = created(store)
    replace_changes = store._replace_changes
    lost_replies = []

    def write_then_lose_the_reply(*args: Any) -> None:
        replace_changes(*args)
        if not lost_replies:
            lost_replies.append(args[0])
            raise StoreUnavailable("reply lost (simulated ambiguous timeout)")

    store._replace_changes = write_then_lose_the_reply  # type: ignore[method-assign]
    publisher = RecordingPublisher()
    lifecycle = JobLifecycle(store, publisher, max_attempts=3, store_retry_s=10)  # type: ignore[arg-type]

    doc = lifecycle.begin(job["id"])

    assert lost_replies, "the fault was never injected"
    assert doc is not None and doc["status"] == "running" and doc["attempts"] == 1
    assert store.get_job(job["id"])["history"][-1]["seq"] == 2
    assert [event["status"] for event in publisher.published] == ["running"]


# ---- a batch's jobs at once (the worker) --------------------------------------------------
def test_update_many_writes_each_job_under_its_own_cas(store: JobStore, make_store: StoreFactory) -> None:
    jobs = [created(store)["id"] for _ in range(3)]
    done = created(store)["id"]
    store.transition(done, JobStatus.CANCELLED)

    begun = store.update_many({job_id: lambda doc: None if status_of(doc).terminal else
                               transition(doc, JobStatus.RUNNING) for job_id in [*jobs, done, "no-such-job"]})

    assert [(begun[job_id].doc["status"], begun[job_id].changed) for job_id in jobs] == [("running", True)] * 3
    assert [store.get_job(job_id)["status"] for job_id in jobs] == ["running"] * 3
    assert begun[done] == Written(store.get_job(done), False, begun[done].cas)
    assert isinstance(begun["no-such-job"], JobNotFound)
    # Another writer changes one job: a write from the CAS it had is refused for that job alone.
    make_store().update(jobs[1], lambda doc: {**doc, "touched": True})
    known = {job_id: begun[job_id] for job_id in jobs}
    ended = store.update_many({job_id: lambda doc: transition(doc, JobStatus.SUCCEEDED, result={"predictions": []})
                               for job_id in jobs}, known)

    assert isinstance(ended[jobs[1]], CasMismatch)
    assert [store.get_job(job_id)["status"] for job_id in jobs] == ["succeeded", "running", "succeeded"]
    assert store.get_job(jobs[1])["touched"] is True
    assert [store.get_image(job_id) for job_id in jobs] == [None, IMAGE, None]  # images go once a job ends


def test_a_batchs_images_read_at_once(store: JobStore) -> None:
    job, gone = created(store)["id"], created(store)["id"]
    store.transition(gone, JobStatus.CANCELLED)

    assert store.get_images([job, gone, "no-such-job"]) == {job: IMAGE, gone: None, "no-such-job": None}


def test_a_batch_begun_and_ended_together_announces_each_change_once(store: JobStore) -> None:
    jobs = [created(store)["id"] for _ in range(4)]
    publisher = RecordingPublisher()
    lifecycle = JobLifecycle(store, publisher, max_attempts=3)  # type: ignore[arg-type]
    lifecycle.begin(jobs[3])  # its worker was lost: begin_fresh leaves it to run alone

    begun = lifecycle.begin_fresh(jobs, runs_here=lambda doc: doc["id"] != jobs[2])
    results = {job_id: {"predictions": [], "batch_size": 2, "inference_ms": 1.0} for job_id in jobs[:2]}
    ended = lifecycle.succeed_many(results, model={"name": "mobilenet_v2", "version": "1"},
                                   known={job_id: begun[job_id] for job_id in jobs[:2]})  # type: ignore[misc]

    assert [begun[job_id].changed for job_id in jobs] == [True, True, False, False]  # type: ignore[union-attr]
    assert [ended[job_id].doc["status"] for job_id in jobs[:2]] == ["succeeded"] * 2  # type: ignore[union-attr]
    assert [store.get_job(job_id)["status"] for job_id in jobs] == ["succeeded", "succeeded", "queued", "running"]
    assert [(doc["id"], doc["status"]) for doc in publisher.published] == [
        (jobs[3], "running"), (jobs[0], "running"), (jobs[1], "running"), (jobs[0], "succeeded"),
        (jobs[1], "succeeded")]


def test_a_batch_write_whose_reply_was_lost_is_not_applied_twice(store: JobStore) -> None:
    jobs = [created(store)["id"] for _ in range(3)]
    replace_many = store._replace_many
    lost_replies = []

    def write_then_lose_the_reply(writes: dict[str, Any]) -> Any:
        outcomes = replace_many(writes)
        if not lost_replies:
            lost_replies.append(list(writes))
            raise StoreUnavailable("reply lost (simulated ambiguous timeout)")
        return outcomes

    store._replace_many = write_then_lose_the_reply  # type: ignore[method-assign]
    publisher = RecordingPublisher()
    lifecycle = JobLifecycle(store, publisher, max_attempts=3, store_retry_s=10)  # type: ignore[arg-type]

    begun = lifecycle.begin_fresh(jobs, runs_here=lambda doc: True)

    assert lost_replies, "the fault was never injected"
    assert [begun[job_id].changed for job_id in jobs] == [True] * 3  # type: ignore[union-attr]
    assert [(doc["attempts"], doc["history"][-1]["seq"]) for doc in map(store.get_job, jobs)] == [(1, 2)] * 3
    assert [(doc["id"], doc["status"]) for doc in publisher.published] == [(job_id, "running") for job_id in jobs]


# ---- expiry ------------------------------------------------------------------------------
def wait_until_expired(store: JobStore, job_id: str, timeout_s: float) -> float:
    """Seconds until the job was gone; fails if it outlives `timeout_s`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            store.get_job(job_id)
        except JobNotFound:
            return time.monotonic() - started
        time.sleep(0.1)
    pytest.fail(f"job {job_id} still there after {timeout_s} s")


def test_documents_expire_after_their_ttl(make_store: StoreFactory) -> None:
    store = make_store(ttl_s=1)
    batch_job = a_job(batch_id="b-ttl")
    store.create_job(batch_job, IMAGE)
    store.create_batch({"id": "b-ttl-" + batch_job["id"], "tenant": "tenant-a", "job_ids": [batch_job["id"]]})

    wait_until_expired(store, batch_job["id"], timeout_s=4)

    assert store.get_image(batch_job["id"]) is None
    with pytest.raises(BatchNotFound):
        store.get_batch("b-ttl-" + batch_job["id"])


def test_an_expired_document_makes_way_for_a_new_one_its_cas_cannot_replace(make_store: StoreFactory) -> None:
    """An expired document gives way to an insert (SQLite keeps its row until the sweep, and the
    insert takes that row over), and the expired CAS cannot replace the new document."""
    store = make_store(ttl_s=1)
    key = f"contract-expiry::{uuid.uuid4()}"
    store._insert(key, {"generation": 1}, ttl_s=1)
    found = store._get(key)
    assert found is not None
    _, expired_cas = found
    with pytest.raises(DocumentExists):
        store._insert(key, {"generation": 0}, ttl_s=60)  # still live: the first writer keeps it

    deadline = time.monotonic() + 4
    while store._get(key) is not None:
        assert time.monotonic() < deadline, "the document outlived its TTL"
        time.sleep(0.1)
    store._insert(key, {"generation": 2}, ttl_s=60)

    with pytest.raises(CasMismatch):
        store._replace(key, {"generation": "stale"}, expired_cas)
    found = store._get(key)
    assert found is not None and found[0]["generation"] == 2


def test_status_changes_do_not_extend_the_ttl(make_store: StoreFactory) -> None:
    store = make_store(ttl_s=4)
    job = created(store)
    created_at = time.monotonic()
    time.sleep(2)

    store.transition(job["id"], JobStatus.RUNNING)
    store.update(job["id"], lambda doc: {**doc, "touched": True})

    lived_s = time.monotonic() - created_at + wait_until_expired(store, job["id"], timeout_s=5)
    # A reset TTL would keep it until 2 + 4 = 6 s. Couchbase counts whole seconds, so it may
    # end the job up to a second early (never before the update at 2 s) or a little late.
    assert lived_s < 5, f"the job lived {lived_s:.1f} s with a TTL of 4 s"


# ---- images ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        [JobStatus.RUNNING, JobStatus.SUCCEEDED],
        [JobStatus.RUNNING, JobStatus.FAILED],
        [JobStatus.CANCELLED],
    ],
)
def test_the_image_stays_while_the_job_is_open_and_goes_when_it_ends(
    store: JobStore, path: list[JobStatus]
) -> None:
    job = created(store)
    for status in path:
        assert store.get_image(job["id"]) == IMAGE
        store.transition(job["id"], status)

    assert store.get_image(job["id"]) is None


# ---- idempotency -------------------------------------------------------------------------
def test_the_same_idempotency_key_and_body_give_the_first_job(store: JobStore) -> None:
    key = Idempotency("key-1", fingerprint="body-a")
    first, first_created = store.create_job(a_job(), IMAGE, key)
    second_attempt = a_job()

    again, again_created = store.create_job(second_attempt, IMAGE, key)

    assert first_created and not again_created
    assert again["id"] == first["id"]
    with pytest.raises(JobNotFound):
        store.get_job(second_attempt["id"])
    assert store.get_image(second_attempt["id"]) is None


def test_the_same_idempotency_key_with_another_body_is_a_conflict(store: JobStore) -> None:
    store.create_job(a_job(), IMAGE, Idempotency("key-2", fingerprint="body-a"))

    with pytest.raises(IdempotencyConflict):
        store.create_job(a_job(), IMAGE, Idempotency("key-2", fingerprint="body-b"))


def test_idempotency_keys_belong_to_their_tenant(store: JobStore) -> None:
    key = Idempotency("key-3", fingerprint="body-a")
    mine, _ = store.create_job(a_job("tenant-a"), IMAGE, key)

    theirs, theirs_created = store.create_job(a_job("tenant-b"), IMAGE, key)

    assert theirs_created and theirs["id"] != mine["id"]


def test_a_claimed_job_needs_enqueueing_until_its_enqueue_is_confirmed(store: JobStore) -> None:
    key = Idempotency("key-4", fingerprint="body-a")
    job, _ = store.create_job(a_job(), IMAGE, key)
    assert store.needs_enqueue(job, key)

    store.confirm_enqueued(job["tenant"], key)
    store.confirm_enqueued(job["tenant"], key)  # twice is fine

    replayed, was_created = store.create_job(a_job(), IMAGE, key)
    assert not was_created and not store.needs_enqueue(replayed, key)


def test_a_running_job_never_needs_enqueueing_again(store: JobStore) -> None:
    key = Idempotency("key-5", fingerprint="body-a")
    job, _ = store.create_job(a_job(), IMAGE, key)
    running = store.transition(job["id"], JobStatus.RUNNING)
    assert not store.needs_enqueue(running, key)


def test_a_released_claim_lets_the_key_create_a_new_job(store: JobStore) -> None:
    key = Idempotency("key-6", fingerprint="body-a")
    first, _ = store.create_job(a_job(), IMAGE, key)
    store.discard_job(first["id"])
    store.release_claim(first["tenant"], key)

    second, was_created = store.create_job(a_job(), IMAGE, key)

    assert was_created and second["id"] != first["id"]


# ---- batches -----------------------------------------------------------------------------
def test_a_batch_lists_its_jobs_in_order(store: JobStore) -> None:
    jobs = [a_job(batch_id="batch-x") for _ in range(3)]
    for job in jobs:
        store.create_job(job, IMAGE)
    batch_id = "batch-" + jobs[0]["id"]
    batch = {"id": batch_id, "type": "batch", "tenant": "tenant-a", "job_ids": [j["id"] for j in jobs]}

    store.create_batch(batch)
    store.discard_job(jobs[1]["id"])

    assert public_view(store.get_batch(batch_id, tenant="tenant-a")) == batch
    assert [doc["id"] for doc in store.get_jobs(batch["job_ids"])] == [jobs[0]["id"], jobs[2]["id"]]
    with pytest.raises(BatchNotFound):
        store.get_batch(batch_id, tenant="tenant-b")


def test_jobs_are_read_by_id_in_one_call_and_a_gone_one_is_none(store: JobStore) -> None:
    jobs = [a_job() for _ in range(3)]
    for job in jobs:
        store.create_job(job, IMAGE)
    store.discard_job(jobs[1]["id"])

    found = store.get_jobs_by_id([job["id"] for job in jobs])

    assert found == {jobs[0]["id"]: store.get_job(jobs[0]["id"]), jobs[1]["id"]: None,
                     jobs[2]["id"]: store.get_job(jobs[2]["id"])}
    assert store.get_jobs_by_id([]) == {} and store.get_jobs([]) == []


def test_ping_answers(store: JobStore) -> None:
    store.ping()
