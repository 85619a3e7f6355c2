"""/v1/jobs: submit one image, read (or long-poll) a job, cancel it."""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.admission.uploads import form_callback_url, form_model, form_session_id, form_top_k, read_single_upload
from api.deps import CallbackUrl, DeadlineS, ModelParam, ServicesDep, SessionIdParam, TenantDep, TopK
from api.following.long_poll import wait_for_terminal
from api.metrics import JOBS_SUBMITTED
from api.schemas import PROBLEM_RESPONSES, JobPage, JobPublic, upload_body
from shared.errors import BadCursor, BadRequest
from shared.jobs import JobStatus, public_view
from shared.logs import request_id_var
from shared.store.tenant_jobs import Entry, JobQuery

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

MAX_LIST_LIMIT = 100
# A listing entry (shared/store/tenant_jobs.py): the job's creation in unix ms, and its id.
CURSOR_PATTERN = r"^[0-9]{13}:[A-Za-z0-9-]{1,64}$"

@router.post(
    "",
    status_code=202,
    summary="Submit one image",
    description="JPEG, PNG, WebP, BMP or GIF (first frame), as multipart `file` or a raw "
    "`image/*` body. Answers at once with the queued job; follow it with `GET /v1/jobs/{id}"
    "?wait=N` or the event stream.",
    responses={202: {"model": JobPublic}, **PROBLEM_RESPONSES},
    openapi_extra=upload_body("file", many=False, raw_image=True),
)
async def submit_job(
    request: Request,
    services: ServicesDep,
    tenant: TenantDep,
    model: ModelParam = None,
    top_k: TopK = None,
    deadline_s: DeadlineS = None,
    callback_url: CallbackUrl = None,
    session_id: SessionIdParam = None,
    idempotency_key: Annotated[
        str | None,
        Header(max_length=255, description="Repeat a submission safely: the same key and "
               "image return the first job"),
    ] = None,
) -> JSONResponse:
    upload, form = await read_single_upload(request, services.settings.max_image_bytes)
    doc, created = await run_in_threadpool(
        services.submitter.submit_job,
        upload,
        tenant=tenant,
        model=form_model(form, model),
        top_k=form_top_k(form, top_k),
        deadline_s=deadline_s,
        idempotency_key=idempotency_key,
        request_id=request_id_var.get(),
        callback_url=form_callback_url(form, callback_url),
        session_id=form_session_id(form, session_id),
    )
    headers = {"Location": f"/v1/jobs/{doc['id']}"}
    if created:
        JOBS_SUBMITTED.labels(doc["model"]["name"], doc["model"]["version"]).inc()
    else:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(public_view(doc), status_code=202, headers=headers)


@router.get(
    "",
    summary="List the caller's jobs, newest first",
    description="Cursor-paginated: each page's `next_cursor` continues where it ended, in an order that "
    "does not change while jobs run (jobs created after the first page are not listed). A page may hold "
    "fewer than `limit` jobs and still have a cursor when the filters match few jobs.",
    responses={200: {"model": JobPage}, **PROBLEM_RESPONSES},
)
async def list_jobs(
    services: ServicesDep,
    tenant: TenantDep,
    status: Annotated[list[JobStatus] | None, Query(description="Only jobs in these statuses (repeatable)")] = None,
    batch_id: Annotated[str | None, Query(max_length=64)] = None,
    model: Annotated[str | None, Query(max_length=200, description="Only jobs run by this model")] = None,
    session_id: Annotated[str | None, Query(max_length=64, description="Only jobs of this session")] = None,
    created_after: Annotated[str | None, Query(description="RFC 3339 with a zone; only jobs created later",
                                               json_schema_extra={"format": "date-time"})] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(pattern=CURSOR_PATTERN, description="The previous page's next_cursor")] = None,
) -> JSONResponse:
    query = JobQuery(
        limit=limit,
        statuses=frozenset(item.value for item in status or ()),
        batch_id=batch_id,
        model=model,
        session_id=session_id,
        created_after_ms=None if created_after is None else unix_ms(created_after, "created_after"),
        before=None if cursor is None else decode_cursor(cursor),
    )
    page, last = await run_in_threadpool(services.store.list_jobs, tenant, query, int(time.time() * 1000))
    body = {"jobs": [public_view(doc) for doc in page], "next_cursor": None if last is None else last.encode()}
    return JSONResponse(body)


@router.get(
    "/{job_id}",
    summary="Read a job; `wait` long-polls until it is terminal",
    responses={200: {"model": JobPublic}, **PROBLEM_RESPONSES},
)
async def get_job(
    job_id: str,
    services: ServicesDep,
    tenant: TenantDep,
    wait: Annotated[float, Query(ge=0, le=30, description="Seconds to hold the request until "
                                 "the job is terminal")] = 0,
) -> JSONResponse:
    doc = await wait_for_terminal(services, job_id, tenant, wait)
    body = public_view(doc)
    if doc["status"] == JobStatus.QUEUED:
        position = await services.positions.position_off_loop(doc)
        if position is not None:
            body["position"] = position
    return JSONResponse(body)


@router.delete(
    "/{job_id}",
    status_code=202,
    summary="Cancel a job that has not started (409 once it has); with `purge=true`, delete a finished one",
    description="`purge=true` removes a finished job's document, image, idempotency key and listing entry "
    "(`204`); a queued or running job is refused with `409`.",
    responses={202: {"model": JobPublic}, 204: {"description": "Purged"}, **PROBLEM_RESPONSES},
)
async def cancel_job(
    job_id: str,
    services: ServicesDep,
    tenant: TenantDep,
    purge: Annotated[bool, Query(description="Delete the finished job and everything stored about it")] = False,
) -> Response:
    if purge:
        await run_in_threadpool(services.store.purge_job, job_id, tenant)
        return Response(status_code=204)
    doc = await run_in_threadpool(services.lifecycle.cancel, job_id, tenant)
    return JSONResponse(public_view(doc), status_code=202)


_RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def unix_ms(text: str, name: str) -> int:
    """An RFC 3339 time with its zone, as unix milliseconds (a leap second counts as :59)."""
    found = _RFC3339.match(text)
    try:
        if found is None:
            raise ValueError(text)
        day, minutes, seconds, fraction, zone = found.groups()
        seconds = min(int(seconds), 59)
        zone = "+00:00" if zone in "Zz" else zone
        return int(datetime.fromisoformat(f"{day}T{minutes}:{seconds:02d}{fraction or ''}{zone}").timestamp() * 1000)
    except ValueError:
        raise BadRequest(f"{name}: an RFC 3339 time with its zone, for example 2026-12-02T10:00:00Z") from None


def decode_cursor(cursor: str) -> Entry:
    try:
        return Entry.decode(cursor)
    except ValueError:
        raise BadCursor("cursor: pass the next_cursor of an earlier page, unchanged") from None
