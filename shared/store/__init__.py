"""Choose the job store from settings: embedded SQLite by default, Couchbase in production."""

from __future__ import annotations

from shared.config import Settings
from shared.store.base import Idempotency, JobStore

__all__ = ["Idempotency", "JobStore", "open_store"]


def open_store(settings: Settings) -> JobStore:
    if settings.store_kind == "couchbase":
        from shared.store.couchbase import CouchbaseStore  # imported only when configured

        return CouchbaseStore.from_settings(settings)
    from shared.store.sqlite import SqliteStore

    return SqliteStore(settings.sqlite_path, ttl_s=settings.job_ttl_s)
