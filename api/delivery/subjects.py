"""What a delivery is about: one job, or a whole batch, named in the delivery queue by its target
(the job's id, or `batch:<id>`). Here each kind is read, judged ready to send, turned into the body
that is signed and POSTed, and given its delivery record."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from api.following.batch_progress import batch_is_done, batch_view
from shared.errors import BatchNotFound, JobNotFound
from shared.events import EventPublisher
from shared.jobs import JobDoc, public_view, status_of
from shared.store import JobStore
from shared.store.base import DELIVERY_FIELD

BATCH_PREFIX = "batch:"
Record = dict[str, Any]
Change = Callable[[Record | None], Record | None]  # as the store's update_delivery takes


def batch_target(batch_id: str) -> str:
    return f"{BATCH_PREFIX}{batch_id}"


def is_batch(target: str) -> bool:
    return target.startswith(BATCH_PREFIX)


def message_id(target: str) -> str:
    """The `webhook-id`: one per job or batch, the same on every attempt and replay, for idempotent
    receivers (`msg_<job id>`, `msg_batch_<batch id>`)."""
    return f"msg_{target.replace(':', '_')}"


def without_delivery(doc: dict[str, Any]) -> dict[str, Any]:
    """A body never carries its own delivery record, which changes with every attempt."""
    return {key: value for key, value in doc.items() if key != DELIVERY_FIELD}


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def job_payload(doc: JobDoc) -> bytes:
    """The job document as clients see it."""
    return encode(without_delivery(public_view(doc)))


def batch_payload(batch: dict[str, Any], members: list[JobDoc]) -> bytes:
    """The batch as GET /v1/batches/{id} shows it, each member with its whole public document
    (its predictions), so that a receiver needs no further request."""
    view = without_delivery(batch_view(batch, members))
    return encode({**view, "jobs": [without_delivery(public_view(doc)) for doc in members]})


@dataclass(frozen=True)
class Subject:
    target: str
    callback_url: str | None
    record: Record | None  # its delivery record so far
    ready: bool  # the job has ended; every member of the batch has
    payload: bytes


class Subjects:
    def __init__(self, store: JobStore, publisher: EventPublisher) -> None:
        self.store = store
        self.publisher = publisher

    def load(self, target: str) -> Subject | None:
        """The subject as the store has it now; None when it is gone (purged, expired)."""
        try:
            if is_batch(target):
                batch = self.store.get_batch(target.removeprefix(BATCH_PREFIX))
                members = self.store.get_jobs(batch["job_ids"])
                ready = batch_is_done({doc["id"]: doc["status"] for doc in members})
                return Subject(target, batch.get("callback_url"), batch.get(DELIVERY_FIELD), ready,
                               batch_payload(batch, members) if ready else b"")
            doc = self.store.get_job(target)
        except (JobNotFound, BatchNotFound):
            return None
        return Subject(target, doc.get("callback_url"), doc.get(DELIVERY_FIELD), status_of(doc).terminal,
                       job_payload(doc))

    def record(self, target: str, change: Change) -> None:
        """Write the new delivery record; a job's is announced on its event stream too."""
        if is_batch(target):
            self.store.update_batch_delivery(target.removeprefix(BATCH_PREFIX), change)
            return
        doc, _ = self.store.update_delivery(target, change)
        self.publisher.publish_delivery(doc)
