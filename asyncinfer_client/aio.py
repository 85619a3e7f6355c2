"""`AsyncClient`: the gateway's API for asyncio code, with the retries, stream resumption and
idempotency the `asyncinfer submit` command relies on (the command is built on it)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import mimetypes
from collections.abc import AsyncGenerator, Iterable
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from httpx_sse import SSEError, aconnect_sse
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay

from asyncinfer_client.errors import GatewayUnavailable, Problem, problem_of
from asyncinfer_client.jobs import Job, OnPosition, Position
from asyncinfer_client.retry import WaitRetryAfter, is_retryable, parse_retry_after

Image = bytes | str | Path
PREFLIGHT_RETRY_S = 10.0
LONG_POLL_S = 30
# Consecutive stream failures before falling back to long polling: enough to ride out one
# dropped connection, few enough that a proxy which breaks SSE costs seconds, not minutes.
STREAM_ATTEMPTS = 3
# The gateway sends a keep-alive comment every 15 s; three missed ones mean a dead stream.
STREAM_READ_TIMEOUT_S = 45.0


def read_image(image: Image, filename: str | None = None) -> tuple[str, bytes, str]:
    """(file name, bytes, content type) of an image given as bytes or as a path."""
    if isinstance(image, bytes):
        name = filename or "image"
        data = image
    else:
        path = Path(image)
        name, data = filename or path.name, path.read_bytes()
    return name, data, mimetypes.guess_type(name)[0] or "application/octet-stream"


def _present(**params: Any) -> dict[str, Any]:
    """The query parameters that are set."""
    return {name: value for name, value in params.items() if value is not None}


def content_key(data: bytes, top_k: int | None, model: str | None = None) -> tuple[str, str]:
    """(sha256, Idempotency-Key) of an image: the same file, model and top_k always give the same
    key, so submitting it again returns the first job instead of creating another."""
    sha256 = hashlib.sha256(data).hexdigest()
    return sha256, f"sha256-{sha256}-{model or 'default'}-top{top_k if top_k is not None else 'default'}"


def describe(error: BaseException) -> str:
    if isinstance(error, Problem):
        return str(error)
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


class StreamFailed(Exception):
    """The event stream failed STREAM_ATTEMPTS times in a row."""


class AsyncClient:
    """One gateway (or a load balancer in front of several).

    Every call retries 429/502/503/504 answers and connection failures for up to `retry_for_s`,
    honouring `Retry-After`, then raises GatewayUnavailable; any other error answer raises its
    typed Problem at once (asyncinfer_client.errors).
    """

    def __init__(self, url: str = "http://127.0.0.1:8000", *, api_key: str | None = None,
                 retry_for_s: float = 120.0, timeout_s: float = 60.0, max_connections: int = 32,
                 http: httpx.AsyncClient | None = None) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self.http = http or httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=timeout_s)
        self.retry_for_s = retry_for_s

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        await self.http.aclose()

    # ---- requests --------------------------------------------------------------------------
    async def _request(self, method: str, url: str, *, retry_for_s: float | None = None,
                       **kwargs: Any) -> httpx.Response:
        budget_s = self.retry_for_s if retry_for_s is None else retry_for_s
        retrying = AsyncRetrying(retry=retry_if_exception(is_retryable), wait=WaitRetryAfter(),
                                 stop=stop_after_delay(budget_s), reraise=True)

        async def once() -> httpx.Response:
            response = await self.http.request(method, url, **kwargs)
            raise_for_problem(response)
            return response

        try:
            return await retrying(once)
        except (Problem, httpx.TransportError) as e:
            if isinstance(e, Problem) and not e.retryable:
                raise
            raise GatewayUnavailable(f"gave up after {budget_s:.0f} s of retries: {describe(e)}") from e

    async def check_reachable(self) -> None:
        """A wrong URL fails in seconds (GatewayUnavailable); a gateway that goes away later gets the
        whole retry budget."""
        await self._request("GET", "/healthz", retry_for_s=min(self.retry_for_s, PREFLIGHT_RETRY_S), timeout=5)

    async def submit(self, image: Image, *, model: str | None = None, filename: str | None = None,
                     content_type: str | None = None, top_k: int | None = None, idempotency_key: str | None = None,
                     deadline_s: float | None = None, callback_url: str | None = None,
                     session_id: str | None = None) -> Job:
        """Queue one image (bytes or a path) for `model` (`name` or `name@version`; None: the
        gateway's default); the accepted job. With an `idempotency_key`, a repeat returns the first
        job (a retry after a lost answer creates nothing new). The content type is guessed from
        the file name unless given; the gateway checks the bytes in any case. With a `callback_url`,
        the gateway POSTs the job there, signed, once it has ended (CallbackRefused when it will not). With
        a `session_id` (create_session), the job joins that session's history."""
        name, data, guessed = read_image(image, filename)
        content_type = content_type or guessed
        params = _present(model=model, top_k=top_k, deadline_s=deadline_s, callback_url=callback_url,
                          session_id=session_id)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        response = await self._request("POST", "/v1/jobs", params=params, headers=headers,
                                       files={"file": (name, data, content_type)})
        return Job.of(response.json())

    async def submit_batch(self, images: Iterable[Image], *, model: str | None = None, top_k: int | None = None,
                           deadline_s: float | None = None, callback_url: str | None = None,
                           session_id: str | None = None) -> dict[str, Any]:
        """Queue several images as one batch (all or none) for `model`; the batch document. With
        `callback_url`, the batch is POSTed there, signed, once every member has ended; with
        `session_id`, every member joins that session."""
        files = [("files", read_image(image)) for image in images]
        params = _present(model=model, top_k=top_k, deadline_s=deadline_s, callback_url=callback_url,
                          session_id=session_id)
        response = await self._request("POST", "/v1/batches", params=params, files=files)
        batch: dict[str, Any] = response.json()
        return batch

    async def get(self, job_id: str, *, wait_s: float = 0) -> Job:
        """The job now; with `wait_s` (up to 30), once it is terminal or that long passed."""
        response = await self._request("GET", f"/v1/jobs/{job_id}", params={"wait": wait_s}, timeout=wait_s + 15)
        return Job.of(response.json())

    async def get_batch(self, batch_id: str) -> dict[str, Any]:
        batch: dict[str, Any] = (await self._request("GET", f"/v1/batches/{batch_id}")).json()
        return batch

    async def create_session(self, *, ttl_s: int | None = None) -> dict[str, Any]:
        """A new session (for `ttl_s` seconds; None: the gateway's default): its document, whose `id`
        jobs name as `session_id` to join its history."""
        response = await self._request("POST", "/v1/sessions", json=_present(ttl_s=ttl_s))
        session: dict[str, Any] = response.json()
        return session

    async def get_session(self, session_id: str) -> dict[str, Any]:
        """The session: its jobs in the order they were submitted, each with its status and top prediction."""
        session: dict[str, Any] = (await self._request("GET", f"/v1/sessions/{session_id}")).json()
        return session

    async def cancel(self, job_id: str) -> Job:
        """Cancel a job that has not started (Conflict once it has)."""
        return Job.of((await self._request("DELETE", f"/v1/jobs/{job_id}")).json())

    async def purge(self, job_id: str) -> None:
        """Delete a finished job and everything stored about it (Conflict while it is queued or running)."""
        await self._request("DELETE", f"/v1/jobs/{job_id}", params={"purge": "true"})

    async def list_jobs(self, *, status: Iterable[str] = (), batch_id: str | None = None, model: str | None = None,
                        session_id: str | None = None, created_after: datetime | None = None,
                        page_size: int = 100) -> AsyncGenerator[Job, None]:
        """Every job of this API key's tenant, newest first, page after page (only those matching
        the filters given)."""
        params: dict[str, Any] = {"limit": page_size, "status": list(status)}
        params.update(_present(batch_id=batch_id, model=model, session_id=session_id))
        if created_after is not None:
            params["created_after"] = created_after.isoformat()
        cursor = None
        while True:
            page = (await self._request("GET", "/v1/jobs", params={**params, **({"cursor": cursor} if cursor else {})}
                                        )).json()
            for doc in page["jobs"]:
                yield Job.of(doc)
            cursor = page["next_cursor"]
            if cursor is None:
                return

    # ---- following a job -------------------------------------------------------------------
    async def events(self, job_id: str, *, on_position: OnPosition | None = None) -> AsyncGenerator[Job, None]:
        """The job's states as they change, to the terminal one: its event stream, resumed with
        Last-Event-ID after a drop (nothing missed, nothing repeated), or long polling when the
        stream keeps failing. `on_position(job_id, position)` hears its place in line while queued."""
        last_seq = 0
        try:
            async with contextlib.aclosing(self._stream(job_id, on_position)) as stream:
                async for job in stream:
                    last_seq = max(last_seq, len(job.doc.get("history", [])))
                    yield job
            return
        except StreamFailed:
            pass
        while True:
            job = await self.get(job_id, wait_s=LONG_POLL_S)
            if on_position is not None and job.position is not None:
                on_position(job_id, job.position)
            if len(job.doc.get("history", [])) > last_seq or job.terminal:
                last_seq = len(job.doc.get("history", []))
                yield job
            if job.terminal:
                return

    async def wait(self, job: Job | str, *, timeout_s: float | None = None,
                   on_position: OnPosition | None = None) -> Job:
        """The job once it is terminal (TimeoutError after `timeout_s`); `on_position` as in `events`."""
        async with asyncio.timeout(timeout_s):
            current = job if isinstance(job, Job) else await self.get(job)
            if not current.terminal:
                async with contextlib.aclosing(self.events(current.id, on_position=on_position)) as changes:
                    async for change in changes:  # to its end: the stream closes in this task
                        current = change
            if current.status == "succeeded" and not current.doc.get("result"):
                current = await self.get(current.id)  # a replayed event may carry only what changed
            return current

    async def _stream(self, job_id: str, on_position: OnPosition | None) -> AsyncGenerator[Job, None]:
        last_event_id: str | None = None
        failures = 0
        while True:
            headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
            try:
                async with aconnect_sse(self.http, "GET", f"/v1/jobs/{job_id}/events", headers=headers,
                                        timeout=httpx.Timeout(10.0, read=STREAM_READ_TIMEOUT_S)) as source:
                    if source.response.status_code != 200:
                        await source.response.aread()
                        raise_for_problem(source.response)
                    async for event in source.aiter_sse():
                        if event.event == "position" and on_position is not None:
                            on_position(job_id, Position.of(json.loads(event.data)))
                        if event.event != "status":
                            continue
                        failures = 0
                        last_event_id = event.id or last_event_id
                        job = Job.of(json.loads(event.data))
                        yield job
                        if job.terminal:
                            return
                failures += 1  # the gateway ends a stream only after the terminal event: a drop
            except (httpx.TransportError, SSEError) as e:
                failures += 1
                if failures >= STREAM_ATTEMPTS:
                    raise StreamFailed(describe(e)) from e
            except Problem as e:
                if not e.retryable:
                    raise
                failures += 1
                if failures >= STREAM_ATTEMPTS:
                    raise StreamFailed(describe(e)) from e
            if failures >= STREAM_ATTEMPTS:
                raise StreamFailed("the event stream kept ending early")
            await asyncio.sleep(0.5 * 2**failures)

    # ---- many images -----------------------------------------------------------------------
    async def submit_many(self, images: Iterable[Image], *, model: str | None = None, concurrency: int = 8,
                          top_k: int | None = None, timeout_s: float | None = None,
                          ) -> AsyncGenerator[tuple[Image, Job | Problem], None]:
        """Submit each image and wait for it, `concurrency` at a time; yields (image, terminal job) as
        each finishes, or (image, Problem) for one the gateway refused. Each image's idempotency key
        comes from its content, so running the same images again creates no second job."""
        pending = iter(images)
        finished: asyncio.Queue[tuple[Image, Job | Problem] | None] = asyncio.Queue()

        async def one(image: Image) -> tuple[Image, Job | Problem]:
            name, data, _ = read_image(image)
            try:
                job = await self.submit(data, model=model, filename=name, top_k=top_k,
                                        idempotency_key=content_key(data, top_k, model)[1])
                return image, await self.wait(job, timeout_s=timeout_s)
            except Problem as e:
                return image, e

        async def runner() -> None:
            try:
                for image in pending:  # shared by the runners: each image is taken once
                    await finished.put(await one(image))
            finally:
                await finished.put(None)

        runners = [asyncio.create_task(runner()) for _ in range(concurrency)]
        try:
            done = 0
            while done < len(runners):
                item = await finished.get()
                if item is None:
                    done += 1
                    continue
                yield item
            for task in runners:
                task.result()  # GatewayUnavailable, and any other failure, surfaces here
        finally:
            for task in runners:
                task.cancel()


def raise_for_problem(response: httpx.Response) -> None:
    if response.status_code >= 400:
        raise problem_of(response, parse_retry_after(response.headers.get("retry-after")))
