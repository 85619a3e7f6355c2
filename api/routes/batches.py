"""/v1/batches: submit many images in one request, read a batch's progress."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.admission.uploads import (
    form_callback_url,
    form_model,
    form_session_id,
    form_top_k,
    is_multipart,
    read_form,
    to_upload,
)
from api.deps import CallbackUrl, DeadlineS, ModelParam, ServicesDep, SessionIdParam, TenantDep, TopK
from api.following.batch_progress import batch_view
from api.metrics import JOBS_SUBMITTED
from api.schemas import PROBLEM_RESPONSES, BatchPublic, upload_body
from shared.errors import BadRequest
from shared.logs import request_id_var

router = APIRouter(prefix="/v1/batches", tags=["batches"])


@router.post(
    "",
    status_code=202,
    summary="Submit many images (multipart, repeated `files`); all are checked before any is queued",
    responses={202: {"model": BatchPublic}, **PROBLEM_RESPONSES},
    openapi_extra=upload_body("files", many=True, raw_image=False),
)
async def submit_batch(
    request: Request, services: ServicesDep, tenant: TenantDep, model: ModelParam = None, top_k: TopK = None,
    deadline_s: DeadlineS = None, callback_url: CallbackUrl = None, session_id: SessionIdParam = None,
) -> JSONResponse:
    settings = services.settings
    if not is_multipart(request):
        raise BadRequest("send multipart/form-data with one `files` field per image")
    form = await read_form(
        request,
        max_files=settings.max_batch_files,
        max_bytes=settings.max_batch_bytes,
    )
    items = form.getlist("files")
    if not items:
        raise BadRequest("the multipart body has no `files` field")
    uploads = [await to_upload(item, "files") for item in items]
    batch = await run_in_threadpool(
        services.submitter.submit_batch, uploads, tenant=tenant, model=form_model(form, model),
        top_k=form_top_k(form, top_k),
        deadline_s=deadline_s,
        request_id=request_id_var.get(),
        callback_url=form_callback_url(form, callback_url),
        session_id=form_session_id(form, session_id),
    )
    JOBS_SUBMITTED.labels(batch["model"]["name"], batch["model"]["version"]).inc(len(batch["job_ids"]))
    jobs = [{"id": job_id, "status": "queued"} for job_id in batch["job_ids"]]
    body = {**batch_view(batch, jobs), "jobs": jobs}
    return JSONResponse(body, status_code=202, headers={"Location": f"/v1/batches/{batch['id']}"})


@router.get("/{batch_id}", summary="A batch with each job's status and the counts",
            responses={200: {"model": BatchPublic}, **PROBLEM_RESPONSES})
async def get_batch(batch_id: str, services: ServicesDep, tenant: TenantDep) -> JSONResponse:
    batch = await run_in_threadpool(services.store.get_batch, batch_id, tenant=tenant)
    docs = await run_in_threadpool(services.store.get_jobs, batch["job_ids"])
    return JSONResponse(batch_view(batch, docs))
