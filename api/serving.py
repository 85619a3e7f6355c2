"""`asyncinfer api`: the gateway served by uvicorn, in one process or several on one port."""

from __future__ import annotations

from typing import Any

import uvicorn

from api.main import create_app, prepare_gateway_process
from api.processes import serve_in_processes
from api.services import Services
from api.start_checks import check_gateway_security
from shared.config import Settings
from shared.logs import configure_logging


def run_gateway(settings: Settings, *, log_level: str = "INFO") -> None:
    """`asyncinfer api`: join the mesh (when on) and open the services before serving, so that a
    gateway that cannot start says why in one line (a StartupError) instead of a traceback. With
    ASYNCINFER_GATEWAY_PROCESSES above 1, this process supervises that many (api/processes.py)."""
    if settings.gateway_processes == 1:
        prepare_gateway_process(settings, log_level)
    else:  # a supervisor of several serves nothing: each of them prepares itself (api/processes.py)
        configure_logging(log_level, settings.log_format)
    check_gateway_security(settings)
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
    if settings.gateway_processes > 1:
        services.close()  # opened only to say at once what is wrong: each process opens its own
        try:
            serve_in_processes(settings, uvicorn_options(settings, log_level))
        finally:
            if registration is not None:
                registration.deregister()
        return
    uvicorn.run(create_app(settings, services=services, registration=registration), host=settings.host,
                port=settings.port, **uvicorn_options(settings, log_level))


def uvicorn_options(settings: Settings, log_level: str) -> dict[str, Any]:
    return {
        "log_level": log_level.lower(),
        # Uvicorn's loggers go through ours (one format, with request ids); its own access log is
        # replaced by the gateway's, which carries the request id and the latency (api/problems.py).
        "log_config": None,
        "access_log": False,
        # h11, not httptools: h11 bounds the request line and headers it buffers (httptools took a
        # 1 MB header and 3,000 headers); a longer head gets 400 before any app code runs.
        "http": "h11",
        "h11_max_incomplete_event_size": settings.max_header_bytes,
    }
