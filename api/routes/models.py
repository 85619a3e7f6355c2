"""/v1/models: which models this gateway serves, each version's input, backlog and live workers."""

from __future__ import annotations

from typing import Any

import redis
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import ServicesDep, TenantDep
from api.schemas import PROBLEM_RESPONSES, ModelList, ModelPublic
from api.services import Services
from shared.errors import DependencyUnavailable
from shared.models import ModelSpec
from shared.models.panel import panel_of
from shared.scaling import WorkCounts
from shared.work_in_redis import count_work_by_model

router = APIRouter(prefix="/v1/models", tags=["models"])


def _version_view(spec: ModelSpec, work: WorkCounts) -> dict[str, Any]:
    return {
        "version": spec.version,
        "status": "serving" if work.live_workers else "no_workers",
        "backlog": work.waiting,
        "live_workers": work.live_workers,
        "input": spec.input.as_dict(),
        "runtimes": list(spec.runtimes),
        "default_top_k": spec.default_top_k,
        "max_top_k": spec.max_top_k,
        "batch_sizes": dict(spec.batch_sizes),
        "source": spec.source,
    }


def _traffic(services: Services, name: str, versions: dict[str, ModelSpec]) -> dict[str, float]:
    """Each served version's share (percent) of the jobs that name only the model."""
    shares = services.submitter.splits.shares(name, list(versions))
    return {version: round(share, 2) for version, share in shares.items()}


def _model_view(services: Services, name: str, work: dict[str, WorkCounts]) -> dict[str, Any]:
    versions = services.catalogue.versions(name)
    latest = next(reversed(versions.values()))
    views = [_version_view(spec, work[spec.ref]) for spec in versions.values()]
    traffic = _traffic(services, name, versions)
    panel = panel_of(latest, services.settings.panel_origins)
    return {
        "name": name,
        "task": latest.task,
        "description": latest.description,
        "default_version": max(traffic, key=lambda version: traffic[version]),
        "traffic": traffic,
        "status": "serving" if any(view["live_workers"] for view in views) else "no_workers",
        "backlog": sum(view["backlog"] for view in views),
        "live_workers": sum(view["live_workers"] for view in views),
        "versions": views,
        "panel": panel.as_dict() if panel else None,
    }


@router.get("", summary="Every model, with its versions, default version, backlog and live workers",
            responses={200: {"model": ModelList}, **PROBLEM_RESPONSES})
async def list_models(services: ServicesDep, tenant: TenantDep) -> JSONResponse:
    models = await run_in_threadpool(_views, services, list(services.catalogue.models()))
    return JSONResponse({"default_model": services.catalogue.resolve(None).name, "models": models})


@router.get("/{name}", summary="One model, with its versions, default version, backlog and live workers",
            responses={200: {"model": ModelPublic}, **PROBLEM_RESPONSES})
async def get_model(name: str, services: ServicesDep, tenant: TenantDep) -> JSONResponse:
    services.catalogue.versions(name)  # 404 before Redis is asked
    return JSONResponse((await run_in_threadpool(_views, services, [name]))[0])


def _views(services: Services, names: list[str]) -> list[dict[str, Any]]:
    """The views of `names`, from one reading of Redis (it also holds the traffic splits)."""
    try:
        work = count_work_by_model(services.redis, services.catalogue.queues())
        return [_model_view(services, name, work) for name in names]
    except redis.RedisError as e:
        raise DependencyUnavailable(f"Redis does not answer: {e}") from e
