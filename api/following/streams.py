"""The event streams of a job and of a batch: what they send, in which order, and how they resume.

A stream subscribes first, then reads the store, so nothing falls between the two; events
are ordered by the job's `seq`, which lets a client resume with Last-Event-ID (sse-starlette
does not read that header itself: we replay from the job's history).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from sse_starlette import ServerSentEvent
from starlette.concurrency import run_in_threadpool

from api.following.batch_progress import batch_counts, batch_is_done
from shared.errors import TooManyStreams
from shared.jobs import JobDoc, public_view, seq_of, status_of

if TYPE_CHECKING:
    from api.services import Services

# Where a broadcast event keeps its SSE encoding, shared by all the streams it goes to.
_ENCODED_KEY = "_sse_bytes"


def status_event(data: dict[str, Any], seq: int) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps(data), event="status", id=str(seq))


def live_status_event(message: dict[str, Any]) -> bytes:
    """A broadcast event as SSE bytes, encoded once for all its subscribers. The broadcaster puts
    the same dict into every subscriber's queue, so the first stream to send it pays for
    json.dumps and the SSE encoding and the others reuse the bytes (with thousands of streams
    on a few jobs, per-subscriber encoding was a visible share of the gateway's time)."""
    encoded = message.get(_ENCODED_KEY)
    if encoded is None:
        encoded = message[_ENCODED_KEY] = status_event(message["doc"], message["seq"]).encode()
    return encoded



def replay(doc: JobDoc, after_seq: int) -> Iterator[ServerSentEvent]:
    """The changes after `after_seq`, from the job's history; the newest one carries the
    whole document. With no Last-Event-ID (`after_seq` 0), only the current state."""
    current = seq_of(doc)
    if after_seq <= 0:
        yield status_event(public_view(doc), current)
        return
    for entry in doc["history"]:
        if entry["seq"] <= after_seq:
            continue
        if entry["seq"] == current:
            yield status_event(public_view(doc), current)
        else:
            data = {"id": doc["id"], "batch_id": doc.get("batch_id"), **entry}
            yield status_event(data, entry["seq"])


def parse_last_event_id(value: str | None) -> int:
    return int(value) if value and value.strip().isdigit() else 0


def check_stream_capacity(services: Services) -> None:
    """Bound the open streams of this process (checked before the response starts)."""
    if services.open_streams >= services.settings.max_sse_streams:
        raise TooManyStreams(
            f"{services.open_streams} event streams are open on this gateway; retry, or poll "
            "with GET /v1/jobs/{id}?wait=30"
        )


@contextlib.contextmanager
def stream_slot(services: Services) -> Iterator[None]:
    services.open_streams += 1
    try:
        yield
    finally:
        services.open_streams -= 1


async def job_stream(
    services: Services, job_id: str, tenant: str, last_seq: int
) -> AsyncIterator[ServerSentEvent | bytes]:
    read = services.store.get_job
    with stream_slot(services):
        async with services.broadcaster.subscribe(job_id) as subscription:
            doc = await run_in_threadpool(read, job_id, tenant=tenant)
            sent = last_seq
            for event in replay(doc, sent):
                yield event
            sent = max(sent, seq_of(doc))
            while not status_of(doc).terminal:
                message = await subscription.next()
                assert message is not None
                if message.get("resync") or message["seq"] > sent + 1:
                    # Missed something (reconnect, or events published out of order):
                    # the store's history has every step.
                    doc = await run_in_threadpool(read, job_id, tenant=tenant)
                    for event in replay(doc, sent):
                        yield event
                elif message["seq"] == sent + 1:
                    doc = message["doc"]
                    yield live_status_event(message)
                sent = max(sent, seq_of(doc))


def progress_event(batch_id: str, statuses: dict[str, str], seqs: dict[str, int]) -> ServerSentEvent:
    data = {"batch_id": batch_id, "counts": batch_counts(statuses), "done": batch_is_done(statuses)}
    return ServerSentEvent(data=json.dumps(data), event="progress", id=str(sum(seqs.values())))


async def batch_stream(services: Services, batch_id: str, tenant: str) -> AsyncIterator[ServerSentEvent]:
    """Each member's current state, then every change, each followed by the counts. Event ids
    are the sum of the members' seqs: it grows by one with every change in the batch."""
    with stream_slot(services):
        async with services.broadcaster.subscribe(batch_id) as subscription:
            batch = await run_in_threadpool(services.store.get_batch, batch_id, tenant=tenant)
            docs = await run_in_threadpool(services.store.get_jobs, batch["job_ids"])
            statuses = {doc["id"]: doc["status"] for doc in docs}
            seqs = {doc["id"]: seq_of(doc) for doc in docs}
            for doc in docs:
                yield status_event(public_view(doc), sum(seqs.values()))
            yield progress_event(batch_id, statuses, seqs)
            while not batch_is_done(statuses):
                message = await subscription.next()
                assert message is not None
                if message.get("resync"):
                    fresh = await run_in_threadpool(services.store.get_jobs, batch["job_ids"])
                    changed = [doc for doc in fresh if seq_of(doc) > seqs.get(doc["id"], 0)]
                else:
                    changed = [message["doc"]] if message["seq"] > seqs.get(message["job_id"], 0) else []
                for doc in changed:
                    statuses[doc["id"]], seqs[doc["id"]] = doc["status"], seq_of(doc)
                    yield status_event(doc, sum(seqs.values()))
                if changed:
                    yield progress_event(batch_id, statuses, seqs)
