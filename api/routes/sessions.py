"""/v1/sessions: a user's multi-step analysis, the jobs submitted with its `session_id` (shared/sessions.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Query
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from api.deps import ServicesDep, TenantDep
from api.schemas import PROBLEM_RESPONSES, SessionCreate, SessionPublic
from api.services import Services
from shared.sessions import Session, jobs_in, new_session, session_csv, session_view

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])


@router.post(
    "",
    status_code=201,
    summary="Start a session; jobs submitted with its `session_id` join its history",
    responses={201: {"model": SessionPublic}, **PROBLEM_RESPONSES},
)
async def create_session(services: ServicesDep, tenant: TenantDep,
                         body: Annotated[SessionCreate | None, Body()] = None) -> JSONResponse:
    ttl_s = body.ttl_s if body is not None and body.ttl_s is not None else services.settings.session_ttl_s
    session = new_session(tenant, ttl_s)
    await run_in_threadpool(services.store.sessions.create, session)
    return JSONResponse(session_view(session, {}), status_code=201,
                        headers={"Location": f"/v1/sessions/{session['id']}"})


@router.get(
    "/{session_id}",
    summary="A session: its jobs in the order they were submitted, each with its status and top prediction",
    description="`export=json` or `export=csv` answers the same as a file to save (`Content-Disposition: "
    "attachment`); CSV has one row per job with its top prediction.",
    responses={200: {"model": SessionPublic, "content": {"text/csv": {"schema": {"type": "string"}}}},
               **PROBLEM_RESPONSES},
)
async def get_session(session_id: str, services: ServicesDep, tenant: TenantDep,
                      export: Annotated[Literal["json", "csv"] | None, Query(
                          description="Answer as a file to save, in this format")] = None) -> Response:
    session = await run_in_threadpool(services.store.sessions.get, session_id, tenant=tenant)
    view = await run_in_threadpool(view_of, services, session)
    if export is None:
        return JSONResponse(view)
    attachment = {"Content-Disposition": f'attachment; filename="session-{session["id"]}.{export}"'}
    if export == "csv":
        return Response(session_csv(view), media_type="text/csv; charset=utf-8", headers=attachment)
    return JSONResponse(view, headers=attachment)


def view_of(services: Services, session: Session) -> dict[str, object]:
    live = {doc["id"]: doc for doc in services.store.get_jobs(jobs_in(session))}
    return session_view(session, live)
