"""Server-sent events endpoints: a job's or a batch's status changes (api/following/streams.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header
from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from api.deps import ServicesDep, StreamTenantDep
from api.following.streams import batch_stream, check_stream_capacity, job_stream, parse_last_event_id
from api.schemas import EVENT_DATA_SCHEMAS, PROBLEM_RESPONSES

router = APIRouter(tags=["events"])

def _sse_response(*events: str) -> dict[int | str, dict[str, Any]]:
    """A 200 that is an event stream; `x-event-data` names each event's data schema."""
    return {200: {
        "description": "server-sent events: " + ", ".join(events),
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
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
    services: ServicesDep,
    tenant: StreamTenantDep,
    last_event_id: Annotated[str | None, Header()] = None,
) -> EventSourceResponse:
    check_stream_capacity(services)
    await run_in_threadpool(services.store.get_job, job_id, tenant=tenant)  # 404 before streaming
    return EventSourceResponse(
        job_stream(services, job_id, tenant, parse_last_event_id(last_event_id)),
        ping=services.settings.sse_ping_s,
    )


@router.get(
    "/v1/batches/{batch_id}/events",
    summary="Stream a batch's job changes and progress counts (SSE)",
    response_class=EventSourceResponse,
    responses={**_sse_response("status", "progress"), **PROBLEM_RESPONSES},
)
async def batch_events(
    batch_id: str,
    services: ServicesDep,
    tenant: StreamTenantDep,
    last_event_id: Annotated[str | None, Header()] = None,
) -> EventSourceResponse:
    check_stream_capacity(services)
    await run_in_threadpool(services.store.get_batch, batch_id, tenant=tenant)
    return EventSourceResponse(
        batch_stream(services, batch_id, tenant, parse_last_event_id(last_event_id)),
        ping=services.settings.sse_ping_s,
    )
