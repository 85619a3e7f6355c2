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
        services = Services.create(settings)
        app.state.services = services
        await services.broadcaster.start()
        sweeper = asyncio.create_task(sweep_forever(services))
        try:
            yield
        finally:
            sweeper.cancel()
            await services.broadcaster.stop()
            services.close()

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
