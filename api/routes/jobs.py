"""/v1/jobs: submit one image, read (or long-poll) a job, cancel it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.admission.uploads import form_top_k, read_single_upload
from api.deps import DeadlineS, ServicesDep, TenantDep, TopK
from api.following.long_poll import wait_for_terminal
from api.metrics import JOBS_SUBMITTED
from api.schemas import PROBLEM_RESPONSES, JobPublic, upload_body
from shared.constants import DEFAULT_TOP_K
from shared.jobs import public_view

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

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
    top_k: TopK = DEFAULT_TOP_K,
    deadline_s: DeadlineS = None,
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
        top_k=form_top_k(form, top_k),
        deadline_s=deadline_s,
        idempotency_key=idempotency_key,
    )
    headers = {"Location": f"/v1/jobs/{doc['id']}"}
    if created:
        JOBS_SUBMITTED.inc()
    else:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(public_view(doc), status_code=202, headers=headers)


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
    return JSONResponse(public_view(doc))


@router.delete(
    "/{job_id}",
    status_code=202,
    summary="Cancel a job that has not started (409 once it has)",
    responses={202: {"model": JobPublic}, **PROBLEM_RESPONSES},
)
async def cancel_job(job_id: str, services: ServicesDep, tenant: TenantDep) -> JSONResponse:
    doc = await run_in_threadpool(services.lifecycle.cancel, job_id, tenant)
    return JSONResponse(public_view(doc), status_code=202)
