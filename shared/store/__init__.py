"""Choose the job store from settings: embedded SQLite by default, Couchbase in production."""

from __future__ import annotations

import sqlite3

from shared.config import Settings
from shared.errors import StartupError, StoreUnavailable
from shared.store.base import Idempotency, JobStore

__all__ = ["Idempotency", "JobStore", "open_store"]


def open_store(settings: Settings) -> JobStore:
    """The configured store, connected; a StartupError when it cannot be opened or never answers."""
    try:
        if settings.store_kind == "couchbase":
            from shared.store.couchbase import CouchbaseStore  # imported only when configured

            return CouchbaseStore.from_settings(settings)
        from shared.store.sqlite import SqliteStore

        return SqliteStore(settings.sqlite_path, ttl_s=settings.job_ttl_s)
    except StoreUnavailable as e:
        raise StartupError(f"the job store at ASYNCINFER_STORE={settings.store} did not answer: {e}") from e
    except (OSError, sqlite3.Error) as e:
        raise StartupError(f"ASYNCINFER_STORE={settings.store}: cannot open the SQLite file: {e}") from e
