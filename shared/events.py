"""Status events: written to the store first, then announced on one Redis channel."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import redis

from shared.constants import EVENTS_CHANNEL
from shared.jobs import JobDoc, public_view, seq_of


def event_message(doc: JobDoc) -> dict[str, Any]:
    """What travels on the channel: routing fields plus the public document."""
    return {
        "job_id": doc["id"],
        "batch_id": doc.get("batch_id"),
        "tenant": doc.get("tenant"),
        "seq": seq_of(doc),
        "status": doc["status"],
        "doc": public_view(doc),
    }


class EventPublisher:
    """Publishes a job's new state after the store has it; subscribers re-read on doubt."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def publish(self, doc: JobDoc) -> None:
        # Losing a publish (Redis blip) loses no state: streams re-read the store on resume
        # and long polls re-read it when they wake up.
        with contextlib.suppress(redis.RedisError):
            self._client.publish(EVENTS_CHANNEL, json.dumps(event_message(doc)))
