"""Every error leaves the gateway as RFC 9457 application/problem+json."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.metrics import REQUESTS_REJECTED
from shared.errors import AsyncInferError

PROBLEM_TYPE_BASE = "https://asyncinfer.dev/problems/"


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    retry_after_s: int | None = None,
    errors: list[Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + str(status),
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
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


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    title = HTTPStatus(exc.status_code).phrase
    return problem(exc.status_code, title, str(exc.detail))


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AsyncInferError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
