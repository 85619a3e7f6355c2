"""Both job stores behind one fixture: SQLite in a temporary file, Couchbase on CouchbaseMock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.config import Settings
from shared.store import JobStore
from shared.store.couchbase import CouchbaseStore
from shared.store.sqlite import SqliteStore
from tests.support.couchbase_mock import BUCKET, PASSWORD, USERNAME, CouchbaseMock, couchbase_mock

StoreFactory = Callable[..., JobStore]


@pytest.fixture(scope="session")
def shared_couchbase_mock() -> Iterator[CouchbaseMock]:
    """One mock cluster for the session; tests never share keys (job ids are random)."""
    with couchbase_mock() as mock:
        yield mock


def couchbase_settings(mock: CouchbaseMock, **overrides: Any) -> Settings:
    fields = {
        "store": mock.connstr,
        "couchbase_bucket": BUCKET,
        "couchbase_username": USERNAME,
        "couchbase_password": PASSWORD,
    }
    return Settings(**(fields | overrides))


@pytest.fixture(params=["sqlite", pytest.param("couchbase", marks=pytest.mark.integration)])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """`make_store(ttl_s=…)`: a store of the parametrised kind; several share the same data."""
    opened: list[JobStore] = []

    def factory(ttl_s: int = 3600) -> JobStore:
        store: JobStore
        if request.param == "sqlite":
            store = SqliteStore(str(tmp_path / "jobs.db"), ttl_s=ttl_s)
        else:
            mock = request.getfixturevalue("shared_couchbase_mock")
            store = CouchbaseStore.from_settings(couchbase_settings(mock, job_ttl_s=ttl_s), wait_s=0)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def store(make_store: StoreFactory) -> JobStore:
    return make_store()
