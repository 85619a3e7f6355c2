"""Server-sent events endpoints: a job's, a batch's or a session's status changes (api/following/)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from api.deps import HeaderKeyDep, ServicesDep, StreamToken, TenantDep, stream_tenant
from api.following.session_stream import session_stream
from api.following.streams import batch_stream, check_stream_capacity, job_stream, parse_last_event_id
from api.schemas import EVENT_DATA_SCHEMAS, PROBLEM_RESPONSES, StreamTokenPublic
from api.services import Services
from api.stream_tokens import Kind

router = APIRouter(tags=["events"])

def _sse_response(*events: str) -> dict[int | str, dict[str, Any]]:
    """A 200 that is an event stream: the schema is one event's (as OpenAPI tools read a stream's),
    and `x-event-data` names each event's data schema."""
    event = {
        "type": "object",
        "required": ["data"],
        "properties": {"event": {"enum": list(events)}, "id": {"type": "string"}, "data": {"type": "string"}},
    }
    return {200: {
        "description": "server-sent events: " + ", ".join(events),
        "content": {"text/event-stream": {"schema": event}},
        "x-event-data": {event: {"$ref": f"#/components/schemas/{EVENT_DATA_SCHEMAS[event]}"} for event in events},
    }}


@router.get(
    "/v1/jobs/{job_id}/events",
    summary="Stream a job's status changes (SSE), with its `position` while queued; ends after the terminal "
    "event, or for a job with a callback_url once its webhook is delivered or given up (`delivery` events)",
    response_class=EventSourceResponse,
    responses={**_sse_response("status", "position", "delivery"), **PROBLEM_RESPONSES},
)
async def job_events(
    job_id: str,
    request: Request,
    services: ServicesDep,
    header_key: HeaderKeyDep,
    token: StreamToken = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> EventSourceResponse:
    return await _open(services, request, header_key, token, "job", job_id, last_event_id, job_stream)


@router.get(
    "/v1/batches/{batch_id}/events",
    summary="Stream a batch's job changes and progress counts (SSE)",
    response_class=EventSourceResponse,
    responses={**_sse_response("status", "progress"), **PROBLEM_RESPONSES},
)
async def batch_events(
    batch_id: str,
    request: Request,
    services: ServicesDep,
    header_key: HeaderKeyDep,
    token: StreamToken = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> EventSourceResponse:
    return await _open(services, request, header_key, token, "batch", batch_id, last_event_id, batch_stream)


@router.get(
    "/v1/sessions/{session_id}/events",
    summary="Stream every status change of a session's jobs, those that join it later too, each followed by the "
    "counts (`session`), as after the replay (SSE); ends when the session expires (`session-ended`)",
    response_class=EventSourceResponse,
    responses={**_sse_response("status", "session", "session-ended"), **PROBLEM_RESPONSES},
)
async def session_events(
    session_id: str,
    request: Request,
    services: ServicesDep,
    header_key: HeaderKeyDep,
    token: StreamToken = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> EventSourceResponse:
    return await _open(services, request, header_key, token, "session", session_id, last_event_id, session_stream)


Stream = Callable[[Services, str, str, int], AsyncIterator[Any]]


def _read(services: Services, kind: Kind, target: str, tenant: str) -> object:
    """The tenant's job, batch or session; its NotFound (404) when there is none."""
    reader = {"job": services.store.get_job, "batch": services.store.get_batch,
              "session": services.store.sessions.get}[kind]
    return reader(target, tenant=tenant)


async def _open(services: Services, request: Request, header_key: str, token: str | None, kind: Kind, target: str,
                last_event_id: str | None, stream: Stream) -> EventSourceResponse:
    """An event stream, once its caller, the capacity and its target (404 before streaming) are checked."""
    tenant = await stream_tenant(services, request, header_key, token, kind, target)
    check_stream_capacity(services)
    if kind == "job":
        await services.job_reads.get_job(target, tenant=tenant)  # coalesced with the streams' own reads
    else:
        await run_in_threadpool(_read, services, kind, target, tenant)
    # ping=0: the streams send their own keep-alive comments (stream_subscription in api/following/streams.py).
    return EventSourceResponse(stream(services, target, tenant, parse_last_event_id(last_event_id)), ping=0)


async def _issue(services: Services, tenant: str, kind: Kind, target: str) -> JSONResponse:
    await run_in_threadpool(_read, services, kind, target, tenant)  # 404: none of this tenant's
    token, expires_at = await run_in_threadpool(services.stream_tokens.issue, tenant, kind, target)
    return JSONResponse({"token": token, "expires_at": expires_at}, headers={"Cache-Control": "no-store"})


_TOKEN_DESCRIPTION = (
    "With API keys on, a token that opens this {kind}'s event stream in place of the key, as `?token=` (a "
    "browser's EventSource cannot send headers): for this {kind} only, until `expires_at` "
    "(ASYNCINFER_STREAM_TOKEN_TTL_S). Without keys, a token too, though streams need none."
)


@router.post(
    "/v1/jobs/{job_id}/stream-token",
    summary="A short-lived token that opens this job's event stream without the API key",
    description=_TOKEN_DESCRIPTION.format(kind="job"),
    responses={200: {"model": StreamTokenPublic}, **PROBLEM_RESPONSES},
)
async def job_stream_token(job_id: str, services: ServicesDep, tenant: TenantDep) -> JSONResponse:
    return await _issue(services, tenant, "job", job_id)


@router.post(
    "/v1/batches/{batch_id}/stream-token",
    summary="A short-lived token that opens this batch's event stream without the API key",
    description=_TOKEN_DESCRIPTION.format(kind="batch"),
    responses={200: {"model": StreamTokenPublic}, **PROBLEM_RESPONSES},
)
async def batch_stream_token(batch_id: str, services: ServicesDep, tenant: TenantDep) -> JSONResponse:
    return await _issue(services, tenant, "batch", batch_id)


@router.post(
    "/v1/sessions/{session_id}/stream-token",
    summary="A short-lived token that opens this session's event stream without the API key",
    description=_TOKEN_DESCRIPTION.format(kind="session"),
    responses={200: {"model": StreamTokenPublic}, **PROBLEM_RESPONSES},
)
async def session_stream_token(session_id: str, services: ServicesDep, tenant: TenantDep) -> JSONResponse:
    return await _issue(services, tenant, "session", session_id)
