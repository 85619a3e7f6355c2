"""The real Couchbase SDK against CouchbaseMock: the round-trip the job store relies on."""

from collections.abc import Iterator
from datetime import timedelta

import pytest
from couchbase.auth import PasswordAuthenticator
from couchbase.cluster import Cluster
from couchbase.collection import Collection
from couchbase.exceptions import (
    CasMismatchException,
    DocumentExistsException,
    DocumentNotFoundException,
)
from couchbase.options import ClusterOptions, ClusterTimeoutOptions, InsertOptions, ReplaceOptions

from tests.support.couchbase_mock import BUCKET, PASSWORD, USERNAME, CouchbaseMock, couchbase_mock

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def mock() -> Iterator[CouchbaseMock]:
    with couchbase_mock() as running:
        yield running


@pytest.fixture
def collection(mock: CouchbaseMock) -> Iterator[Collection]:
    timeouts = ClusterTimeoutOptions(kv_timeout=timedelta(seconds=5))
    cluster = Cluster(
        mock.connstr,
        ClusterOptions(PasswordAuthenticator(USERNAME, PASSWORD), timeout_options=timeouts),
    )
    cluster.wait_until_ready(timedelta(seconds=10))
    yield cluster.bucket(BUCKET).default_collection()
    cluster.close()


def test_insert_get_and_cas_replace(collection: Collection) -> None:
    key = "job::probe-cas"
    collection.insert(key, {"status": "queued"})
    with pytest.raises(DocumentExistsException):
        collection.insert(key, {"status": "queued"})

    read = collection.get(key)
    assert read.content_as[dict] == {"status": "queued"}
    replaced = collection.replace(key, {"status": "running"}, ReplaceOptions(cas=read.cas))
    assert replaced.cas != read.cas

    with pytest.raises(CasMismatchException):
        collection.replace(key, {"status": "failed"}, ReplaceOptions(cas=read.cas))
    assert collection.get(key).content_as[dict] == {"status": "running"}


def test_expiry_follows_the_mock_clock(mock: CouchbaseMock, collection: Collection) -> None:
    key = "job::probe-ttl"
    collection.insert(key, {"status": "queued"}, InsertOptions(expiry=timedelta(seconds=60)))
    mock.time_travel(61)
    try:
        with pytest.raises(DocumentNotFoundException):
            collection.get(key)
    finally:
        mock.time_travel(-61)
