"""Liveness, readiness and metrics."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse, Response
from prometheus_client.exposition import choose_encoder
from starlette.concurrency import run_in_threadpool

from api.deps import ServicesDep
from api.metrics import refresh_gauges
from api.problems import problem
from api.process_metrics import registry_to_expose
from api.schemas import ANY_ROUTE_PROBLEMS, problem_responses
from api.services import Services
from shared.errors import InvalidMetricsToken
from shared.queue import ping_on_a_new_connection

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive", responses=problem_responses(*ANY_ROUTE_PROBLEMS))
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def check_dependencies(services: Services) -> dict[str, str]:
    """`ok` or the error, for each dependency this gateway needs."""
    checks: dict[str, str] = {}
    probes: dict[str, Any] = {
        # Not the pooled client: a pooled connection that is already open keeps working when the
        # mesh starts denying this gateway (Consul's sidecar authorizes only at the TLS
        # handshake), so only a new connection tells whether the gateway can still reach Redis.
        "redis": lambda: ping_on_a_new_connection(services.settings.redis_url, timeout_s=2),
        "store": services.store.ping,
    }
    probes.update(services.extra_readiness_probes)
    for name, probe in probes.items():
        try:
            probe()
            checks[name] = "ok"
        except Exception as e:
            checks[name] = f"{type(e).__name__}: {e}"
    return checks


@router.get("/readyz", summary="Redis and the job store answer (503 names the one that does not)",
            responses=problem_responses(503, *ANY_ROUTE_PROBLEMS))
async def readyz(services: ServicesDep) -> JSONResponse:
    checks = await run_in_threadpool(check_dependencies, services)
    failing = [name for name, result in checks.items() if result != "ok"]
    if failing:
        detail = "; ".join(f"{name} unreachable: {checks[name]}" for name in failing)
        response = problem(503, "Not ready", detail, retry_after_s=5)
        response.headers["X-Failing-Dependencies"] = ",".join(failing)
        return response
    return JSONResponse({"status": "ready", "checks": checks})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses=problem_responses(*ANY_ROUTE_PROBLEMS))
async def metrics(services: ServicesDep, accept: Annotated[str | None, Header()] = None,
                  authorization: Annotated[str | None, Header(include_in_schema=False)] = None) -> Response:
    """Prometheus' text format, or OpenMetrics (with exemplars: the trace ids of samples) to a scraper
    that asks for it in Accept; with several gateway processes, all of theirs (api/process_metrics.py).
    With ASYNCINFER_METRICS_TOKEN, only for `Authorization: Bearer <it>`."""
    token = services.settings.metrics_token
    if token is not None and not secrets.compare_digest(
            (authorization or "").removeprefix("Bearer ").strip().encode(), token.get_secret_value().encode()):
        raise InvalidMetricsToken("send the metrics token as Authorization: Bearer <token>")
    await run_in_threadpool(refresh_gauges, services)
    encode, content_type = choose_encoder(accept or "")
    return Response(encode(registry_to_expose()), media_type=content_type)
