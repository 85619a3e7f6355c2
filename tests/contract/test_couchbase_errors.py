"""Couchbase failures as the rest of the system sees them: StoreUnavailable (503 at the gateway),
StoreMisconfigured naming the setting, and ambiguous writes settled without doubling them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from couchbase.exceptions import AmbiguousTimeoutException, AuthenticationException
from couchbase.options import InsertOptions

from cli.pipeline import LocalPipeline
from cli.processes import free_port
from shared.errors import DocumentExists, StartupError, StoreMisconfigured, StoreUnavailable
from shared.jobs import new_job
from shared.store.base import image_key, job_key
from shared.store.couchbase import CouchbaseStore
from tests.contract.conftest import couchbase_settings
from tests.support.couchbase_mock import CouchbaseMock, couchbase_mock
from tests.support.http import post_job
from tests.support.models import MOBILENET_V2
from tests.support.pipeline import fresh_redis_database, pipeline_env

pytestmark = pytest.mark.integration

# Short, so that a frozen cluster is noticed in a test-friendly time.
KV_TIMEOUT_S = 0.5


def a_job() -> dict[str, Any]:
    return new_job(model=MOBILENET_V2, tenant="t", input_info={"content_type": "image/png", "bytes": 3}, top_k=1)


@pytest.fixture
def own_mock() -> Iterator[CouchbaseMock]:
    """A mock of this test's own: it gets frozen or stopped."""
    with couchbase_mock() as mock:
        yield mock


@pytest.fixture
def store(own_mock: CouchbaseMock) -> Iterator[CouchbaseStore]:
    store = CouchbaseStore.from_settings(
        couchbase_settings(own_mock, couchbase_kv_timeout_s=KV_TIMEOUT_S), wait_s=0
    )
    yield store
    store.close()


# ---- an unavailable cluster --------------------------------------------------------------
def test_a_frozen_cluster_is_unavailable_and_recovers(own_mock: CouchbaseMock, store: CouchbaseStore) -> None:
    job, _ = store.create_job(a_job(), b"img")

    with own_mock.frozen():
        started = time.monotonic()
        for operation in (
            lambda: store.get_job(job["id"]),
            lambda: store.create_job(a_job(), b"img"),
            lambda: store.update(job["id"], lambda doc: {**doc, "touched": True}),
        ):
            with pytest.raises(StoreUnavailable):
                operation()
        with pytest.raises(StoreUnavailable, match=r"kv .*timeout"):
            store.ping()
        assert time.monotonic() - started < 10 * KV_TIMEOUT_S

    deadline = time.monotonic() + 10
    while True:
        try:
            assert store.get_job(job["id"])["id"] == job["id"]
            break
        except StoreUnavailable:
            assert time.monotonic() < deadline, "the store did not recover after the cluster did"
            time.sleep(0.2)
    store.ping()


def test_a_stopped_cluster_is_unavailable(own_mock: CouchbaseMock, store: CouchbaseStore) -> None:
    job, _ = store.create_job(a_job(), b"img")

    own_mock.stop()

    with pytest.raises(StoreUnavailable):
        store.get_job(job["id"])
    with pytest.raises(StoreUnavailable):
        store.create_job(a_job(), b"img")
    with pytest.raises(StoreUnavailable):
        store.ping()


@pytest.fixture
def gateway(own_mock: CouchbaseMock, redis_url: str, tmp_path: Path) -> Iterator[LocalPipeline]:
    env = own_mock.app_env() | {"ASYNCINFER_COUCHBASE_KV_TIMEOUT_S": str(KV_TIMEOUT_S)}
    pipeline = LocalPipeline(env=pipeline_env(fresh_redis_database(redis_url), tmp_path, **env), workdir=tmp_path, port=free_port())
    try:
        pipeline.start_gateway()
        yield pipeline
    finally:
        pipeline.stop()


def test_the_gateway_answers_503_with_retry_after(own_mock: CouchbaseMock, gateway: LocalPipeline) -> None:
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        submitted = post_job(client, _png(), "image/png")
        assert submitted.status_code == 202, submitted.text
        assert client.get("/readyz").status_code == 200

        with own_mock.frozen():
            read = client.get(f"/v1/jobs/{submitted.json()['id']}")
            submit = post_job(client, _png(), "image/png")
            ready = client.get("/readyz")

    for response in (read, submit):
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "5"
        assert response.headers["content-type"] == "application/problem+json"
    assert ready.status_code == 503 and ready.headers["x-failing-dependencies"] == "store"
    assert "timeout" in ready.json()["detail"]


def test_an_unreachable_cluster_at_start_up(own_mock: CouchbaseMock) -> None:
    settings = couchbase_settings(own_mock, couchbase_connect_timeout_s=1)
    own_mock.stop()

    with pytest.raises(StoreUnavailable, match="did not answer"):
        CouchbaseStore.from_settings(settings, wait_s=0)


# ---- settings the cluster refuses --------------------------------------------------------
def test_a_missing_bucket_names_its_setting(shared_couchbase_mock: CouchbaseMock) -> None:
    settings = couchbase_settings(shared_couchbase_mock, couchbase_bucket="no-such-bucket")

    with pytest.raises(StoreMisconfigured, match="ASYNCINFER_COUCHBASE_BUCKET"):
        CouchbaseStore.from_settings(settings, wait_s=0)


