"""A session's event stream: every status change of its jobs, the ones that join it included.

Each event's id counts the changes sent so far (the sum of the seqs the client has of each job,
as for a batch, from 0: a job's `queued` is a change too), so `Last-Event-ID: N` resumes after the
N-th change. Unlike a batch's, the stream has no end while the session lives: jobs may join at any
time. It learns of a new job from its events, and from the session document on every re-read.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from sse_starlette import ServerSentEvent
from starlette.concurrency import run_in_threadpool

from api.following.batch_progress import batch_counts
from api.following.broadcaster import KEEPALIVE
from api.following.streams import batch_replay, keepalive_event, seqs_after, stream_slot, stream_subscription
from shared.errors import SessionNotFound
from shared.events import is_delivery
from shared.jobs import JobStatus
from shared.sessions import jobs_in

if TYPE_CHECKING:
    from api.services import Services


def counts_event(session_id: str, statuses: dict[str, str], seqs: dict[str, int]) -> ServerSentEvent:
    """After the replay and after each change: the session's jobs by status. Its id is that of the
    last change sent, so a client that stops here resumes where it should."""
    data = {"session_id": session_id, "counts": batch_counts(statuses)}
    return ServerSentEvent(data=json.dumps(data), event="session", id=str(sum(seqs.values())))


def ended_event(session_id: str) -> ServerSentEvent:
    """The last event of a stream whose session has expired (or was never there any more)."""
    return ServerSentEvent(data=json.dumps({"session_id": session_id}), event="session-ended")


async def session_stream(services: Services, session_id: str, tenant: str, last_count: int
                         ) -> AsyncIterator[ServerSentEvent]:
    """Every change of the session's jobs after the first `last_count` (all of them without
    Last-Event-ID), then the counts, then each new change as it happens followed by the counts,
    until the session expires."""
    loop = asyncio.get_running_loop()
    resync_s = services.settings.stream_resync_s
    store = services.store
    with stream_slot(services):
        async with stream_subscription(services, session_id) as subscription:
            session = await run_in_threadpool(store.sessions.get, session_id, tenant=tenant)
            docs = await run_in_threadpool(store.get_jobs, jobs_in(session))
            read_at_s = loop.time()
            seqs = seqs_after(docs, last_count, with_creation=True)
            statuses = {doc["id"]: doc["status"] for doc in docs}
            for event in batch_replay(docs, seqs, with_creation=True):
                yield event
            yield counts_event(session_id, statuses, seqs)
            while True:
                message = await subscription.next(timeout_s=max(0.0, read_at_s + resync_s - loop.time()))
                if message is KEEPALIVE:
                    yield keepalive_event()
                    continue
                if message is not None and is_delivery(message):
                    continue
                if message is None or message.get("resync"):
                    try:
                        session = await run_in_threadpool(store.sessions.get, session_id, tenant=tenant)
                    except SessionNotFound:
                        yield ended_event(session_id)
                        return
                    unsettled = [job_id for job_id in jobs_in(session)
                                 if not JobStatus(statuses.get(job_id, JobStatus.QUEUED)).terminal]
                    fresh = await run_in_threadpool(store.get_jobs, unsettled)
                    read_at_s = loop.time()
                elif message["seq"] > seqs.get(message["job_id"], 0):
                    fresh = [message["doc"]]  # its history also fills a skipped seq
                else:
                    continue
                for doc in fresh:
                    seqs.setdefault(doc["id"], 0)  # a job that joined since
                    statuses[doc["id"]] = doc["status"]
                sent = False
                for event in batch_replay(fresh, seqs, with_creation=True):
                    sent = True
                    yield event
                if sent:
                    yield counts_event(session_id, statuses, seqs)
