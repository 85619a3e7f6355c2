"""Dependencies injected into route handlers, as Annotated aliases.

They are `async def` although they never wait: FastAPI runs a plain `def` dependency in its
thread pool, three hand-offs per request; under load, dependency solving with those hand-offs
was 13% of the event loop thread's samples (py-spy, bench/).
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Header, Query, Request
from starlette.concurrency import run_in_threadpool

from api.rate_limit import client_of
from api.services import Services
from shared.config import Settings
from shared.constants import DEFAULT_TENANT, MAX_TOP_K
from shared.errors import InvalidApiKey
from shared.models.spec import MODEL_REF_PATTERN


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def tenant_of_key(settings: Settings, key: str | None) -> str:
    """The tenant of an API key; everyone is one tenant when no keys are set."""
    if not settings.api_keys:
        return DEFAULT_TENANT
    for known, tenant in settings.api_keys.items():
        # As bytes: compare_digest refuses str with non-ASCII characters, which any header may carry.
        if key and secrets.compare_digest(key.encode(), known.encode()):
            return tenant
    raise InvalidApiKey("send a valid key in the X-API-Key header (or Authorization: Bearer)")


async def get_header_key(
    x_api_key: Annotated[str | None, Header(description="API key, when keys are configured")] = None,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> str:
    """The API key sent in X-API-Key or as Authorization: Bearer; empty when none."""
    return x_api_key or (authorization or "").removeprefix("Bearer ").strip()


HeaderKeyDep = Annotated[str, Depends(get_header_key)]


async def admitted_tenant(services: Services, request: Request, key: str | None) -> str:
    """The key's tenant, once the client is within its request rate (api/rate_limit.py). A request
    with a wrong key draws on its address's bucket: guessing keys is limited too."""
    address = request.client.host if request.client else None
    limiter = services.rate_limiter
    try:
        tenant = tenant_of_key(services.settings, key)
    except InvalidApiKey:
        if limiter.on:
            await run_in_threadpool(limiter.admit, client_of(None, address))
        raise
    if limiter.on:  # a Redis round trip: off the event loop
        await run_in_threadpool(limiter.admit, client_of(key if services.settings.api_keys else None, address))
    return tenant


async def get_tenant(services: ServicesDep, request: Request, header_key: HeaderKeyDep) -> str:
    return await admitted_tenant(services, request, header_key)


TenantDep = Annotated[str, Depends(get_tenant)]


async def get_stream_tenant(
    services: ServicesDep,
    request: Request,
    header_key: HeaderKeyDep,
    api_key: Annotated[
        str | None,
        Query(description="API key for browsers' EventSource, which cannot send headers (event streams only)"),
    ] = None,
) -> str:
    return await admitted_tenant(services, request, header_key or api_key)


StreamTenantDep = Annotated[str, Depends(get_stream_tenant)]

TopK = Annotated[int | None, Query(ge=1, le=MAX_TOP_K, description="How many classes to return; default and "
                                   "maximum are the model's (GET /v1/models)")]
ModelParam = Annotated[str | None, Query(
    max_length=100, pattern=MODEL_REF_PATTERN,
    description="`name` or `name@version` (GET /v1/models); default: the gateway's default model, at the version "
    "its traffic split picks",
)]

# A day: a deadline further out than that is no deadline for a queue that drains in seconds.
MAX_DEADLINE_S = 86_400.0
DeadlineS = Annotated[float | None, Query(
    gt=0, le=MAX_DEADLINE_S,
    description="Seconds within which the job must start; past that it ends `cancelled` with error code "
    "`timeout`. Refused (429, with Retry-After) when the measured drain rate says it cannot start in time.",
)]

CallbackUrl = Annotated[str | None, Query(
    min_length=1, max_length=2048,
    description="Where the gateway POSTs the job, signed (Standard Webhooks), once it has ended: an https URL whose "
    "host is not private, loopback or link-local unless allow-listed; refused with 422 otherwise, nothing stored",
)]
