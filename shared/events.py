"""Status events: written to the store first, then announced on one Redis channel."""

from __future__ import annotations

import json
import logging
from typing import Any

import redis
from prometheus_client import Counter

from shared.constants import EVENTS_CHANNEL
from shared.jobs import JobDoc, public_view, seq_of

log = logging.getLogger(__name__)

# On the default registry: the gateway's /metrics and each worker's metrics both show it.
PUBLISH_FAILURES = Counter(
    "asyncinfer_event_publish_failures_total",
    "Status events that could not be published (the store has the change; streams find it on their next re-read)",
)


def event_message(doc: JobDoc) -> dict[str, Any]:
    """What travels on the channel: routing fields plus the public document."""
    return {
        "job_id": doc["id"],
        "batch_id": doc.get("batch_id"),
        "session_id": doc.get("session_id"),
        "tenant": doc.get("tenant"),
        "seq": seq_of(doc),
        "status": doc["status"],
        "doc": public_view(doc),
    }


def delivery_message(doc: JobDoc) -> dict[str, Any]:
    """A change of a terminal job's webhook delivery record: no status change, so no seq of its own."""
    return {
        "event": "delivery",
        "job_id": doc["id"],
        "batch_id": doc.get("batch_id"),
        "tenant": doc.get("tenant"),
        "delivery": doc.get("delivery"),
    }


def is_delivery(message: dict[str, Any]) -> bool:
    return message.get("event") == "delivery"


class EventPublisher:
    """Publishes a job's new state after the store has it; subscribers re-read on doubt."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def publish_delivery(self, doc: JobDoc) -> None:
        """Announce the job's new delivery record (after the store has it), like a status change."""
        self._send(doc, delivery_message(doc))

    def publish(self, doc: JobDoc) -> None:
        self._send(doc, event_message(doc))

    def publish_many(self, docs: list[JobDoc]) -> None:
        """Every job's new state in one round trip (a pipeline; the events keep their order)."""
        if not docs:
            return
        pipeline = self._client.pipeline(transaction=False)
        for doc in docs:
            pipeline.publish(EVENTS_CHANNEL, json.dumps(event_message(doc)))
        try:
            pipeline.execute()
        except redis.RedisError as e:
            PUBLISH_FAILURES.inc(len(docs))
            log.warning("events for %d jobs not published: %s", len(docs), e)

    def _send(self, doc: JobDoc, message: dict[str, Any]) -> None:
        # Losing a publish (Redis blip) loses no state: every stream and long poll re-reads the
        # store when it hears nothing for ASYNCINFER_STREAM_RESYNC_S.
        try:
            self._client.publish(EVENTS_CHANNEL, json.dumps(message))
        except redis.RedisError as e:
            PUBLISH_FAILURES.inc()
            log.warning("event for job %s (seq %d) not published: %s", doc["id"], seq_of(doc), e)
