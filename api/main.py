"""The gateway application: routers, problem handlers and the process's services."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import re
import signal
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from api.delivery.deliverer import Deliverer
from api.http_metrics import HttpMetricsMiddleware
from api.problems import install_problem_handlers
from api.recovery import Recoverer
from api.routes import batches, events, faults, health, jobs, models, panels, sessions, web
from api.schemas import extra_components
from api.services import Services
from shared.config import Settings, get_settings
from shared.logs import configure_logging
from shared.tracing import GATEWAY_SERVICE, configure_tracing, on

if TYPE_CHECKING:
    from shared.mesh import MeshRegistration

log = logging.getLogger(__name__)


async def sweep_forever(services: Services) -> None:
    """Delete expired jobs and images (the embedded store has no native expiry)."""
    while True:
        await asyncio.sleep(services.settings.sweep_interval_s)
        with contextlib.suppress(Exception):
            await run_in_threadpool(services.store.sweep_expired)


async def recover_forever(recoverer: Recoverer, interval_s: float) -> None:
    """A recovery pass every `interval_s`; a pass that fails (Redis or the store away) is retried."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await run_in_threadpool(recoverer.run_once)
        except Exception as e:
            log.warning("recovery pass failed (%s: %s); retrying in %.0f s", type(e).__name__, e, interval_s)


def create_app(settings: Settings | None = None, *, services: Services | None = None,
               registration: MeshRegistration | None = None,
               readiness_probes: Mapping[str, Callable[[], None]] | None = None) -> FastAPI:
    """The app; it opens its own `services` at start-up unless given them (api/serving.py does), and
    deregisters `registration` from the mesh when it shuts down. /readyz also runs `readiness_probes`
    (and the mesh agent's, with a `registration`)."""
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = services or Services.create(settings)
        app.state.services = own
        own.extra_readiness_probes.update(readiness_probes or {})
        if registration is not None:
            own.extra_readiness_probes["consul"] = registration.agent_answers
        await own.broadcaster.start()
        reloads_on_sighup = reload_keys_on_sighup(own)
        recoverer = Recoverer(settings, own.lifecycle, own.celery, own.redis, own.submitter.tenant_limits,
                              deliveries=own.deliveries)
        background = [
            asyncio.create_task(sweep_forever(own)),
            asyncio.create_task(recover_forever(recoverer, settings.recovery_interval_s)),
        ]
        if settings.webhook_secret.get_secret_value():
            deliverer = Deliverer(settings, own.store, own.lifecycle.publisher, own.deliveries)
            background.append(asyncio.create_task(deliverer.run_forever()))
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            if reloads_on_sighup:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            with contextlib.suppress(Exception):
                await run_in_threadpool(recoverer.stop)
            await own.broadcaster.stop()
            own.close()
            if registration is not None:
                # Here, not after uvicorn.run returns: uvicorn re-raises SIGTERM once it has shut
                # down, which ends the process. Last: the sidecar stays until its service is gone.
                await run_in_threadpool(registration.deregister)

    app = FastAPI(
        title="asyncinfer",
        version="0.1.0",
        summary="Asynchronous image classification: submit, then follow by SSE or long polling.",
        lifespan=lifespan,
        docs_url="/docs" if settings.api_docs_served else None,
        redoc_url="/redoc" if settings.api_docs_served else None,
        openapi_url="/openapi.json" if settings.api_docs_served else None,
    )
    add_extra_schemas(app)
    if settings.cors_origins:  # inside the problem middleware: a refused preflight has a request id too
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Content-Type", "X-API-Key", "Authorization", "Idempotency-Key", "Last-Event-ID",
                           "X-Request-ID", "traceparent", "tracestate"],
            expose_headers=["X-Request-ID", "Location", "Retry-After", "Idempotent-Replayed"],
            max_age=600,
        )
    install_problem_handlers(app, max_headers=settings.max_headers, max_header_bytes=settings.max_header_bytes)
    app.add_middleware(HttpMetricsMiddleware)  # added last, so outside the problem middleware: measures its answers
    for module in (jobs, batches, sessions, models, events, health, panels, web):
        app.include_router(module.router)
    if settings.fault_injection == "on":
        app.include_router(faults.router)
    app.mount("/static", StaticFiles(packages=[("web", "static")]), name="static")
    if on():
        instrument(app)
    return app


def reload_keys_on_sighup(services: Services) -> bool:
    """`kill -HUP` reads the keys file again at once (a change is also seen within a second without it)."""
    if not services.settings.api_keys_file:
        return False
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, services.keys.reload)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no SIGHUP (Windows)
        return False
    return True


# Probes and scrapes every few seconds would be most of the traces, and tell nothing (untraced unless
# OTEL_PYTHON_FASTAPI_EXCLUDED_URLS or OTEL_PYTHON_EXCLUDED_URLS says otherwise).
UNTRACED_PATHS = "/healthz$,/readyz$,/metrics$"


def instrument(app: FastAPI) -> None:
    """The request's server span, outside every middleware: its parent is the client's W3C
    `traceparent` when one is sent, and the access line and everything the request does run inside
    it. Only when tracing is on (shared/tracing.py): off, the app is not wrapped at all. The
    per-message `receive`/`send` spans are left out: an event stream would have one per event."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    from_env = os.environ.get("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS") or os.environ.get("OTEL_PYTHON_EXCLUDED_URLS")
    FastAPIInstrumentor.instrument_app(app, excluded_urls=from_env or UNTRACED_PATHS, exclude_spans=["receive", "send"],
                                       server_request_hook=redact_credentials)


# The span's URL attributes carry the query string: a stream token (or a key sent there, refused) must not
# reach a trace backend, as it reaches no log line.
_URL_ATTRIBUTES = ("http.url", "url.full", "http.target", "url.query")
_CREDENTIAL_PARAMETER = re.compile(r"(^|[?&])(token|api_key)=[^&]*")


def redact_credentials(span: Any, scope: Any) -> None:
    """The instrumentation's server request hook: `token=` and `api_key=` values become REDACTED."""
    attributes = getattr(span, "attributes", None) or {}
    for name in _URL_ATTRIBUTES:
        value = attributes.get(name)
        if isinstance(value, str) and _CREDENTIAL_PARAMETER.search(value):
            span.set_attribute(name, _CREDENTIAL_PARAMETER.sub(r"\1\2=REDACTED", value))


def add_extra_schemas(app: FastAPI) -> None:
    """Put the schemas of api/schemas.py's extra_components into the OpenAPI document."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()  # also caches it as app.openapi_schema
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, definition in extra_components().items():
            components.setdefault(name, definition)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


# glibc's mallopt parameter for the size above which a block is mapped on its own.
_M_MMAP_THRESHOLD = -3


def release_large_blocks_to_the_os() -> None:
    """Have glibc map each block over 1 MiB (an upload, its decoded pixels) on its own, so that
    freeing it returns it to the OS. By default glibc raises that threshold to the largest block
    freed so far, and then each thread's arena (up to 8 per core) keeps the uploads it freed: after
    20 concurrent 10 MiB uploads the gateway held ~300 MB it no longer used."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, 1024 * 1024)


def prepare_gateway_process(settings: Settings, log_level: str) -> None:
    """The gateway's own loggers (uvicorn configures only its own): an unexpected error's traceback
    is logged with its request id (api/problems.py). Tracing is off unless OTEL_* variables say
    otherwise (shared/tracing.py)."""
    configure_logging(log_level, settings.log_format)
    configure_tracing(GATEWAY_SERVICE)
    release_large_blocks_to_the_os()
