"""The event streams of a job and of a batch: what they send, in which order, and how they resume.

A stream subscribes first, then reads the store, so nothing falls between the two; events
are ordered by the job's `seq`, which lets a client resume with Last-Event-ID (sse-starlette
does not read that header itself: we replay from the job's history). A stream that hears
nothing for `stream_resync_s` re-reads the store, since a publish can be lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from sse_starlette import ServerSentEvent
from starlette.concurrency import run_in_threadpool

from api.following.batch_progress import batch_counts, batch_is_done
from api.following.broadcaster import KEEPALIVE
from shared.errors import TooManyStreams
from shared.events import is_delivery
from shared.jobs import JobDoc, JobStatus, parse_rfc3339, public_view, rfc3339, seq_of, status_of
from shared.store.base import DELIVERY_FIELD

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from api.following.broadcaster import Subscription
    from api.services import Services

_EVENT_ID = re.compile(r"[0-9]{1,18}")
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
    if after_seq <= 0:
        yield status_event(public_view(doc), seq_of(doc))
        return
    for entry in doc["history"]:
        if entry["seq"] <= after_seq:
            continue
        yield status_event(change_data(doc, entry), entry["seq"])


def change_data(doc: JobDoc, entry: dict[str, Any]) -> dict[str, Any]:
    """A replayed step: the whole document for its newest, a history entry for the others."""
    if entry["seq"] == seq_of(doc):
        return public_view(doc)
    session = {"session_id": doc["session_id"]} if doc.get("session_id") else {}
    return {"id": doc["id"], "batch_id": doc.get("batch_id"), **session, **entry}


def parse_last_event_id(value: str | None) -> int:
    """The seq a client resumes after; 0 (from the start) unless it is one of the ids we send.
    ASCII digits only, and few of them: str.isdigit() also takes '²', which int() refuses."""
    text = (value or "").strip()
    return int(text) if _EVENT_ID.fullmatch(text) else 0


def check_stream_capacity(services: Services) -> None:
    """Bound the open streams of this process (checked before the response starts)."""
    if services.open_streams >= services.settings.max_sse_streams:
        raise TooManyStreams(
            f"{services.open_streams} event streams are open on this gateway; retry, or poll "
            "with GET /v1/jobs/{id}?wait=30"
        )


def ping_interval_s(most_s: float) -> float:
    """Each stream's keep-alive interval, between half `most_s` and `most_s`: streams opened together
    (a batch's, a portal's after a deploy) drift apart instead of pinging all at once, thousands of
    sends in one turn of the event loop that hold up every event behind them."""
    return random.uniform(most_s / 2, most_s)


def stream_subscription(services: Services, key: str) -> AbstractAsyncContextManager[Subscription]:
    """An event stream's subscription: its events, and a KEEPALIVE when its keep-alive comment is due.
    The streams send that comment themselves (the response is made with sse-starlette's ping off),
    so a stream is one task fewer, sse-starlette's ping task, with its timer and send lock."""
    return services.broadcaster.subscribe(key, keepalive_s=ping_interval_s(services.settings.sse_ping_s))


def keepalive_event() -> ServerSentEvent:
    """A comment line: proxies and load balancers see traffic on a quiet stream; EventSource ignores it."""
    return ServerSentEvent(comment="ping")


@contextlib.contextmanager
def stream_slot(services: Services) -> Iterator[None]:
    services.open_streams += 1
    try:
        yield
    finally:
        services.open_streams -= 1


def delivery_event(record: dict[str, Any]) -> ServerSentEvent:
    """A change of the job's webhook delivery record; no id, since ids are the job's seqs."""
    return ServerSentEvent(data=json.dumps(record), event="delivery")


def delivery_progress(record: dict[str, Any] | None) -> tuple[int, int, bool]:
    """How far a delivery record has got, to tell a newer one from a stale one heard late."""
    if record is None:
        return (-1, -1, False)
    return (record.get("replays", 0), record.get("attempts", 0), record.get("state") != "pending")


def delivery_settled(doc: JobDoc) -> bool:
    """Whether a terminal job's stream has nothing more to say: no webhook, or one delivered or given up."""
    record = doc.get(DELIVERY_FIELD)
    return not doc.get("callback_url") or (record is not None and record.get("state") in ("delivered", "dead"))


def position_event(position: dict[str, Any]) -> ServerSentEvent:
    """A queued job's place in line (api/following/queue_position.py); no id, as it is not a change
    of the job and is not replayed."""
    return ServerSentEvent(data=json.dumps(position), event="position")


def starting_position() -> dict[str, Any]:
    """Sent before a job's `running` when the last position sent had jobs ahead: the reading
    that would have said 0 fell between two of the once-a-second ones."""
    now = rfc3339(time.time())
    return {"ahead": 0, "estimated_start_at": now, "drain_per_s": None, "measured_at": now}


async def job_stream(
    services: Services, job_id: str, tenant: str, last_seq: int
) -> AsyncIterator[ServerSentEvent | bytes]:
    """The job's status changes, with its `position` while it is queued (when it changed, at most
    every `position_interval_s`); for a job with a callback_url, then its `delivery` events until
    the webhook is delivered or given up."""
    read = services.job_reads.get_job
    loop = asyncio.get_running_loop()
    resync_s, position_s = services.settings.stream_resync_s, services.settings.position_interval_s
    with stream_slot(services):
        async with stream_subscription(services, job_id) as subscription:
            doc = await read(job_id, tenant=tenant)
            sent = last_seq
            for event in replay(doc, sent):
                yield event
            sent = max(sent, seq_of(doc))
            heard_delivery = None
            position_at = loop.time()
            # The first re-read comes between half an interval and one: streams opened together
            # (a batch's, a portal's) spread their store reads instead of asking all at once.
            heard_at = position_at - random.uniform(0, resync_s / 2)
            last_position: dict[str, Any] | None = None
            while not status_of(doc).terminal:
                queued = status_of(doc) == JobStatus.QUEUED
                if queued and loop.time() >= position_at:
                    position = await services.positions.position_off_loop(
                        doc, None if last_position is None else last_position["ahead"])
                    if position is not None and position_moved(last_position, position):
                        last_position = position
                        yield position_event(position)
                    position_at = loop.time() + position_every_s(position_s, services.open_streams)
                wake_at = min(heard_at + resync_s, position_at) if queued else heard_at + resync_s
                message = await subscription.next(timeout_s=max(0.0, wake_at - loop.time()))
                if message is KEEPALIVE:
                    yield keepalive_event()
                    continue
                if message is None and loop.time() < heard_at + resync_s:
                    continue  # only a position was due
                heard_at = loop.time()
                if message is not None and is_delivery(message):
                    heard_delivery = message["delivery"]  # sent once the status is terminal
                    continue
                if message is None or message.get("resync") or message["seq"] > sent + 1:
                    # Maybe missed something (quiet for a while, reconnect, or a seq skipped):
                    # the store's history has every step.
                    doc = await read(job_id, tenant=tenant)
                    events: list[ServerSentEvent | bytes] = list(replay(doc, sent))
                elif message["seq"] == sent + 1:
                    doc = message["doc"]
                    events = [live_status_event(message)]
                else:
                    continue
                if events and status_of(doc) == JobStatus.RUNNING and last_position and last_position["ahead"] > 0:
                    last_position = starting_position()
                    yield position_event(last_position)
                for change in events:
                    yield change
                sent = max(sent, seq_of(doc))
            if delivery_progress(heard_delivery) > delivery_progress(doc.get(DELIVERY_FIELD)):
                doc = {**doc, DELIVERY_FIELD: heard_delivery}
            async for event in delivery_stream(services, subscription, doc, tenant):
                yield event


# Position events a gateway process sends each second at most, over all its streams: with more
# queued streams than that, each hears its position less often than the interval, and the events
# that matter (a job's status) keep arriving on time.
POSITIONS_PER_S = 1000


def position_every_s(interval_s: float, open_streams: int) -> float:
    """How long a queued job's stream waits before it asks for its position again."""
    return max(interval_s, open_streams / POSITIONS_PER_S)


def position_moved(last: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Whether a position says something new: fewer ahead, or a start estimate a second off."""
    if last is new:  # the same reading's answer (api/following/queue_position.py)
        return False
    if last is None or last["ahead"] != new["ahead"]:
        return True
    if (last["estimated_start_at"] is None) != (new["estimated_start_at"] is None):
        return True
    return new["estimated_start_at"] is not None and abs(
        parse_rfc3339(new["estimated_start_at"]).timestamp() - parse_rfc3339(last["estimated_start_at"]).timestamp()
    ) >= 1.0


async def delivery_stream(services: Services, subscription: Subscription, doc: JobDoc, tenant: str
                          ) -> AsyncIterator[ServerSentEvent]:
    """A terminal job's delivery record as it changes (the current one first, when there is one),
    re-read from the store when nothing is heard, until it is settled."""
    loop = asyncio.get_running_loop()
    resync_s = services.settings.stream_resync_s
    record = doc.get(DELIVERY_FIELD)
    if record is not None:
        yield delivery_event(record)
    heard_at = loop.time()
    while not delivery_settled(doc):
        message = await subscription.next(timeout_s=max(0.0, heard_at + resync_s - loop.time()))
        if message is KEEPALIVE:
            yield keepalive_event()
            continue
        heard_at = loop.time()
        if message is not None and is_delivery(message):
            fresh = message["delivery"]
        elif message is None or message.get("resync"):
            doc = await services.job_reads.get_job(doc["id"], tenant=tenant)
            fresh = doc.get(DELIVERY_FIELD)
        else:
            continue
        if delivery_progress(fresh) > delivery_progress(record):
            record = fresh
            doc = {**doc, DELIVERY_FIELD: record}
            yield delivery_event(record)


def progress_event(batch_id: str, statuses: dict[str, str], seqs: dict[str, int]) -> ServerSentEvent:
    data = {"batch_id": batch_id, "counts": batch_counts(statuses), "done": batch_is_done(statuses)}
    return ServerSentEvent(data=json.dumps(data), event="progress", id=str(sum(seqs.values())))


def batch_changes(docs: list[JobDoc], *, with_creation: bool = False) -> list[tuple[JobDoc, dict[str, Any]]]:
    """The members' changes (each history entry after the first; with `with_creation`, the first
    too), in the order they happened: by `at`, then the member's position, then seq. A member's
    `at`s count as non-decreasing, so its own changes stay in seq order even if a writer's clock was behind."""
    keyed = []
    for position, doc in enumerate(docs):
        at = doc["history"][0]["at"]
        for entry in doc["history"][0 if with_creation else 1:]:
            at = max(at, entry["at"])
            keyed.append(((at, position, entry["seq"]), doc, entry))
    keyed.sort(key=lambda item: item[0])
    return [(doc, entry) for _, doc, entry in keyed]


def seqs_after(docs: list[JobDoc], last_sum: int, *, with_creation: bool = False) -> dict[str, int]:
    """Each member's seq once the batch's seqs sum to `last_sum`, counting its changes in the
    order they happened: what a client that received event id `last_sum` has. `with_creation`:
    the sum starts from 0, each job's creation its first change (a session's jobs join one by one)."""
    seqs = {doc["id"]: 0 if with_creation else doc["history"][0]["seq"] for doc in docs}
    for doc, entry in batch_changes(docs, with_creation=with_creation)[: max(0, last_sum - sum(seqs.values()))]:
        seqs[doc["id"]] = entry["seq"]
    return seqs


def batch_replay(docs: list[JobDoc], seqs: dict[str, int], *, with_creation: bool = False
                 ) -> Iterator[ServerSentEvent]:
    """The changes of `docs` past `seqs` (every member's seq the client has, updated as they
    are sent) in the order they happened, each with the batch's running sum as its id."""
    total = sum(seqs.values())
    for doc, entry in batch_changes(docs, with_creation=with_creation):
        if entry["seq"] > seqs[doc["id"]]:
            total += entry["seq"] - seqs[doc["id"]]
            seqs[doc["id"]] = entry["seq"]
            yield status_event(change_data(doc, entry), total)


async def batch_stream(
    services: Services, batch_id: str, tenant: str, last_sum: int
) -> AsyncIterator[ServerSentEvent]:
    """Each member's current state, then every change, each followed by the counts. Event ids
    are the sum of the members' seqs: it grows by one with every change in the batch. With
    `last_sum` (Last-Event-ID), the changes after the first `last_sum - members` instead.

    The initial states carry no id, only the progress after them does: a client cut off in
    between starts afresh rather than resuming with some members unseen. The store is re-read
    every `stream_resync_s` even when other members' events keep coming, since those do not
    reveal a lost one."""
    loop = asyncio.get_running_loop()
    resync_s = services.settings.stream_resync_s
    with stream_slot(services):
        async with stream_subscription(services, batch_id) as subscription:
            batch = await run_in_threadpool(services.store.get_batch, batch_id, tenant=tenant)
            docs = await run_in_threadpool(services.store.get_jobs, batch["job_ids"])
            read_at_s = loop.time()
            statuses = {doc["id"]: doc["status"] for doc in docs}
            if last_sum >= len(docs):
                seqs = seqs_after(docs, last_sum)
                for event in batch_replay(docs, seqs):
                    yield event
            else:
                seqs = {doc["id"]: seq_of(doc) for doc in docs}
                for doc in docs:
                    yield ServerSentEvent(data=json.dumps(public_view(doc)), event="status")
            yield progress_event(batch_id, statuses, seqs)
            while not batch_is_done(statuses):
                message = await subscription.next(timeout_s=max(0.0, read_at_s + resync_s - loop.time()))
                if message is KEEPALIVE:
                    yield keepalive_event()
                    continue
                if message is not None and is_delivery(message):
                    continue
                if message is None or message.get("resync"):
                    pending = [job_id for job_id, status in statuses.items() if not JobStatus(status).terminal]
                    fresh = await run_in_threadpool(services.store.get_jobs, pending)
                    read_at_s = loop.time()
                elif message["seq"] > seqs.get(message["job_id"], message["seq"]):
                    fresh = [message["doc"]]  # its history also fills a skipped seq
                else:
                    continue
                sent = False
                for event in batch_replay(fresh, seqs):
                    sent = True
                    yield event
                if sent:
                    statuses.update({doc["id"]: doc["status"] for doc in fresh if seq_of(doc) == seqs[doc["id"]]})
                    yield progress_event(batch_id, statuses, seqs)
