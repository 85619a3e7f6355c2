"""Each tenant's jobs, newest first, for `GET /v1/jobs`: index documents over the store's own
key-value primitives (no query service: Couchbase's mock and a minimal cluster serve it as SQLite
does).

`jobs-of::<tenant>::<minute>::<shard>` lists entries `<created ms>:<job id>` of the jobs the tenant
created in that minute (shards keep concurrent creators apart); `jobs-of::<tenant>::day::<day>`
lists the minutes of that day that have any. An entry never changes, so a cursor (the last entry a
page returned) pages through one stable order while the jobs' statuses change: a job created later
never shows up on a later page, and none is repeated or skipped. Index documents outlive the jobs
they list by a bucket; a listed job that has expired or was purged is skipped by the reader.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared import constants
from shared.errors import CasMismatch, DocumentMissing
from shared.jobs import JobDoc, parse_rfc3339

if TYPE_CHECKING:
    from shared.store.base import JobStore

MINUTE_MS = 60_000
DAY_MS = 24 * 3600 * 1000
SHARDS = 4


@dataclass(frozen=True, order=True)
class Entry:
    created_ms: int
    job_id: str

    def encode(self) -> str:
        return f"{self.created_ms:013d}:{self.job_id}"

    @classmethod
    def decode(cls, text: str) -> Entry:
        """ValueError when `text` is not an entry (a cursor a client made up)."""
        created, _, job_id = text.partition(":")
        if not job_id or len(created) != 13 or not created.isdigit():
            raise ValueError(f"not an entry: {text!r}")
        return cls(int(created), job_id)


def _tenant_part(tenant: str) -> str:
    """Tenants are configured names; a hash keeps any character out of the keys."""
    return hashlib.sha256(tenant.encode()).hexdigest()[:20]


def _shard_of(job_id: str) -> int:
    return hashlib.sha256(job_id.encode()).digest()[0] % SHARDS


@dataclass(frozen=True)
class JobQuery:
    """What GET /v1/jobs asks for: filters, a page size, and where the previous page ended."""

    limit: int = 50
    statuses: frozenset[str] = frozenset()  # empty: any
    batch_id: str | None = None
    model: str | None = None
    session_id: str | None = None
    created_after_ms: int | None = None
    before: Entry | None = None  # the cursor

    def matches(self, doc: JobDoc) -> bool:
        return (
            (not self.statuses or doc["status"] in self.statuses)
            and (self.batch_id is None or doc.get("batch_id") == self.batch_id)
            and (self.model is None or (doc.get("model") or {}).get("name") == self.model)
            and (self.session_id is None or doc.get("session_id") == self.session_id)
        )


def created_ms(doc: JobDoc) -> int:
    return round(parse_rfc3339(doc["created_at"]).timestamp() * 1000)


class TenantJobIndex:
    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._known_minutes: set[tuple[str, int]] = set()  # (tenant, minute) this process has listed

    def _prefix(self, tenant: str) -> str:
        return f"{constants.TENANT_INDEX_PREFIX}{_tenant_part(tenant)}::"

    def _minute_key(self, tenant: str, minute: int, shard: int) -> str:
        return f"{self._prefix(tenant)}{minute}::{shard}"

    def _day_key(self, tenant: str, day: int) -> str:
        return f"{self._prefix(tenant)}day::{day}"

    def forget_listed_minutes(self) -> None:
        """After a write that was rolled back: the minutes it listed may not be listed after all."""
        self._known_minutes.clear()

    def add(self, tenant: str, entries: list[Entry]) -> None:
        """List the tenant's new jobs: one write per index document they fall in."""
        ttl_s = self.store.ttl_s + 2 * DAY_MS // 1000  # longer than any job it lists
        by_document: dict[tuple[int, int], list[str]] = {}
        for entry in entries:
            by_document.setdefault((entry.created_ms // MINUTE_MS, _shard_of(entry.job_id)), []).append(entry.encode())
        new_minutes: dict[int, list[int]] = {}
        for minute in sorted({minute for minute, _ in by_document}):
            if (tenant, minute) not in self._known_minutes:
                new_minutes.setdefault(minute * MINUTE_MS // DAY_MS, []).append(minute)
        for day, minutes in new_minutes.items():
            self.store._append(self._day_key(tenant, day), "minutes", minutes, {"day": day}, ttl_s, unique=True)
            self._known_minutes.update((tenant, minute) for minute in minutes)
        for (minute, shard), encoded in by_document.items():
            self.store._append(self._minute_key(tenant, minute, shard), "entries", encoded, {"minute": minute}, ttl_s)

    def newest_first(self, tenant: str, *, before: Entry | None, now_ms: int,
                     not_before_ms: int | None = None) -> Iterator[Entry]:
        """The tenant's entries older than `before` (all, without one), newest first, down to
        `not_before_ms` or the oldest a job may still be stored."""
        oldest_ms = max(not_before_ms or 0, now_ms - self.store.ttl_s * 1000 - MINUTE_MS)
        newest_ms = now_ms if before is None else before.created_ms
        for day in range(newest_ms // DAY_MS, oldest_ms // DAY_MS - 1, -1):
            found = self.store._get(self._day_key(tenant, day))
            minutes = sorted(set(found[0]["minutes"]), reverse=True) if found else []
            for minute in minutes:
                if minute > newest_ms // MINUTE_MS or minute < oldest_ms // MINUTE_MS:
                    continue
                entries = sorted(self._entries_of(tenant, minute), reverse=True)
                for entry in entries:
                    if (before is None or entry < before) and entry.created_ms >= oldest_ms:
                        yield entry

    def _entries_of(self, tenant: str, minute: int) -> Iterator[Entry]:
        for shard in range(SHARDS):
            found = self.store._get(self._minute_key(tenant, minute, shard))
            if found is not None:
                yield from map(Entry.decode, found[0]["entries"])

    def remove(self, tenant: str, entry: Entry) -> None:
        """Take a purged job out of its tenant's listing."""
        minute = entry.created_ms // MINUTE_MS
        key = self._minute_key(tenant, minute, _shard_of(entry.job_id))
        encoded = entry.encode()
        for _ in range(self.store.max_cas_retries):
            found = self.store._get(key)
            if found is None or encoded not in found[0]["entries"]:
                return
            doc, cas = found
            try:
                self.store._replace(key, {**doc, "entries": [e for e in doc["entries"] if e != encoded]}, cas)
                return
            except (CasMismatch, DocumentMissing):
                continue
        raise CasMismatch(f"{key}: gave up after {self.store.max_cas_retries} CAS conflicts")
