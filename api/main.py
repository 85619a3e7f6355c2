"""The gateway application: routers, problem handlers and the process's services."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from api.problems import install_problem_handlers
from api.routes import batches, events, health, jobs, web
from api.schemas import extra_components
from api.services import Services
from shared.config import Settings, get_settings

if TYPE_CHECKING:
    from shared.mesh import MeshRegistration


async def sweep_forever(services: Services) -> None:
    """Delete expired jobs and images (the embedded store has no native expiry)."""
    while True:
        await asyncio.sleep(services.settings.sweep_interval_s)
        with contextlib.suppress(Exception):
            await run_in_threadpool(services.store.sweep_expired)


def create_app(settings: Settings | None = None, *, services: Services | None = None,
               registration: MeshRegistration | None = None) -> FastAPI:
    """The app; it opens its own `services` at start-up unless given them (run_gateway does), and
    deregisters `registration` from the mesh when it shuts down."""
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = services or Services.create(settings)
        app.state.services = own
        if registration is not None:
            own.extra_readiness_probes["consul"] = registration.agent_answers
        await own.broadcaster.start()
        sweeper = asyncio.create_task(sweep_forever(own))
        try:
            yield
        finally:
            sweeper.cancel()
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
    )
    add_extra_schemas(app)
    install_problem_handlers(app)
    for module in (jobs, batches, events, health, web):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(packages=[("web", "static")]), name="static")
    return app


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


def run_gateway(settings: Settings, *, log_level: str = "INFO") -> None:
    """`asyncinfer api`: join the mesh (when on) and open the services before serving, so that a
    gateway that cannot start says why in one line (a StartupError) instead of a traceback."""
    import uvicorn

    registration = None
    if settings.mesh == "consul":
        from shared.mesh import join_as_gateway

        # First: the sidecar that carries Redis and the store starts only once this registers it.
        registration = join_as_gateway(settings)
    try:
        services = Services.create(settings)
    except BaseException:
        if registration is not None:
            registration.deregister()
        raise
    uvicorn.run(
        create_app(settings, services=services, registration=registration),
        host=settings.host,
        port=settings.port,
        log_level=log_level.lower(),
        access_log=False,
    )
