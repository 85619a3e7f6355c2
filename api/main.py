"""The gateway application: routers, problem handlers and the process's services."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from api.problems import install_problem_handlers
from api.routes import batches, events, health, jobs, web
from api.services import Services
from shared.config import Settings, get_settings


async def sweep_forever(services: Services) -> None:
    """Delete expired jobs and images (the embedded store has no native expiry)."""
    while True:
        await asyncio.sleep(services.settings.sweep_interval_s)
        with contextlib.suppress(Exception):
            await run_in_threadpool(services.store.sweep_expired)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        registration = None
        if settings.mesh == "consul":
            from shared.mesh import join_as_gateway

            # First: the sidecar that carries Redis and the store starts only once this registers it.
            registration = await run_in_threadpool(join_as_gateway, settings)
        try:
            services = Services.create(settings)
            app.state.services = services
            if registration is not None:
                services.extra_readiness_probes["consul"] = registration.agent_answers
            await services.broadcaster.start()
            sweeper = asyncio.create_task(sweep_forever(services))
            try:
                yield
            finally:
                sweeper.cancel()
                await services.broadcaster.stop()
                services.close()
        finally:
            if registration is not None:  # last: the sidecar stays until its service is gone
                await run_in_threadpool(registration.deregister)

    app = FastAPI(
        title="asyncinfer",
        version="0.1.0",
        summary="Asynchronous image classification: submit, then follow by SSE or long polling.",
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    for module in (jobs, batches, events, health, web):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(packages=[("web", "static")]), name="static")
    return app
