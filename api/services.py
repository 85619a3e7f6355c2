"""What one gateway process holds for its lifetime, built from settings at start-up."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import redis
from celery import Celery

from api.admission.submitter import Submitter
from api.delivery.queue import DeliveryQueue
from api.drain_rate import DrainRate, DrainRates
from api.following.broadcaster import Broadcaster
from api.following.job_reads import JobReads
from api.following.queue_position import QueuePositions
from api.metrics import record_finished, record_started
from api.rate_limit import RateLimiter
from api.stream_tokens import StreamTokens
from shared.api_keys import KeyRing
from shared.config import Settings
from shared.events import EventPublisher
from shared.jobs import TERMINAL, JobStatus
from shared.lifecycle import JobLifecycle
from shared.models.catalogue import Catalogue
from shared.queue import make_celery
from shared.queue_names import lane_of
from shared.store import JobStore, open_store

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    store: JobStore
    redis: redis.Redis
    celery: Celery
    broadcaster: Broadcaster
    submitter: Submitter
    lifecycle: JobLifecycle
    catalogue: Catalogue
    deliveries: DeliveryQueue
    positions: QueuePositions
    job_reads: JobReads
    rate_limiter: RateLimiter
    keys: KeyRing
    stream_tokens: StreamTokens
    open_streams: int = field(default=0)
    # More readiness checks by name (e.g. the Consul agent when the mesh is on).
    extra_readiness_probes: dict[str, Callable[[], object]] = field(default_factory=dict)

    @classmethod
    def create(cls, settings: Settings) -> Services:
        store = open_store(settings)
        client = redis.Redis.from_url(
            settings.redis_url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30
        )
        celery = make_celery(settings)
        lifecycle = JobLifecycle(store, EventPublisher(client), max_attempts=settings.max_attempts)
        catalogue = settings.catalogue()
        deliveries = DeliveryQueue(client, settings.webhook_lease_s)
        submitter = Submitter(settings, lifecycle, celery, client, catalogue, DrainRate(), deliveries)
        positions = QueuePositions(client, catalogue, DrainRates(), max_age_s=settings.position_interval_s)
        keys = KeyRing(plain=settings.api_keys, entries=settings.api_key_entries, file=settings.api_keys_file)
        warn_of_shared_lanes(keys.tenants())
        return cls(
            settings=settings,
            store=store,
            redis=client,
            celery=celery,
            broadcaster=Broadcaster(settings.redis_url,
                                    on_event=lambda event: on_event(submitter, deliveries, positions, event)),
            submitter=submitter,
            lifecycle=lifecycle,
            catalogue=catalogue,
            deliveries=deliveries,
            positions=positions,
            job_reads=JobReads(store),
            rate_limiter=RateLimiter(client, settings.rate_limit_per_s, settings.rate_limit_burst_size),
            keys=keys,
            stream_tokens=StreamTokens(settings.stream_token_secret.get_secret_value(), settings.stream_token_ttl_s,
                                       client),
        )

    def close(self) -> None:
        self.store.close()
        self.redis.close()


def on_event(submitter: Submitter, deliveries: DeliveryQueue, positions: QueuePositions,
             event: dict[str, Any]) -> None:
    """Every status event this gateway hears (every gateway hears every job's)."""
    status = event.get("status")
    if status in TERMINAL:
        on_finished(submitter, deliveries, event)
        positions.job_finished(event.get("doc") or {})
    elif status == JobStatus.RUNNING:
        record_started(event)


def on_finished(submitter: Submitter, deliveries: DeliveryQueue, event: dict[str, Any]) -> None:
    """A job's terminal event, heard by this gateway: the drain rates, the tenant's open jobs, the
    metrics by model, and its webhook (every gateway adds it; the queue keeps it once)."""
    if (event.get("doc") or {}).get("callback_url"):
        try:
            deliveries.schedule(str(event["job_id"]))
        except redis.RedisError as e:  # the recovery pass finds it (api/recovery.py)
            log.warning("webhook of job %s not scheduled: %s", event.get("job_id"), e)
    submitter.backlog.drain_rate.record()
    submitter.tenant_limits.job_finished(str(event.get("tenant")), str(event.get("job_id")))
    record_finished(event)


def warn_of_shared_lanes(tenants: Iterable[str]) -> None:
    """Tenants in one fair lane share its turns (shared/queue_names.py): say which, once, at start."""
    by_lane: dict[int, set[str]] = {}
    for tenant in tenants:
        by_lane.setdefault(lane_of(tenant), set()).add(tenant)
    for lane, sharing in sorted(by_lane.items()):
        if len(sharing) > 1:
            log.warning("tenants %s share fair lane %d: between them, jobs are served first come, first served",
                        ", ".join(sorted(sharing)), lane)
