"""How long the gateway takes to answer, by method, route template and status: a pure ASGI
middleware, so it passes every message on as it comes and never buffers a streamed body."""

from __future__ import annotations

import time

from prometheus_client import REGISTRY, CollectorRegistry, Histogram
from starlette.datastructures import Headers
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.tracing import current_trace_id, exemplar

UNMATCHED_ROUTE = "unmatched"
OTHER_METHOD = "other"
# Any token is a method to the HTTP parser; these are the ones that get their own series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
EVENT_STREAM = "text/event-stream"
# From a cached GET (milliseconds) to a long poll held for its whole `wait` (up to 30 s) or a large upload.
HTTP_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def http_request_histogram(registry: CollectorRegistry = REGISTRY) -> Histogram:
    return Histogram(
        "asyncinfer_http_request_seconds",
        "Seconds from a request's arrival to the end of its response, by method, route template and status; "
        "an event stream (text/event-stream) to its response head, since it stays open as long as the client wants",
        ["method", "route", "status"],
        buckets=HTTP_SECONDS_BUCKETS,
        registry=registry,
    )


HTTP_REQUEST_SECONDS = http_request_histogram()


def route_of(scope: Scope) -> str:
    """The path template of the route the router matched (`/v1/jobs/{job_id}`), never the raw path;
    a mount's template ends in `{path}`."""
    route = scope.get("route")
    if route is None:
        # FastAPI puts `route` in the scope for its own routes only; a mount is the one whose app got the request.
        route = next((candidate for candidate in getattr(scope.get("router"), "routes", ())
                      if isinstance(candidate, Mount) and candidate.app is scope.get("endpoint")), None)
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(template) if template else UNMATCHED_ROUTE


class HttpMetricsMiddleware:
    """Observes one sample per HTTP request in `histogram`. The outermost layer, so that answers the
    problem middleware makes itself (431, an unexpected error's 500) are measured too."""

    def __init__(self, app: ASGIApp, *, histogram: Histogram = HTTP_REQUEST_SECONDS) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = scope["method"] if scope["method"] in KNOWN_METHODS else OTHER_METHOD
        status: int | None = None
        observed = False

        def observe() -> None:
            nonlocal observed
            if not observed:
                observed = True
                self.histogram.labels(method, route_of(scope), str(status or 500)).observe(
                    time.perf_counter() - started, exemplar=exemplar(current_trace_id()))

        async def measured_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                streaming = Headers(raw=message.get("headers", [])).get("content-type", "").startswith(EVENT_STREAM)
                await send(message)
                if streaming:
                    observe()
                return
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                observe()

        try:
            await self.app(scope, receive, measured_send)
        finally:
            # A response cut short (the client left, an error after the head) still counts once;
            # an exception before any head is the 500 the server answers.
            observe()
