"""The job store: business rules written once over a few key-value primitives.

A backend (SQLite, Couchbase) implements only the primitives: insert, get with CAS, replace
with CAS, remove, and binary values. Everything that must hold for every backend — the state
machine, the CAS retry loop, idempotency, image lifecycle — lives here, once.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from shared import constants
from shared.errors import (
    BatchNotFound,
    CasMismatch,
    ClaimExpired,
    DocumentExists,
    DocumentMissing,
    IdempotencyConflict,
    IllegalTransition,
    JobNotFound,
    NotFound,
    NotPurgeable,
    StoreUnavailable,
)
from shared.jobs import JobDoc, JobStatus, status_of
from shared.jobs import transition as apply_transition
from shared.store.lease import Lease
from shared.store.open_jobs import OpenJobIndex
from shared.store.sessions import SessionRecords
from shared.store.tenant_jobs import Entry, JobQuery, TenantJobIndex, created_ms

Cas = int
# Internal (public_view hides "_" fields): the Idempotency-Key the job was created with.
IDEMPOTENCY_FIELD = "_idempotency_key"
# Most index entries one listing request reads (its filters may match few of them).
LIST_SCAN_LIMIT = 2000
# A terminal job's webhook delivery record (api/delivery/), public.
DELIVERY_FIELD = "delivery"
Mutation = Callable[[JobDoc], JobDoc | None]
Found = tuple[dict[str, Any], Cas]
# Some keys of a multi-key call may fail alone (Couchbase sends one request per key): their
# entry is the error (StoreUnavailable, CasMismatch, DocumentMissing) instead of a value.
ManyFound = dict[str, Found | Exception | None]


@dataclass(frozen=True)
class Written:
    """A job after update_many: its document, whether this call changed it, and its CAS now
    (a later update_many may start from it instead of reading the job again; None: not known)."""

    doc: JobDoc
    changed: bool
    cas: Cas | None


def _raise_if_all_unavailable(outcomes: list[Any]) -> None:
    """A multi-key call whose every key failed with StoreUnavailable is an outage: raise it, so that the
    caller waits it out as it would a single call's, instead of handing every key back."""
    if outcomes and all(isinstance(outcome, StoreUnavailable) for outcome in outcomes):
        raise outcomes[0]


def job_key(job_id: str) -> str:
    return f"{constants.JOB_KEY_PREFIX}{job_id}"


def image_key(job_id: str) -> str:
    return f"{constants.IMAGE_KEY_PREFIX}{job_id}"


def batch_key(batch_id: str) -> str:
    return f"{constants.BATCH_KEY_PREFIX}{batch_id}"


def idempotency_key(tenant: str, key: str) -> str:
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"{constants.IDEMPOTENCY_KEY_PREFIX}{tenant}::{digest}"


@dataclass(frozen=True)
class Idempotency:
    key: str
    fingerprint: str  # hash of what was submitted: same key + other body → 409