def test_refused_credentials_name_their_settings(
    shared_couchbase_mock: CouchbaseMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CouchbaseMock accepts any credentials, so the refusal is the one simulated edge."""

    def refuse(*_: Any) -> None:
        raise AuthenticationException(message="authentication failure")

    monkeypatch.setattr("shared.store.couchbase.Cluster", refuse)

    with pytest.raises(StoreMisconfigured) as refused:
        CouchbaseStore.from_settings(couchbase_settings(shared_couchbase_mock), wait_s=0)

    assert "ASYNCINFER_COUCHBASE_USERNAME" in str(refused.value)
    assert "ASYNCINFER_COUCHBASE_PASSWORD" in str(refused.value)
    assert isinstance(refused.value, StartupError)  # the CLI reports it in one line and exits with status 2


# ---- ambiguous inserts -------------------------------------------------------------------
class LostReplies:
    """The collection, except that the first insert of a key starting with `prefix` times
    out ambiguously, in one of the ways a real network can make it."""

    def __init__(self, real: Any, prefix: str, how: str) -> None:
        self.real, self.prefix, self.how = real, prefix, how
        self.injected = False
        self.late: tuple[Any, ...] | None = None
        self.multi_inserts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def insert(self, key: str, value: Any, *options: Any) -> Any:
        if self.late is not None:  # the first try lands now, just before the retry
            self.real.insert(*self.late)
            self.late = None
        if self.injected or not key.startswith(self.prefix):
            return self.real.insert(key, value, *options)
        self.injected = True
        if self.how == "landed":  # the insert happened; its reply was lost
            self.real.insert(key, value, *options)
        elif self.how == "landed-late":  # it happens only after the client has given up
            self.late = (key, value, *options)
        elif self.how == "someone-else":  # another writer took the key meanwhile
            other = b"other" if isinstance(value, bytes) else {"someone": "else"}
            self.real.insert(key, other, *options)
        raise AmbiguousTimeoutException(message="simulated: no reply")

    def insert_multi(self, values: dict[str, Any], options: Any) -> Any:
        """The real multi-key insert, but for the first key starting with `prefix`, which goes as
        the lossy insert above and comes back among the result's exceptions."""
        self.multi_inserts += 1
        lossy = None if self.injected else next((key for key in values if key.startswith(self.prefix)), None)
        if lossy is None:
            return self.real.insert_multi(values, options)
        written = self.real.insert_multi({key: value for key, value in values.items() if key != lossy}, options)
        try:
            self.insert(lossy, values[lossy], InsertOptions(expiry=options["expiry"],
                                                            transcoder=options.get("transcoder")))
        except AmbiguousTimeoutException as lost:
            return SimpleNamespace(exceptions={**written.exceptions, lossy: lost})
        raise AssertionError("the lossy insert always times out")


@pytest.mark.parametrize("prefix", ["job::", "image::"])
@pytest.mark.parametrize("how", ["landed", "lost", "landed-late"])
def test_an_ambiguous_insert_in_a_batch_counts_once(
    shared_couchbase_mock: CouchbaseMock, prefix: str, how: str
) -> None:
    """create_jobs sends a batch's documents (and images) in one insert_multi; a member whose reply
    was lost is settled as a lone insert is, and every member is stored once."""
    store = CouchbaseStore.from_settings(couchbase_settings(shared_couchbase_mock), wait_s=0)
    lossy = LostReplies(store.collection, prefix, how)
    store.collection = lossy  # type: ignore[assignment]
    jobs = [(a_job(), f"img-{index}".encode()) for index in range(4)]

    store.create_jobs(jobs)

    assert lossy.injected and lossy.multi_inserts == 2  # the images, then the documents
    for job, image in jobs:
        assert store.get_job(job["id"])["status"] == "queued"
        assert store.get_image(job["id"]) == image
    open_ids = [job_id for entry in store.open_jobs.entries() for job_id in entry.job_ids]
    assert all(open_ids.count(job["id"]) == 1 for job, _ in jobs)
    store.close()


@pytest.mark.parametrize("prefix", ["job::", "image::", "idem::"])
@pytest.mark.parametrize("how", ["landed", "lost", "landed-late"])
def test_an_ambiguous_insert_counts_once(
    shared_couchbase_mock: CouchbaseMock, prefix: str, how: str
) -> None:
    from shared.store import Idempotency

    store = CouchbaseStore.from_settings(couchbase_settings(shared_couchbase_mock), wait_s=0)
    lossy = LostReplies(store.collection, prefix, how)
    store.collection = lossy  # type: ignore[assignment]
    job = a_job()
    idempotency = Idempotency("key-" + job["id"], fingerprint="f")

    _, was_created = store.create_job(job, b"img", idempotency)
    again, again_created = store.create_job(a_job(), b"img", idempotency)

    assert lossy.injected
    assert was_created and not again_created and again["id"] == job["id"]
    assert store.get_job(job["id"])["status"] == "queued"
    assert store.get_image(job["id"]) == b"img"
    store.close()


@pytest.mark.parametrize("key_of", [job_key, image_key])
def test_an_ambiguous_insert_that_lost_to_another_writer_is_a_conflict(
    shared_couchbase_mock: CouchbaseMock, key_of: Any
) -> None:
    store = CouchbaseStore.from_settings(couchbase_settings(shared_couchbase_mock), wait_s=0)
    key = key_of(a_job()["id"])
    store.collection = LostReplies(store.collection, key, "someone-else")  # type: ignore[assignment]

    with pytest.raises(DocumentExists):
        if key_of is job_key:
            store._insert(key, {"mine": True}, ttl_s=60)
        else:
            store._insert_binary(key, b"mine", ttl_s=60)
    store.close()


def _png() -> bytes:
    from tests.support import images

    return images.png_with_alpha()
