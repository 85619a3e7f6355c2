"""Every error leaves the gateway as RFC 9457 application/problem+json."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import REQUESTS_REJECTED
from shared.errors import AsyncInferError
from shared.logs import request_id_var

log = logging.getLogger(__name__)
access_log = logging.getLogger("asyncinfer.access")
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

PROBLEM_TYPE_BASE = "https://asyncinfer.dev/problems/"
REQUEST_ID_HEADER = "X-Request-ID"
# A client's own id is kept when it looks like one (so its logs and ours share it), never echoed otherwise.
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    retry_after_s: int | None = None,
    errors: list[Any] | None = None,
    request_id: str | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + str(status),
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    if request_id is not None:
        body["request_id"] = request_id
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s else None
    return JSONResponse(body, status_code=status, media_type="application/problem+json", headers=headers)


async def _app_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AsyncInferError)
    REQUESTS_REJECTED.labels(str(exc.status)).inc()
    return problem(
        exc.status, exc.title, exc.detail,
        retry_after_s=exc.retry_after_s, errors=getattr(exc, "errors", None),
    )


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"location": list(error["loc"]), "message": error["msg"]} for error in exc.errors()
    ]
    detail = "; ".join(f"{'.'.join(map(str, e['location']))}: {e['message']}" for e in errors)
    return problem(400, "Invalid request", detail, errors=errors)


def _documented_methods(request: Request) -> str:
    """Every documented method of the request's path: Starlette's 405 names only those of the
    first route whose path matched (GET of /v1/jobs/{id}, not its DELETE)."""
    paths: dict[str, dict[str, Any]] = request.app.openapi()["paths"]
    path = request.url.path
    return ", ".join(sorted(method.upper() for template, operations in paths.items()
                            if compile_path(template)[0].match(path) for method in operations))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    title = HTTPStatus(exc.status_code).phrase
    response = problem(exc.status_code, title, str(exc.detail))
    response.headers.update(exc.headers or {})  # a 405's Allow, above all
    if exc.status_code == 405 and (methods := _documented_methods(request)):
        response.headers["Allow"] = methods
    return response


def request_id_of(headers: Headers) -> str:
    sent = headers.get(REQUEST_ID_HEADER, "")
    return sent if _CLIENT_REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex


class ProblemMiddleware:
    """The outermost layer of the app but the request histogram (api/http_metrics.py): every response
    carries an X-Request-ID (and every log line about the request its id, shared/logs.py), every
    request gets an access log line, a request with too many or too long header fields gets 431, and
    an exception that no handler took becomes a 500 problem whose request_id is also in the log line
    with the traceback. (Starlette's ServerErrorMiddleware, outside every user middleware, would
    answer text/plain, log no id.)"""

    def __init__(self, app: ASGIApp, *, max_headers: int, max_header_bytes: int) -> None:
        self.app = app
        self.max_headers = max_headers
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(Headers(scope=scope))
        token = request_id_var.set(request_id)
        began = time.perf_counter()
        started = False
        status = 499  # what the access log says of a request whose client left before any answer (nginx's)

        async def send_with_id(message: Message) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                MutableHeaders(scope=message).append(REQUEST_ID_HEADER, request_id)
            await send(message)

        try:
            await self._answer(scope, receive, send_with_id, request_id, lambda: started)
        finally:
            log_access(scope, status, time.perf_counter() - began)
            request_id_var.reset(token)

    async def _answer(self, scope: Scope, receive: Receive, send_with_id: Send, request_id: str,
                      started: Callable[[], bool]) -> None:
        too_large = self._headers_too_large(scope["headers"])
        if too_large:
            await problem(431, "Request header fields too large", too_large)(scope, receive, send_with_id)
            return
        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            return  # nobody left to answer
        except Exception:
            log.exception("unexpected error in %s %s (request_id %s)", scope["method"], scope["path"], request_id)
            if started():
                return  # too late for a status: the client sees the response end early
            response = problem(500, "Internal error", "The gateway failed unexpectedly while handling this "
                               "request; quote its request_id when you report it.", request_id=request_id)
            await response(scope, receive, send_with_id)

    def _headers_too_large(self, headers: list[tuple[bytes, bytes]]) -> str | None:
        # h11 bounds what it buffers of a head that has not all arrived; a whole head that came in
        # one read is not measured, so its size is checked here too.
        size = sum(len(name) + len(value) for name, value in headers)
        if len(headers) > self.max_headers:
            return f"the request has {len(headers)} header fields; the limit is {self.max_headers}"
        if size > self.max_header_bytes:
            return f"the request's header fields are {size:,} bytes; the limit is {self.max_header_bytes:,}"
        return None


def log_access(scope: Scope, status: int, duration_s: float) -> None:
    """One line per request, once it is answered (a stream: once it ends). Probes and scrapes at
    DEBUG, so that they do not drown the rest."""
    path = scope["path"]
    level = logging.DEBUG if path in QUIET_PATHS else logging.INFO
    if access_log.isEnabledFor(level):
        duration_ms = round(duration_s * 1000, 1)
        access_log.log(level, "%s %s %d %.1f ms", scope["method"], path, status, duration_ms,
                       extra={"method": scope["method"], "path": path, "status": status, "duration_ms": duration_ms})


def install_problem_handlers(app: FastAPI, *, max_headers: int, max_header_bytes: int) -> None:
    app.add_exception_handler(AsyncInferError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(ProblemMiddleware, max_headers=max_headers, max_header_bytes=max_header_bytes)
