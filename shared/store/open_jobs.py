"""The durable record of open jobs, kept in the store itself so that recovery can find a job whose
queue message Redis lost (api/recovery.py).

No query service (Couchbase's mock and a minimal cluster have none): the record is a set of
time-bucketed index documents, `open::<bucket>::<shard>`, each listing the ids of the jobs
created in that minute whose hash falls in that shard (shards keep concurrent creators from
fighting over one document). A job is added when it is created and removed lazily, once the
recoverer has seen it finished. `open::scanned-from` holds the oldest bucket that may still list
an open job, so a pass reads only the buckets since then.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared import constants
from shared.errors import CasMismatch, DocumentExists, DocumentMissing

if TYPE_CHECKING:
    from shared.store.base import JobStore

BUCKET_S = 60
SHARDS = 8
# A gateway whose clock runs behind files its jobs into an older bucket: the scan never advances
# past buckets this recent.
CLOCK_SKEW_BUCKETS = 2


def bucket_of(at_s: float) -> int:
    return int(at_s // BUCKET_S)


def shard_of(job_id: str) -> int:
    return hashlib.sha256(job_id.encode()).digest()[0] % SHARDS




@dataclass(frozen=True)
class IndexEntry:
    """One index document: the bucket and shard it covers and the job ids it lists."""

    key: str
    bucket: int
    job_ids: tuple[str, ...]


class OpenJobIndex:
    """Add, list and prune open job ids over the store's own key-value primitives (every backend)."""

    def __init__(self, store: JobStore, name: str = "") -> None:
        """`name` keeps apart indexes that share a store (tests); the product has one, unnamed."""
        self.store = store
        self.prefix = f"{constants.OPEN_INDEX_PREFIX}{name + '::' if name else ''}"
        self.scanned_from_key = f"{self.prefix}scanned-from"

    def key(self, bucket: int, shard: int) -> str:
        return f"{self.prefix}{bucket}::{shard}"

    def add(self, job_ids: list[str], at_s: float | None = None) -> None:
        """Record open jobs (in the bucket of `at_s`, now by default): one write per shard they fall in."""
        bucket = bucket_of(time.time() if at_s is None else at_s)
        by_shard: dict[int, list[str]] = {}
        for job_id in job_ids:
            by_shard.setdefault(shard_of(job_id), []).append(job_id)
        for shard, ids in by_shard.items():
            self.store._append(self.key(bucket, shard), "ids", ids, {"bucket": bucket}, self.store.ttl_s)

    def scanned_from(self) -> int | None:
        found = self.store._get(self.scanned_from_key)
        return None if found is None else int(found[0]["bucket"])

    def start_scans_at(self, bucket: int) -> None:
        """Where scans begin when no scan has run yet (a new store): insert-if-absent."""
        with contextlib.suppress(DocumentExists):
            self.store._insert(self.scanned_from_key, {"bucket": bucket}, self.store.ttl_s)

    def entries(self, now_s: float | None = None) -> Iterator[IndexEntry]:
        """Every index document from the scanned-from bucket up to now, oldest first."""
        now_bucket = bucket_of(time.time() if now_s is None else now_s)
        first = self.scanned_from()
        if first is None:
            first = now_bucket - CLOCK_SKEW_BUCKETS
            self.start_scans_at(first)
        for bucket in range(first, now_bucket + 1):
            for shard in range(SHARDS):
                key = self.key(bucket, shard)
                found = self.store._get(key)
                if found is not None:
                    yield IndexEntry(key, bucket, tuple(found[0]["ids"]))

    def prune(self, entry: IndexEntry, finished: set[str], now_s: float | None = None) -> None:
        """Drop `finished` ids from an index document; remove it once it lists none and is old
        enough that no creator writes into it any more (a remove is not CAS-guarded)."""
        settled = entry.bucket < bucket_of(time.time() if now_s is None else now_s) - CLOCK_SKEW_BUCKETS
        for _ in range(self.store.max_cas_retries):
            found = self.store._get(entry.key)
            if found is None:
                return
            doc, cas = found
            left = [job_id for job_id in doc["ids"] if job_id not in finished]
            if len(left) == len(doc["ids"]):
                return
            try:
                if left or not settled:
                    self.store._replace(entry.key, {**doc, "ids": left}, cas)
                else:
                    self.store._remove(entry.key)
                return
            except (CasMismatch, DocumentMissing):
                continue

    def advance(self, to_bucket: int, now_s: float | None = None) -> None:
        """Scans start at `to_bucket` from now on: every older bucket is empty. Never past the
        buckets a skewed clock may still write into."""
        limit = bucket_of(time.time() if now_s is None else now_s) - CLOCK_SKEW_BUCKETS
        bucket = min(to_bucket, limit)
        found = self.store._get(self.scanned_from_key)
        if found is None:
            self.start_scans_at(bucket)
            return
        doc, cas = found
        if bucket > int(doc["bucket"]):
            # Losing the race means another recoverer moved it: scans start there next time.
            with contextlib.suppress(CasMismatch, DocumentMissing):
                self.store._replace(self.scanned_from_key, {"bucket": bucket}, cas)

