"""The request histogram (api/http_metrics.py): labelled by the matched route's template and the
status, unmatched paths under one label, and a streamed response passed on as it is sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, HTTPException
from prometheus_client import REGISTRY, CollectorRegistry
from sse_starlette import EventSourceResponse
from starlette.types import Message

from api.http_metrics import UNMATCHED_ROUTE, HttpMetricsMiddleware, http_request_histogram
from api.main import create_app
from shared.config import Settings

COUNT = "asyncinfer_http_request_seconds_count"


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def answers(app: FastAPI, *requests: tuple[str, str] | tuple[str, str, dict[str, str]]) -> list[int]:
    """The status of each (method, path[, headers]) sent to `app` in turn, in process (no lifespan)."""
    async def send_all() -> list[int]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return [(await client.request(request[0], request[1], headers=request[2] if len(request) > 2 else None))
                    .status_code for request in requests]

    return asyncio.run(send_all())


def count(registry: CollectorRegistry, method: str, route: str, status: int) -> float:
    return registry.get_sample_value(COUNT, {"method": method, "route": route, "status": str(status)}) or 0.0


def app_with_routes(registry: CollectorRegistry, stream_sent: asyncio.Event | None = None,
                    stream_may_end: asyncio.Event | None = None) -> FastAPI:
    app = FastAPI()
    app.add_middleware(HttpMetricsMiddleware, histogram=http_request_histogram(registry))

    @app.get("/v1/jobs/{job_id}")
    async def job(job_id: str) -> dict[str, str]:
        if job_id == "missing":
            raise HTTPException(404, "no such job")
        return {"id": job_id}

    @app.get("/v1/jobs/{job_id}/events")
    async def events(job_id: str) -> EventSourceResponse:
        async def stream() -> AsyncIterator[dict[str, str]]:
            yield {"event": "status", "data": job_id}
            assert stream_sent is not None and stream_may_end is not None
            stream_sent.set()
            await stream_may_end.wait()
            yield {"event": "status", "data": "done"}

        return EventSourceResponse(stream())

    return app


def test_requests_are_labelled_by_route_template_method_and_status(registry: CollectorRegistry) -> None:
    statuses = answers(app_with_routes(registry), ("GET", "/v1/jobs/a1"), ("GET", "/v1/jobs/b2"), ("GET", "/v1/jobs/c3"),
                       ("GET", "/v1/jobs/missing"), ("DELETE", "/v1/jobs/a1"))

    assert statuses == [200, 200, 200, 404, 405]

    assert count(registry, "GET", "/v1/jobs/{job_id}", 200) == 3
    assert count(registry, "GET", "/v1/jobs/{job_id}", 404) == 1
    assert count(registry, "DELETE", "/v1/jobs/{job_id}", 405) == 1
    labels = {sample.labels["route"] for family in registry.collect() for sample in family.samples}
    assert labels == {"/v1/jobs/{job_id}"}  # never a raw path: one series per route, however many ids


def test_an_unmatched_path_and_an_unknown_method_get_fixed_labels(registry: CollectorRegistry) -> None:
    statuses = answers(app_with_routes(registry), ("GET", "/no/such/path/1"), ("GET", "/no/such/path/2"),
                       ("BREW", "/v1/jobs/a1"))

    assert statuses == [404, 404, 405]

    assert count(registry, "GET", UNMATCHED_ROUTE, 404) == 2
    assert count(registry, "other", "/v1/jobs/{job_id}", 405) == 1


def test_an_event_stream_is_passed_on_unbuffered_and_measured_to_its_head(registry: CollectorRegistry) -> None:
    asyncio.run(follow_a_stream(registry))


async def follow_a_stream(registry: CollectorRegistry) -> None:
    """Serve one event stream through the middleware, as the server would call the app."""
    stream_sent, stream_may_end, disconnected = asyncio.Event(), asyncio.Event(), asyncio.Event()
    app = app_with_routes(registry, stream_sent, stream_may_end)
    sent: list[Message] = []
    first_event_arrived = asyncio.Event()

    async def receive() -> Message:
        await disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and b"a1" in message.get("body", b""):
            first_event_arrived.set()

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": "/v1/jobs/a1/events", "raw_path": b"/v1/jobs/a1/events", "root_path": "", "query_string": b"",
             "headers": [(b"host", b"test")], "client": ("127.0.0.1", 1), "server": ("test", 80)}
    serving = asyncio.create_task(app(scope, receive, send))
    # The first event reaches the client while the stream is still open: nothing held it back.
    await asyncio.wait_for(first_event_arrived.wait(), 5)
    assert stream_sent.is_set() and not serving.done()
    assert count(registry, "GET", "/v1/jobs/{job_id}/events", 200) == 1

    stream_may_end.set()
    await asyncio.wait_for(serving, 5)
    disconnected.set()
    assert count(registry, "GET", "/v1/jobs/{job_id}/events", 200) == 1  # once, at the head


def test_the_gateway_measures_every_answer_the_problem_middleware_makes_too() -> None:
    """On the real app (create_app), the middleware is outermost: the problem middleware's own 431,
    answered before any route is matched, is counted under `unmatched`; the static files' mount has a
    template too."""
    settings = Settings(max_headers=20)
    def gateway_count(route: str, status: int) -> float:
        return REGISTRY.get_sample_value(COUNT, {"method": "GET", "route": route, "status": str(status)}) or 0.0

    healthz, too_many = gateway_count("/healthz", 200), gateway_count(UNMATCHED_ROUTE, 431)
    static = gateway_count("/static/{path}", 200), gateway_count("/static/{path}", 404)
    # No lifespan, so no services: these need none.
    statuses = answers(create_app(settings), ("GET", "/healthz"),
                       ("GET", "/healthz", {f"x-h{i}": "1" for i in range(30)}),
                       ("GET", "/static/shell.js"), ("GET", "/static/no-such-file.js"))

    assert statuses == [200, 431, 200, 404]
    assert gateway_count("/healthz", 200) == healthz + 1
    assert gateway_count(UNMATCHED_ROUTE, 431) == too_many + 1
    # The mounted static files: one template for every file, found or not.
    assert (gateway_count("/static/{path}", 200), gateway_count("/static/{path}", 404)) == (static[0] + 1, static[1] + 1)
