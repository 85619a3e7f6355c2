"""Long polling: hold a request until a job is terminal, woken by events, not by polling."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from shared.events import is_delivery
from shared.jobs import JobDoc, JobStatus, seq_of, status_of

if TYPE_CHECKING:
    from api.services import Services


async def wait_for_terminal(services: Services, job_id: str, tenant: str, wait_s: float) -> JobDoc:
    """The job once it is terminal, or its state after `wait_s`. Woken by its events; with none
    for `stream_resync_s` it re-reads the store, so a lost event costs at most that long."""
    read = services.job_reads.get_job
    if wait_s <= 0:
        return await read(job_id, tenant=tenant)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    # Subscribe before reading, so a change between the read and the wait is not missed.
    async with services.broadcaster.subscribe(job_id) as subscription:
        doc = await read(job_id, tenant=tenant)
        while not status_of(doc).terminal and (remaining_s := deadline - loop.time()) > 0:
            event = await subscription.next(timeout_s=min(remaining_s, services.settings.stream_resync_s))
            if event is not None and is_delivery(event):
                continue
            if event is None or event.get("resync"):
                # Idle (its event may have been lost), out of time, or resubscribed: ask the store.
                doc = await read(job_id, tenant=tenant)
            elif JobStatus(event["status"]).terminal:
                return event["doc"]  # type: ignore[no-any-return]
            elif event["seq"] > seq_of(doc):
                doc = event["doc"]
        return doc
