"""Recovery of stranded jobs: an open job that no message in Redis will deliver is queued again.

A job is stranded when its message is gone: Redis lost it (`appendfsync everysec` can lose the
last second of writes in a crash), a gateway died between storing and queueing it and its client
never retried, or a worker acknowledged it without finishing it. The store's record of open jobs
(shared/store/open_jobs.py) says which jobs should be somewhere in the queue; Redis says which
are (shared/queue.py: waiting, or held unacknowledged by a live worker, which is never disturbed).
One gateway at a time recovers, the one holding the `recoverer` lease in the store.

A queued job goes back on the queue as it was. A running one too: the worker's begin() counts the
attempt, and fails it with `worker_lost` once it has had its attempts. A queued job past its
start deadline is ended here (`cancelled`, error code `timeout`), whether or not a worker runs.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field

import redis
from celery import Celery

from api.admission.tenant_limits import TenantLimits
from api.delivery.queue import DeliveryQueue
from api.delivery.subjects import batch_target
from api.metrics import JOBS_RECOVERED, RECOVERY_LEASE_HELD
from shared.config import Settings
from shared.errors import BatchNotFound, JobNotFound
from shared.jobs import JobDoc, missed_its_start, parse_rfc3339, status_of
from shared.lifecycle import JobLifecycle
from shared.logs import about_job
from shared.queue import enqueue, job_ids_with_a_message, queue_of
from shared.store import JobStore
from shared.store.base import DELIVERY_FIELD
from shared.store.open_jobs import bucket_of

log = logging.getLogger(__name__)

LEASE_NAME = "recoverer"
MIN_LEASE_S = 10.0


def _age_s(doc: JobDoc, now_s: float) -> float:
    return now_s - parse_rfc3339(doc["updated_at"]).timestamp()


@dataclass
class RecoveryPass:
    """What one pass did: whether it held the lease, how many open jobs it saw, which it queued again."""

    held_lease: bool
    open_jobs: int = 0
    recovered: list[str] = field(default_factory=list)
    tenant_slots_freed: int = 0  # tenants' open-job entries of jobs that had ended unheard
    webhooks_scheduled: list[str] = field(default_factory=list)  # of jobs whose end no gateway heard
    batches_seen: set[str] = field(default_factory=set)  # of the finished jobs: each batch is read once a pass


class Recoverer:
    def __init__(self, settings: Settings, lifecycle: JobLifecycle, celery: Celery, redis_client: redis.Redis,
                 tenant_limits: TenantLimits | None = None, deliveries: DeliveryQueue | None = None) -> None:
        self.lifecycle = lifecycle
        self.deliveries = deliveries
        self.tenant_limits = tenant_limits
        self.store: JobStore = lifecycle.store
        store = self.store
        self.celery = celery
        self.redis = redis_client
        self.grace_s = settings.recovery_grace_s
        # For jobs accepted by a version before models were plugins: they go to the default model.
        default = settings.catalogue().resolve(None)
        self.default_model = {"name": default.name, "version": default.version}
        holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # A holder that misses a pass or two (a busy machine) keeps it; a dead one loses it soon.
        duration_s = max(3 * settings.recovery_interval_s, MIN_LEASE_S)
        self.lease = store.lease(LEASE_NAME, holder, duration_s=duration_s)
        # Jobs seen without a message on the last pass, with the updated_at they had then.
        self._suspects: dict[str, str] = {}

    def run_once(self, now_s: float | None = None) -> RecoveryPass:
        now = time.time() if now_s is None else now_s
        held = self.lease.acquire(now)
        RECOVERY_LEASE_HELD.set(int(held))
        if not held:
            self._suspects.clear()  # another gateway recovers; what this one saw is stale
            return RecoveryPass(held_lease=False)
        report = RecoveryPass(held_lease=True)
        open_jobs = self._open_jobs(now, report)
        report.open_jobs = len(open_jobs)
        candidates = {job_id: doc for job_id, doc in open_jobs.items() if _age_s(doc, now) >= self.grace_s}
        if self.tenant_limits is not None:
            # A job whose terminal event no gateway heard still counted against its tenant.
            report.tenant_slots_freed = self.tenant_limits.prune(open_jobs, now)
        if not candidates:
            self._suspects.clear()
            return report
        for job_id, doc in list(candidates.items()):
            if not (doc.get("model") or {}).get("version"):
                candidates[job_id] = self.lifecycle.adopt_model(job_id, self.default_model)
        queues = sorted({queue_of(doc) for doc in candidates.values()})
        delivered = job_ids_with_a_message(self.redis, candidates, queues)
        suspects: dict[str, str] = {}
        for job_id, doc in candidates.items():
            if job_id in delivered:
                continue
            if self._suspects.get(job_id) != doc["updated_at"]:
                suspects[job_id] = doc["updated_at"]  # first sighting: look again next pass
                continue
            cause = f"{doc['status']}_without_message"
            enqueue(self.celery, job_id, queue_of(doc))  # its own model's queue
            JOBS_RECOVERED.labels(cause).inc()
            report.recovered.append(job_id)
            with about_job(job_id, doc.get("request_id")):
                log.warning("recovered job %s (%s since %s): queued it again", job_id, cause, doc["updated_at"])
        self._suspects = suspects
        return report

    def _open_jobs(self, now_s: float, report: RecoveryPass) -> dict[str, JobDoc]:
        """The jobs still queued or running; finished ones leave the index on the way (their webhook
        scheduled if none was), and late ones end here."""
        open_jobs: dict[str, JobDoc] = {}
        first_open_bucket: int | None = None
        for entry in self.store.open_jobs.entries(now_s):
            finished: set[str] = set()
            for job_id in entry.job_ids:
                try:
                    doc = self.store.get_job(job_id)
                except JobNotFound:  # expired, or never accepted (its enqueue failed)
                    finished.add(job_id)
                    continue
                if status_of(doc).terminal:
                    self._schedule_unheard_webhook(doc, report)
                    finished.add(job_id)
                    continue
                if missed_its_start(doc, now_s) and self.lifecycle.end_if_late(job_id) is not None:
                    finished.add(job_id)  # ended `cancelled` (timeout), also when no worker runs
                    continue
                open_jobs[job_id] = doc
                first_open_bucket = entry.bucket if first_open_bucket is None else first_open_bucket
            self.store.open_jobs.prune(entry, finished, now_s)
        self.store.open_jobs.advance(bucket_of(now_s) if first_open_bucket is None else first_open_bucket, now_s)
        return open_jobs

    def _schedule_unheard_webhook(self, doc: JobDoc, report: RecoveryPass) -> None:
        """A job that ended while no gateway listened has a callback_url and no delivery record: the
        queue takes it (once: a delivery already waiting or claimed is left as it is, and the deliverer
        skips one that is delivered by the time it claims it). A batch's webhook is scheduled when
        the batch is accepted; should Redis have lost that write, its members' ends bring it back."""
        if self.deliveries is None:
            return
        if doc.get("callback_url") and DELIVERY_FIELD not in doc and self.deliveries.schedule(doc["id"]):
            report.webhooks_scheduled.append(doc["id"])
            log.warning("job %s ended unheard: its webhook is scheduled now", doc["id"])
        if doc.get("batch_id") and doc["batch_id"] not in report.batches_seen:
            report.batches_seen.add(doc["batch_id"])
            self._schedule_batch_webhook(doc["batch_id"], report)

    def _schedule_batch_webhook(self, batch_id: str, report: RecoveryPass) -> None:
        try:
            batch = self.store.get_batch(batch_id)
        except BatchNotFound:
            return
        target = batch_target(batch_id)
        if batch.get("callback_url") and DELIVERY_FIELD not in batch and self.deliveries is not None \
                and self.deliveries.schedule(target):
            report.webhooks_scheduled.append(target)
            log.warning("batch %s: its webhook was not scheduled; it is now", batch_id)

    def stop(self) -> None:
        self.lease.release()
        RECOVERY_LEASE_HELD.set(0)
