"""Job reads of many streams and long polls as one store round trip.

Every quiet stream re-reads its job each `stream_resync_s` (a publish can be lost), and thousands
of streams connect at once: one thread hand-off and one store read each would keep the event loop
and the GIL busy with bookkeeping. Reads asked for while one is in flight wait for the next, which
takes them all with the store's multi-key get (one SQLite query, one Couchbase get_multi).
"""

from __future__ import annotations

import asyncio

from starlette.concurrency import run_in_threadpool

from shared.errors import JobNotFound
from shared.jobs import JobDoc
from shared.store import JobStore

# Keys per store round trip: a SQLite `IN (…)` and a Couchbase get_multi stay small.
MAX_KEYS_PER_READ = 500


class JobReads:
    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._waiting: dict[str, list[asyncio.Future[JobDoc]]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def get_job(self, job_id: str, *, tenant: str | None = None) -> JobDoc:
        """Like JobStore.get_job (JobNotFound also for another tenant's job), read together with
        whatever other jobs are asked for meanwhile."""
        future: asyncio.Future[JobDoc] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(job_id, []).append(future)
        if self._reader is None:
            self._reader = asyncio.create_task(self._read_waiting(), name="job reads")
        doc = await future
        if tenant is not None and doc.get("tenant") != tenant:
            raise JobNotFound(f"no job with id {job_id}")
        return doc

    async def _read_waiting(self) -> None:
        try:
            while self._waiting:
                job_ids = list(self._waiting)[:MAX_KEYS_PER_READ]
                asked = {job_id: self._waiting.pop(job_id) for job_id in job_ids}
                try:
                    found = await run_in_threadpool(self.store.get_jobs_by_id, job_ids)
                except Exception as e:  # the whole read failed: each asker gets the error
                    found = dict.fromkeys(job_ids, e)
                for job_id, futures in asked.items():
                    answer = found.get(job_id)
                    for future in futures:
                        if future.done():  # its stream was closed meanwhile
                            continue
                        if isinstance(answer, Exception):
                            future.set_exception(answer)
                        elif answer is None:
                            future.set_exception(JobNotFound(f"no job with id {job_id}"))
                        else:
                            future.set_result(answer)
        finally:
            self._reader = None
