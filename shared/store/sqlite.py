"""Embedded job store: SQLite in WAL mode, safe for a gateway and several worker processes."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shared.errors import CasMismatch, DocumentExists, DocumentMissing, StoreUnavailable
from shared.store.base import Cas, Found, JobStore, ManyFound

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key        TEXT PRIMARY KEY,
    value      BLOB NOT NULL,
    cas        INTEGER NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS kv_expires_at ON kv (expires_at);
"""


class SqliteStore(JobStore):
    """Key-value rows with an integer CAS and an absolute expiry time.

    Each thread gets its own connection (sqlite3 connections must not be shared); WAL lets
    readers run beside the one writer, and busy_timeout makes concurrent writers queue
    instead of failing with "database is locked".
    """

    def __init__(self, path: str, ttl_s: int, busy_timeout_ms: int = 10_000) -> None:
        super().__init__(ttl_s)
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL mode
        # SQLite built with SECURE_DELETE (Debian's is) zeroes every deleted page: an ended job's image (150 KB)
        # then cost the worker 0.46 CPU ms to delete. FAST zeroes only what costs no extra I/O.
        conn.execute("PRAGMA secure_delete=FAST")
        conn.execute(f"PRAGMA busy_timeout={self.busy_timeout_ms}")
        return conn

    @property
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, params)
        except sqlite3.OperationalError as e:
            raise StoreUnavailable(f"SQLite store {self.path}: {e}") from e

    def _insert_raw(self, key: str, value: bytes, ttl_s: int) -> None:
        now = time.time()
        # An expired row may still be there until the next sweep: it does not block an insert, and
        # the row's CAS moves on so that no one holding the expired document's CAS can replace it.
        # One statement, not a DELETE and an INSERT: a new job inserts two rows.
        inserted = self._execute(
            "INSERT INTO kv (key, value, cas, expires_at) VALUES (?, ?, 1, ?) ON CONFLICT (key) DO UPDATE"
            " SET value = excluded.value, cas = kv.cas + 1, expires_at = excluded.expires_at"
            " WHERE kv.expires_at <= ?",
            (key, value, now + ttl_s, now),
        ).rowcount
        if not inserted:
            raise DocumentExists(key)

    def _get_raw(self, key: str) -> tuple[bytes, Cas] | None:
        row = self._execute(
            "SELECT value, cas FROM kv WHERE key = ? AND expires_at > ?", (key, time.time())
        ).fetchone()
        return None if row is None else (row[0], row[1])

    def _insert(self, key: str, value: dict[str, Any], ttl_s: int) -> None:
        self._insert_raw(key, json.dumps(value).encode(), ttl_s)

    def _get(self, key: str) -> tuple[dict[str, Any], Cas] | None:
        found = self._get_raw(key)
        return None if found is None else (json.loads(found[0]), found[1])

    def _replace(self, key: str, value: dict[str, Any], cas: Cas) -> None:
        cursor = self._execute(
            "UPDATE kv SET value = ?, cas = cas + 1 WHERE key = ? AND cas = ? AND expires_at > ?",
            (json.dumps(value).encode(), key, cas, time.time()),
        )
        if cursor.rowcount == 1:
            return
        if self._get_raw(key) is None:
            raise DocumentMissing(key)
        raise CasMismatch(key)

    @contextlib.contextmanager
    def _one_write(self) -> Iterator[None]:
        """One IMMEDIATE transaction (concurrent writers queue for it), or the one already open."""
        if self._conn.in_transaction:
            yield
            return
        self._execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.rollback()
            self.tenant_jobs.forget_listed_minutes()  # a minute it listed in the listing may be undone too
            raise
        self._execute("COMMIT")

    def _append_to(self, key: str, field: str, items: list[Any], expires_at_s: float) -> None:
        """Read and write back in one transaction: concurrent appenders queue for it."""
        with self._one_write():
            found = self._get_raw(key)
            if found is None:
                raise DocumentMissing(key)
            value = json.loads(found[0])
            value[field] = [*value[field], *items]
            self._execute("UPDATE kv SET value = ?, cas = cas + 1, expires_at = ? WHERE key = ?",
                          (json.dumps(value).encode(), expires_at_s, key))

    def _remove(self, key: str) -> None:
        self._execute("DELETE FROM kv WHERE key = ?", (key,))

    def _get_raw_many(self, keys: list[str]) -> dict[str, tuple[bytes, Cas] | None]:
        found: dict[str, tuple[bytes, Cas] | None] = dict.fromkeys(keys)
        for chunk in _chunks(keys):
            rows = self._execute(
                f"SELECT key, value, cas FROM kv WHERE key IN ({_marks(chunk)}) AND expires_at > ?",
                (*chunk, time.time()),
            ).fetchall()
            found |= {key: (value, cas) for key, value, cas in rows}
        return found

    def _get_many(self, keys: list[str]) -> ManyFound:
        return {key: None if found is None else (json.loads(found[0]), found[1])
                for key, found in self._get_raw_many(keys).items()}

    def _replace_many(self, writes: dict[str, Found]) -> dict[str, Cas | Exception]:
        """One IMMEDIATE transaction: every key's CAS is checked and written, or (StoreUnavailable) none."""
        outcomes: dict[str, Cas | Exception] = {}
        with self._one_write():
            now = time.time()
            for key, (value, cas) in writes.items():
                cursor = self._execute(
                    "UPDATE kv SET value = ?, cas = cas + 1 WHERE key = ? AND cas = ? AND expires_at > ?",
                    (json.dumps(value).encode(), key, cas, now),
                )
                if cursor.rowcount == 1:
                    outcomes[key] = cas + 1
                else:
                    outcomes[key] = CasMismatch(key) if self._get_raw(key) is not None else DocumentMissing(key)
        return outcomes

    def _get_binary_many(self, keys: list[str]) -> dict[str, bytes | Exception | None]:
        return {key: None if found is None else bytes(found[0]) for key, found in self._get_raw_many(keys).items()}

    def _remove_many(self, keys: list[str]) -> None:
        for chunk in _chunks(keys):
            self._execute(f"DELETE FROM kv WHERE key IN ({_marks(chunk)})", tuple(chunk))

    def _insert_binary(self, key: str, data: bytes, ttl_s: int) -> None:
        self._insert_raw(key, data, ttl_s)

    def _get_binary(self, key: str) -> bytes | None:
        found = self._get_raw(key)
        return None if found is None else bytes(found[0])

    def ping(self) -> None:
        self._execute("SELECT 1").fetchone()

    def sweep_expired(self) -> int:
        return self._execute("DELETE FROM kv WHERE expires_at <= ?", (time.time(),)).rowcount

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _chunks(keys: list[str], size: int = 500) -> list[list[str]]:
    """Within SQLite's limit on the parameters of one statement."""
    return [keys[start:start + size] for start in range(0, len(keys), size)]


def _marks(keys: list[str]) -> str:
    return ", ".join("?" * len(keys))
