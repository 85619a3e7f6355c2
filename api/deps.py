"""Dependencies injected into route handlers, as Annotated aliases.

They are `async def` although they never wait: FastAPI runs a plain `def` dependency in its
thread pool, three hand-offs per request; under load, dependency solving with those hand-offs
was 13% of the event loop thread's samples (py-spy, bench/).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Query, Request
from starlette.concurrency import run_in_threadpool

from api.rate_limit import client_of
from api.services import Services
from api.stream_tokens import Kind
from shared.constants import DEFAULT_TENANT, MAX_TOP_K
from shared.errors import InvalidApiKey
from shared.models.spec import MODEL_REF_PATTERN
from shared.sessions import SESSION_ID_PATTERN


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def tenant_of_key(services: Services, key: str | None) -> str:
    """The tenant of an API key; everyone is one tenant when no keys are set."""
    if not services.keys.enabled:
        return DEFAULT_TENANT
    tenant = services.keys.tenant_of(key) if key else None
    if tenant is None:
        raise InvalidApiKey("send a valid key in the X-API-Key header (or Authorization: Bearer)")
    return tenant


async def get_header_key(
    x_api_key: Annotated[str | None, Header(description="API key, when keys are configured")] = None,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> str:
    """The API key sent in X-API-Key or as Authorization: Bearer; empty when none."""
    return x_api_key or (authorization or "").removeprefix("Bearer ").strip()


HeaderKeyDep = Annotated[str, Depends(get_header_key)]


def address_of(request: Request) -> str | None:
    return request.client.host if request.client else None


async def within_rate(services: Services, who: str) -> None:
    """RateLimited (429) when `who` has no request left (api/rate_limit.py); a Redis round trip, so
    off the event loop, and none at all when no rate is set."""
    if services.rate_limiter.on:
        await run_in_threadpool(services.rate_limiter.admit, who)


async def admitted_tenant(services: Services, request: Request, key: str | None) -> str:
    """The key's tenant, once the client is within its request rate. A request with a wrong key
    draws on its address's bucket: guessing keys is limited too."""
    try:
        tenant = tenant_of_key(services, key)
    except InvalidApiKey:
        await within_rate(services, client_of(None, address_of(request)))
        raise
    await within_rate(services, client_of(key if services.keys.enabled else None, address_of(request)))
    return tenant


def refuse_key_in_query(services: Services, request: Request) -> None:
    """A key in a URL ends up in proxies' logs, browser history and Referer headers: with keys on, a
    request that carries one (`api_key=`) is refused on every route, even with a valid header too."""
    if services.keys.enabled and "api_key" in request.query_params:
        raise InvalidApiKey("an API key in the URL is refused: send it in the X-API-Key header (event streams "
                            "take a stream token: POST /v1/jobs/{id}/stream-token)")


async def get_tenant(services: ServicesDep, request: Request, header_key: HeaderKeyDep) -> str:
    refuse_key_in_query(services, request)
    return await admitted_tenant(services, request, header_key)


TenantDep = Annotated[str, Depends(get_tenant)]

StreamToken = Annotated[str | None, Query(
    max_length=1024,
    description="A stream token of this job or batch (POST …/stream-token), in place of the API key: for "
    "browsers' EventSource, which cannot send headers",
)]


async def stream_tenant(services: Services, request: Request, header_key: str, token: str | None,
                        kind: Kind, target: str) -> str:
    """The tenant of an event stream: the header's key, or else a stream token for this very job or batch."""
    refuse_key_in_query(services, request)
    if header_key or not token or not services.keys.enabled:
        return await admitted_tenant(services, request, header_key)
    tenant = await run_in_threadpool(services.stream_tokens.verify, token, kind, target)  # Redis, once, in dev
    await within_rate(services, client_of(None, address_of(request)))  # a token's stream: its address's bucket
    return tenant


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

SessionIdParam = Annotated[str | None, Query(
    pattern=f"^{SESSION_ID_PATTERN}$",
    description="Join this session of the caller's (POST /v1/sessions): the job is added to its history; an unknown "
    "or another tenant's session answers 404, nothing stored",
)]
CallbackUrl = Annotated[str | None, Query(
    min_length=1, max_length=2048,
    description="Where the gateway POSTs the job, signed (Standard Webhooks), once it has ended: an https URL whose "
    "host is not private, loopback or link-local unless allow-listed; refused with 422 otherwise, nothing stored",
)]
