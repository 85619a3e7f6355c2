"""The gateway as the submit command sees it: submit one image, then wait for its job.

Waiting follows the job's own event stream (`GET /v1/jobs/{id}/events`), resumed with
Last-Event-ID after a drop, and falls back to long polling (`GET /v1/jobs/{id}?wait=30`)
once the stream keeps failing. Per-job streams rather than the batch stream: a batch
(`POST /v1/batches`) is all-or-nothing and takes no Idempotency-Key, while one job per file
gives each file its own idempotent submission and its own result.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from httpx_sse import SSEError, aconnect_sse
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay

from client.records import one_line
from client.retry import RETRYABLE_STATUSES, RetryableResponse, WaitRetryAfter, is_retryable, parse_retry_after
from shared.jobs import TERMINAL

PREFLIGHT_RETRY_S = 10.0
LONG_POLL_S = 30
# Consecutive stream failures before falling back to long polling: enough to ride out one
# dropped connection, few enough that a proxy which breaks SSE costs seconds, not minutes.
STREAM_ATTEMPTS = 3
# The gateway sends a keep-alive comment every 15 s; three missed ones mean a dead stream.
STREAM_READ_TIMEOUT_S = 45.0


class GatewayRefused(Exception):
    """An error answer that is not a 'retry later' one."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


class Rejected(GatewayRefused):
    """A 4xx answer: the request (the file) is the problem; sending it again will not help."""


class ServerError(GatewayRefused):
    """A 500: the gateway failed; another run may fare better."""


class Unauthorized(GatewayRefused):
    """401: no file can succeed with this API key."""


class GatewayUnavailable(Exception):
    """The gateway kept refusing or not answering for the whole retry budget."""


def problem_detail(response: httpx.Response) -> str:
    """The `detail` of a problem+json answer, or what else the body says."""
    try:
        body = response.json()
    except ValueError:
        return one_line(response.text)[:300] or response.reason_phrase
    if isinstance(body, dict) and body.get("detail"):
        return str(body["detail"])
    return response.reason_phrase


def raise_for_problem(response: httpx.Response) -> None:
    status = response.status_code
    if status < 400:
        return
    detail = problem_detail(response)
    if status in RETRYABLE_STATUSES:
        raise RetryableResponse(status, detail, parse_retry_after(response.headers.get("retry-after")))
    if status == 401:
        raise Unauthorized(status, detail)
    if status >= 500:
        raise ServerError(status, detail)
    raise Rejected(status, detail)


class Gateway:
    def __init__(self, client: httpx.AsyncClient, *, retry_for_s: float) -> None:
        self.client = client
        self.retry_for_s = retry_for_s

    async def _request(self, method: str, url: str, *, retry_for_s: float | None = None,
                       **kwargs: Any) -> httpx.Response:
        """One request, retried on 429/502/503/504 and connection errors, honouring Retry-After,
        for at most `retry_for_s`; past that, GatewayUnavailable. Other problems raise at once."""
        budget_s = self.retry_for_s if retry_for_s is None else retry_for_s
        retrying = AsyncRetrying(
            retry=retry_if_exception(is_retryable),
            wait=WaitRetryAfter(),
            stop=stop_after_delay(budget_s),
            reraise=True,
        )

        async def once() -> httpx.Response:
            response = await self.client.request(method, url, **kwargs)
            raise_for_problem(response)
            return response

        try:
            return await retrying(once)
        except (RetryableResponse, httpx.TransportError) as e:
            raise GatewayUnavailable(f"gave up after {budget_s:.0f} s of retries: {describe(e)}") from e

    async def check_reachable(self) -> None:
        """A wrong URL fails in seconds; a gateway that goes away later gets the full budget."""
        await self._request("GET", "/healthz", retry_for_s=min(self.retry_for_s, PREFLIGHT_RETRY_S), timeout=5)

    async def submit(self, filename: str, data: bytes, content_type: str, *, top_k: int, key: str) -> dict[str, Any]:
        """The accepted job (a replay of the first one when the key was seen before)."""
        response = await self._request(
            "POST",
            "/v1/jobs",
            params={"top_k": top_k},
            files={"file": (filename, data, content_type)},
            headers={"Idempotency-Key": key},
        )
        job: dict[str, Any] = response.json()
        return job

    async def get_job(self, job_id: str, wait_s: float = 0) -> dict[str, Any]:
        response = await self._request("GET", f"/v1/jobs/{job_id}", params={"wait": wait_s}, timeout=wait_s + 15)
        doc: dict[str, Any] = response.json()
        return doc

    async def wait(self, job: dict[str, Any]) -> dict[str, Any]:
        """The job's terminal document."""
        doc = job
        if doc["status"] not in TERMINAL:
            try:
                doc = await self._follow_stream(job["id"])
            except StreamFailed:
                doc = await self._long_poll(job["id"])
        if doc["status"] == "succeeded" and not doc.get("result"):
            doc = await self.get_job(job["id"])  # a replayed event may carry only the changed fields
        return doc

    async def _follow_stream(self, job_id: str) -> dict[str, Any]:
        last_event_id: str | None = None
        failures = 0
        while True:
            headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
            try:
                async with aconnect_sse(
                    self.client, "GET", f"/v1/jobs/{job_id}/events", headers=headers,
                    timeout=httpx.Timeout(10.0, read=STREAM_READ_TIMEOUT_S),
                ) as source:
                    if source.response.status_code != 200:
                        await source.response.aread()
                        raise_for_problem(source.response)
                    async for event in source.aiter_sse():
                        if event.event != "status":
                            continue
                        failures = 0
                        last_event_id = event.id or last_event_id
                        data: dict[str, Any] = json.loads(event.data)
                        if data.get("status") in TERMINAL:
                            return data
                # The gateway ends a stream only after the terminal event: this was a drop.
                failures += 1
            except (httpx.TransportError, RetryableResponse, SSEError) as e:
                failures += 1
                if failures >= STREAM_ATTEMPTS:
                    raise StreamFailed(describe(e)) from e
            if failures >= STREAM_ATTEMPTS:
                raise StreamFailed("the event stream kept ending early")
            await asyncio.sleep(0.5 * 2**failures)

    async def _long_poll(self, job_id: str) -> dict[str, Any]:
        while True:
            doc = await self.get_job(job_id, wait_s=LONG_POLL_S)
            if doc["status"] in TERMINAL:
                return doc


class StreamFailed(Exception):
    """The event stream failed STREAM_ATTEMPTS times in a row."""


def describe(error: BaseException) -> str:
    if isinstance(error, RetryableResponse):
        return str(error)
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
