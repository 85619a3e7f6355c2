"""`Client`: the same API for code without an event loop. It runs an AsyncClient on an event loop
of its own, in a background thread, so there is one implementation of every call."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

from asyncinfer_client.aio import AsyncClient, Image
from asyncinfer_client.errors import Problem
from asyncinfer_client.jobs import Job, OnPosition

T = TypeVar("T")


class Client:
    """See AsyncClient for what each call does; these block until it is done."""

    def __init__(self, url: str = "http://127.0.0.1:8000", **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="asyncinfer-client", daemon=True)
        self._thread.start()
        self._async = self._run(self._make(url, options))

    @staticmethod
    async def _make(url: str, options: dict[str, Any]) -> AsyncClient:
        return AsyncClient(url, **options)  # its httpx client belongs to the loop it is made on

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _iterate(self, iterator: AsyncIterator[T]) -> Iterator[T]:
        """Run the async iterator as one task on the client's loop (an HTTP stream must be opened and
        closed in the same task), handing its items over through a queue."""
        handed: queue.Queue[tuple[bool, Any]] = queue.Queue()

        async def pump() -> None:
            try:
                async with contextlib.aclosing(iterator) as items:  # type: ignore[type-var]
                    async for item in items:
                        handed.put((True, item))
            except BaseException as e:
                handed.put((False, e))
            else:
                handed.put((False, None))

        future = asyncio.run_coroutine_threadsafe(pump(), self._loop)
        try:
            while True:
                ok, value = handed.get()
                if ok:
                    yield value
                elif value is None:
                    return
                else:
                    raise value
        finally:
            future.cancel()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._run(self._async.close())
        self._run(self._cancel_the_rest())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    @staticmethod
    async def _cancel_the_rest() -> None:
        """Iterations the caller left unfinished still have a task on the loop."""
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def check_reachable(self) -> None:
        self._run(self._async.check_reachable())

    def submit(self, image: Image, **options: Any) -> Job:
        return self._run(self._async.submit(image, **options))

    def submit_batch(self, images: Iterable[Image], **options: Any) -> dict[str, Any]:
        return self._run(self._async.submit_batch(images, **options))

    def get(self, job_id: str, *, wait_s: float = 0) -> Job:
        return self._run(self._async.get(job_id, wait_s=wait_s))

    def get_batch(self, batch_id: str) -> dict[str, Any]:
        return self._run(self._async.get_batch(batch_id))

    def wait(self, job: Job | str, *, timeout_s: float | None = None, on_position: OnPosition | None = None) -> Job:
        """`on_position` is called on the client's own thread."""
        return self._run(self._async.wait(job, timeout_s=timeout_s, on_position=on_position))

    def events(self, job_id: str, *, on_position: OnPosition | None = None) -> Iterator[Job]:
        return self._iterate(self._async.events(job_id, on_position=on_position))

    def cancel(self, job_id: str) -> Job:
        return self._run(self._async.cancel(job_id))

    def purge(self, job_id: str) -> None:
        self._run(self._async.purge(job_id))

    def list_jobs(self, *, status: Iterable[str] = (), batch_id: str | None = None, model: str | None = None,
                  session_id: str | None = None, created_after: datetime | None = None,
                  page_size: int = 100) -> Iterator[Job]:
        return self._iterate(self._async.list_jobs(status=status, batch_id=batch_id, model=model, session_id=session_id,
                                                   created_after=created_after, page_size=page_size))

    def create_session(self, *, ttl_s: int | None = None) -> dict[str, Any]:
        return self._run(self._async.create_session(ttl_s=ttl_s))

    def get_session(self, session_id: str) -> dict[str, Any]:
        return self._run(self._async.get_session(session_id))

    def submit_many(self, images: Iterable[Image], *, model: str | None = None, concurrency: int = 8,
                    top_k: int | None = None, timeout_s: float | None = None) -> Iterator[tuple[Image, Job | Problem]]:
        return self._iterate(self._async.submit_many(images, model=model, concurrency=concurrency, top_k=top_k,
                                                     timeout_s=timeout_s))