class JobStore(ABC):
    """Job documents, their images and batches, with CAS-guarded transitions."""

    max_cas_retries = 50

    def __init__(self, ttl_s: int) -> None:
        self.ttl_s = ttl_s
        self.open_jobs = OpenJobIndex(self)
        self.tenant_jobs = TenantJobIndex(self)
        self.sessions = SessionRecords(self)

    def lease(self, name: str, holder: str, duration_s: float) -> Lease:
        """A lease named `name` that `holder` can take when no other holder has it."""
        return Lease(self, name, holder, duration_s)

    # ---- primitives each backend implements ------------------------------------------------
    @abstractmethod
    def _insert(self, key: str, value: dict[str, Any], ttl_s: int) -> None:
        """Create `key`; raise DocumentExists if it is there."""

    @abstractmethod
    def _get(self, key: str) -> tuple[dict[str, Any], Cas] | None:
        """The value and its CAS, or None when absent or expired."""

    @abstractmethod
    def _replace(self, key: str, value: dict[str, Any], cas: Cas) -> None:
        """Replace `key` if its CAS is still `cas`, keeping its expiry; else raise CasMismatch.

        Raise DocumentMissing if the key is gone.
        """

    def _replace_changes(self, key: str, current: dict[str, Any], new: dict[str, Any], cas: Cas) -> None:
        """Write `new` over `current` like `_replace`; a backend that can send only what
        changed (Couchbase sub-document operations) overrides this."""
        self._replace(key, new, cas)

    @abstractmethod
    def _append_to(self, key: str, field: str, items: list[Any], expires_at_s: float) -> None:
        """Append `items` to the list `field` of `key` atomically, without CAS (concurrent appends
        all land), keeping the expiry at `expires_at_s` (unix time); DocumentMissing if it is gone."""

    @abstractmethod
    def _remove(self, key: str) -> None:
        """Delete `key`; absent is fine."""

    # One round trip for many keys: a batch's jobs (workers/inference.py).
    @abstractmethod
    def _get_many(self, keys: list[str]) -> ManyFound:
        """Each key's value and CAS (None when absent or expired), like `_get`."""

    @abstractmethod
    def _replace_many(self, writes: dict[str, Found]) -> dict[str, Cas | Exception]:
        """Replace each key with its value if its CAS is still the one given, keeping its expiry;
        each key's new CAS, or its CasMismatch, DocumentMissing or StoreUnavailable."""

    @abstractmethod
    def _get_binary_many(self, keys: list[str]) -> dict[str, bytes | Exception | None]: ...

    @abstractmethod
    def _remove_many(self, keys: list[str]) -> None:
        """Delete every key; absent ones are fine."""

    @abstractmethod
    def _insert_binary(self, key: str, data: bytes, ttl_s: int) -> None: ...

    def _insert_many(self, values: dict[str, dict[str, Any]], ttl_s: int) -> None:
        """Insert every key (a batch's members), as `_insert` does each; backends with a multi-key
        insert send them together."""
        for key, value in values.items():
            self._insert(key, value, ttl_s)

    def _insert_binary_many(self, values: dict[str, bytes], ttl_s: int) -> None:
        for key, data in values.items():
            self._insert_binary(key, data, ttl_s)

    @abstractmethod
    def _get_binary(self, key: str) -> bytes | None: ...

    @abstractmethod
    def ping(self) -> None:
        """Raise StoreUnavailable when the backend does not answer."""

    def _one_write(self) -> contextlib.AbstractContextManager[None]:
        """The writes made inside as one: a single transaction where the backend has them (SQLite:
        one commit, one wait for the write lock, none of them kept if one fails); elsewhere each
        write stands on its own."""
        return contextlib.nullcontext()

    def sweep_expired(self) -> int:
        """Delete expired entries; backends with native expiry have nothing to do."""
        return 0

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    # ---- jobs ----------------------------------------------------------------------------
    def create_job(
        self, doc: JobDoc, image: bytes, idempotency: Idempotency | None = None
    ) -> tuple[JobDoc, bool]:
        """Store a new job and its image. Returns (document, created).

        With an idempotency key, the first writer of the key wins; a repeat with the same
        fingerprint gets the original job back, one with another fingerprint a conflict.
        """
        with self._one_write():
            return self._create_job(doc, image, idempotency)

    def create_jobs(self, jobs: list[tuple[JobDoc, bytes]]) -> None:
        """Store new jobs and their images (a batch's members, or one job without an idempotency key).
        Their images and documents go in one multi-key insert each where the backend has one
        (Couchbase), the index documents they share are written once for all of them, and SQLite
        makes the whole batch one transaction. If this raises, none of them is kept (elsewhere, as
        far as the store still answers for their removal)."""
        if not jobs:
            return
        try:
            with self._one_write():
                self._insert_binary_many({image_key(doc["id"]): image for doc, image in jobs}, self.ttl_s)
                self._list(doc for doc, _ in jobs)
                self._insert_many({job_key(doc["id"]): doc for doc, _ in jobs}, self.ttl_s)
                # Only once they exist: recovery drops an open job it cannot read.
                self.open_jobs.add([doc["id"] for doc, _ in jobs])
        except Exception:
            # Without a transaction, the members written so far are not open to recovery yet and
            # would wait as queued until they expire. Best effort: the store may be down for this too.
            with contextlib.suppress(StoreUnavailable):
                self._remove_many([key for doc, _ in jobs for key in (job_key(doc["id"]), image_key(doc["id"]))])
            raise

    def _list(self, docs: Iterable[JobDoc]) -> None:
        """Listed before they exist: a crash right after leaves entries the listing skips, never a
        job the listing misses."""
        by_tenant: dict[str, list[Entry]] = {}
        for doc in docs:
            by_tenant.setdefault(doc["tenant"], []).append(Entry(created_ms(doc), doc["id"]))
        for tenant, entries in by_tenant.items():
            self.tenant_jobs.add(tenant, entries)

    def _create_job(self, doc: JobDoc, image: bytes, idempotency: Idempotency | None) -> tuple[JobDoc, bool]:
        if idempotency is None:
            self.create_jobs([(doc, image)])
            return doc, True
        self._insert_binary(image_key(doc["id"]), image, self.ttl_s)
        self._list([doc])
        doc = {**doc, IDEMPOTENCY_FIELD: idempotency.key}  # so that a purge frees the key
        self._insert(job_key(doc["id"]), doc, self.ttl_s)
        claim = {"job_id": doc["id"], "fingerprint": idempotency.fingerprint}
        try:
            self._insert(idempotency_key(doc["tenant"], idempotency.key), claim, self.ttl_s)
        except DocumentExists:
            self._remove(job_key(doc["id"]))
            self._remove(image_key(doc["id"]))
            return self._claimed_job(doc["tenant"], idempotency), False
        self.open_jobs.add([doc["id"]])
        return doc, True

    def _claimed_job(self, tenant: str, idempotency: Idempotency) -> JobDoc:
        found = self._get(idempotency_key(tenant, idempotency.key))
        if found is None:
            raise ClaimExpired("the job of this idempotency key has expired")
        claim, _ = found
        if claim["fingerprint"] != idempotency.fingerprint:
            raise IdempotencyConflict(
                "this Idempotency-Key was used for a different request; use a new key"
            )
        return self.get_job(claim["job_id"], tenant=tenant)

    def needs_enqueue(self, doc: JobDoc, idempotency: Idempotency) -> bool:
        """Whether a job returned for a repeated idempotency key may never have been queued:
        the request that created it stopped (a gateway crash) between storing and enqueueing.
        Queuing it again is safe: a worker runs a job only while it is queued or running."""
        if status_of(doc) is not JobStatus.QUEUED:
            return False
        found = self._get(idempotency_key(doc["tenant"], idempotency.key))
        return found is not None and not found[0].get("enqueued")

    def confirm_enqueued(self, tenant: str, idempotency: Idempotency) -> None:
        """Record on the idempotency claim that its job is on the queue."""
        with contextlib.suppress(ClaimExpired):  # an expired claim has nothing left to record
            self._update_key(
                idempotency_key(tenant, idempotency.key),
                lambda claim: None if claim.get("enqueued") else {**claim, "enqueued": True},
                ClaimExpired("the idempotency key has expired"),
            )

    def release_claim(self, tenant: str, idempotency: Idempotency) -> None:
        """Free an idempotency key whose job was never accepted, so that a retry starts afresh."""
        self._remove(idempotency_key(tenant, idempotency.key))

    def discard_job(self, job_id: str) -> None:
        """Forget a job that was never accepted (its enqueue failed)."""
        self._remove(job_key(job_id))
        self._remove(image_key(job_id))

    def get_job(self, job_id: str, *, tenant: str | None = None) -> JobDoc:
        """The job; JobNotFound also when it belongs to another tenant."""
        found = self._get(job_key(job_id))
        if found is None or (tenant is not None and found[0].get("tenant") != tenant):
            raise JobNotFound(f"no job with id {job_id}")
        return found[0]

    def get_image(self, job_id: str) -> bytes | None:
        return self._get_binary(image_key(job_id))

    def update(self, job_id: str, mutate: Mutation) -> tuple[JobDoc, bool]:
        """Apply `mutate` to the current document under CAS, retrying on a lost race.

        `mutate` sees a fresh document on each try and returns the new one, or None to leave
        it unchanged. Returns (document, changed). The image goes once the job is terminal.
        """
        doc, changed = self._update_key(job_key(job_id), mutate, JobNotFound(f"no job with id {job_id}"))
        if status_of(doc).terminal:
            # Also when unchanged: an earlier write may have finished the job and then lost its
            # clean-up.
            self._drop_image(job_id)
        return doc, changed

    def update_many(self, mutations: dict[str, Mutation], known: dict[str, Written] | None = None
                    ) -> dict[str, Written | Exception]:
        """`update` for many jobs in two round trips, one read and one write: each job keeps its own
        CAS, and `mutate` sees each job once. A job in `known` is not read again: its mutation starts
        from that document and CAS. Each job's outcome, or its error: JobNotFound, or a CasMismatch
        or StoreUnavailable of its own, after which the caller updates that job alone. A StoreUnavailable
        of every job is raised, for the caller to wait out the outage. Terminal jobs lose their images."""
        known = known or {}
        found: ManyFound = {job_key(job_id): (written.doc, written.cas) for job_id, written in known.items()
                            if job_id in mutations and written.cas is not None}
        unread = [job_key(job_id) for job_id in mutations if job_key(job_id) not in found]
        if unread:
            found |= self._get_many(unread)
        outcomes: dict[str, Written | Exception] = {}
        writes: dict[str, Found] = {}
        for job_id, mutate in mutations.items():
            item = found[job_key(job_id)]
            if item is None:
                outcomes[job_id] = JobNotFound(f"no job with id {job_id}")
            elif isinstance(item, Exception):
                outcomes[job_id] = item
            else:
                new = mutate(item[0])
                if new is None:
                    outcomes[job_id] = Written(item[0], False, item[1])
                else:
                    writes[job_id] = (new, item[1])
        written = self._replace_many({job_key(job_id): write for job_id, write in writes.items()}) if writes else {}
        for job_id, (new, _) in writes.items():
            cas = written[job_key(job_id)]
            if isinstance(cas, DocumentMissing):
                outcomes[job_id] = JobNotFound(f"no job with id {job_id}")
            else:
                outcomes[job_id] = cas if isinstance(cas, Exception) else Written(new, True, cas)
        _raise_if_all_unavailable(list(outcomes.values()))
        ended = [job_id for job_id, outcome in outcomes.items()
                 if isinstance(outcome, Written) and status_of(outcome.doc).terminal]
        if ended:
            with contextlib.suppress(StoreUnavailable):  # as in _drop_image
                self._remove_many([image_key(job_id) for job_id in ended])
        return outcomes

    def get_images(self, job_ids: list[str]) -> dict[str, bytes | Exception | None]:
        """Each job's image (None when gone) in one round trip; a StoreUnavailable of every image is raised."""
        found = self._get_binary_many([image_key(job_id) for job_id in job_ids])
        images = {job_id: found[image_key(job_id)] for job_id in job_ids}
        _raise_if_all_unavailable(list(images.values()))
        return images

    def _update_key(self, key: str, mutate: Mutation, missing: NotFound) -> tuple[dict[str, Any], bool]:
        """The CAS retry loop over any document; raises `missing` when it is absent."""
        for _ in range(self.max_cas_retries):
            found = self._get(key)
            if found is None:
                raise missing
            current, cas = found
            new = mutate(current)
            if new is None:
                return current, False
            try:
                self._replace_changes(key, current, new, cas)
            except CasMismatch:
                continue
            except DocumentMissing:
                raise missing from None
            return new, True
        raise CasMismatch(f"{key}: gave up after {self.max_cas_retries} CAS conflicts")

    def _append(self, key: str, field: str, items: list[Any], seed: dict[str, Any], ttl_s: int, *,
                unique: bool = False) -> None:
        """Append `items` to the list `field` of `key` under CAS, in one write, creating the document
        from `seed` when it is absent; with `unique`, an item already listed is not added again."""
        for _ in range(self.max_cas_retries):
            found = self._get(key)
            if found is None:
                try:
                    self._insert(key, {**seed, field: list(dict.fromkeys(items) if unique else items)}, ttl_s)
                    return
                except DocumentExists:
                    continue
            doc, cas = found
            new = [item for item in dict.fromkeys(items) if item not in doc[field]] if unique else items
            if not new:
                return
            try:
                self._replace(key, {**doc, field: [*doc[field], *new]}, cas)
                return
            except (CasMismatch, DocumentMissing):
                continue
        raise CasMismatch(f"{key}: gave up after {self.max_cas_retries} CAS conflicts")

    def _drop_image(self, job_id: str) -> None:
        # Best effort: the transition is already written, and failing here would make its
        # caller retry a write that happened. The image expires with its TTL in any case.
        with contextlib.suppress(StoreUnavailable):
            self._remove(image_key(job_id))

    def transition(self, job_id: str, to: JobStatus, **fields: Any) -> JobDoc:
        """Move the job to `to` (IllegalTransition if the state machine forbids it). This writes
        no event: the product changes a job's status through shared/lifecycle.py, which does."""
        doc, _ = self.update(job_id, lambda current: apply_transition(current, to, **fields))
        return doc

    def update_delivery(self, job_id: str, change: Callable[[dict[str, Any] | None], dict[str, Any] | None]
                        ) -> tuple[JobDoc, bool]:
        """Change the `delivery` record of a terminal job (its webhook, api/delivery/) under CAS:
        `change` sees the current record (None before the first) and returns the new one, or None
        to leave it. Nothing else of the job changes: not its status, history, seq or updated_at,
        so its state machine and event ids are untouched. IllegalTransition (409) on an open job."""

        def mutate(doc: JobDoc) -> JobDoc | None:
            if not status_of(doc).terminal:
                raise IllegalTransition(f"job {job_id} is {doc['status']}: a delivery is recorded once it has ended")
            record = change(doc.get(DELIVERY_FIELD))
            return None if record is None else {**doc, DELIVERY_FIELD: record}

        return self._update_key(job_key(job_id), mutate, JobNotFound(f"no job with id {job_id}"))

    # ---- batches -------------------------------------------------------------------------
    def create_batch(self, batch: dict[str, Any]) -> None:
        self._insert(batch_key(batch["id"]), batch, self.ttl_s)

    def discard_batch(self, batch_id: str) -> None:
        self._remove(batch_key(batch_id))

    def update_batch_delivery(self, batch_id: str,
                              change: Callable[[dict[str, Any] | None], dict[str, Any] | None]) -> dict[str, Any]:
        """Change the `delivery` record of a batch (its webhook, sent once every member has ended)
        under CAS, as update_delivery does a job's; the batch's members are not touched."""

        def mutate(batch: dict[str, Any]) -> dict[str, Any] | None:
            record = change(batch.get(DELIVERY_FIELD))
            return None if record is None else {**batch, DELIVERY_FIELD: record}

        batch, _ = self._update_key(batch_key(batch_id), mutate, BatchNotFound(f"no batch with id {batch_id}"))
        return batch

    def get_batch(self, batch_id: str, *, tenant: str | None = None) -> dict[str, Any]:
        found = self._get(batch_key(batch_id))
        if found is None or (tenant is not None and found[0].get("tenant") != tenant):
            raise BatchNotFound(f"no batch with id {batch_id}")
        return found[0]

    def get_jobs(self, job_ids: list[str]) -> list[JobDoc]:
        """The jobs that still exist, in order, in one round trip; raises when one could not be read."""
        found = self.get_jobs_by_id(job_ids)
        for item in found.values():
            if isinstance(item, Exception):
                raise item
        return [doc for job_id in job_ids if isinstance(doc := found[job_id], dict)]

    def get_jobs_by_id(self, job_ids: list[str]) -> dict[str, JobDoc | Exception | None]:
        """Each job (None when gone, the error when it alone could not be read) in one round trip;
        a StoreUnavailable of every job is raised."""
        if not job_ids:
            return {}
        found = self._get_many([job_key(job_id) for job_id in job_ids])
        jobs = {job_id: item if not isinstance(item, tuple) else item[0]
                for job_id in job_ids for item in [found[job_key(job_id)]]}
        _raise_if_all_unavailable(list(jobs.values()))
        return jobs

    def list_jobs(self, tenant: str, query: JobQuery, now_ms: int) -> tuple[list[JobDoc], Entry | None]:
        """A page of the tenant's jobs, newest first, and the cursor of the next page (None: no
        more). A page holds fewer than `limit` jobs, with a cursor, when the filters matched few of
        the LIST_SCAN_LIMIT entries read for it."""
        page: list[JobDoc] = []
        entries = self.tenant_jobs.newest_first(tenant, before=query.before, now_ms=now_ms,
                                                not_before_ms=None if query.created_after_ms is None
                                                else query.created_after_ms + 1)
        scanned = 0
        while chunk := list(itertools.islice(entries, max(query.limit, 20))):
            docs = {doc["id"]: doc for doc in self.get_jobs([entry.job_id for entry in chunk])}
            for entry in chunk:
                doc = docs.get(entry.job_id)
                if doc is not None and doc["tenant"] == tenant and query.matches(doc):
                    page.append(doc)
                    if len(page) == query.limit:
                        return page, entry
            scanned += len(chunk)
            if scanned >= LIST_SCAN_LIMIT:
                return page, chunk[-1]
        return page, None

    def purge_job(self, job_id: str, tenant: str) -> None:
        """Remove a finished job of `tenant`: its document, image, idempotency key and listing
        entry. NotPurgeable (409) while it is queued or running."""
        doc = self.get_job(job_id, tenant=tenant)
        if not status_of(doc).terminal:
            raise NotPurgeable(f"job {job_id} is {doc['status']}: cancel it, or wait until it has finished")
        self._remove(job_key(job_id))
        self._remove(image_key(job_id))
        if IDEMPOTENCY_FIELD in doc:
            self._remove(idempotency_key(tenant, doc[IDEMPOTENCY_FIELD]))
        self.tenant_jobs.remove(tenant, Entry(created_ms(doc), job_id))
