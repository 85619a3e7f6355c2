"""Long polling: hold a request until a job is terminal, woken by events, not by polling."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool

from shared.jobs import JobDoc, JobStatus, status_of

if TYPE_CHECKING:
    from api.services import Services


async def wait_for_terminal(services: Services, job_id: str, tenant: str, wait_s: float) -> JobDoc:
    read = services.store.get_job
    if wait_s <= 0:
        return await run_in_threadpool(read, job_id, tenant=tenant)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    # Subscribe before reading, so a change between the read and the wait is not missed.
    async with services.broadcaster.subscribe(job_id) as subscription:
        doc = await run_in_threadpool(read, job_id, tenant=tenant)
        while not status_of(doc).terminal:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            event = await subscription.next(timeout_s=remaining)
            if event is None:
                break
            if event.get("resync"):
                doc = await run_in_threadpool(read, job_id, tenant=tenant)
            elif JobStatus(event["status"]).terminal:
                return event["doc"]  # type: ignore[no-any-return]
        else:
            return doc
        # Timed out: answer with the freshest state.
        return await run_in_threadpool(read, job_id, tenant=tenant)
