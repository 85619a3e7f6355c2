"""Several gateway processes on one port (ASYNCINFER_GATEWAY_PROCESSES > 1).

uvicorn's supervisor binds the port once and starts that many processes; each opens its own services
and its own event subscription, like a gateway of its own, and one that dies is started again. The
supervising process serves nothing: it joined the mesh for all of them (api/serving.py), and gives them
a directory to share their metrics through (api/process_metrics.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from uvicorn import Config
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from api.process_metrics import SHARED_DIR_VARIABLE, forget_dead_processes, shared_dir
from shared.config import Settings, get_settings
from shared.errors import StartupError
from shared.parent_death import end_with_parent

# The processes read their settings from the environment they inherit, with these set from the
# supervisor's own (`asyncinfer api --host/--port`).
_PASSED_ON = {"host": "ASYNCINFER_HOST", "port": "ASYNCINFER_PORT"}
_SUPERVISOR_PID = "ASYNCINFER_GATEWAY_SUPERVISOR_PID"


class GatewaySupervisor(Multiprocess):
    """uvicorn's supervisor, except that SIGHUP is what it is to a gateway alone: every process
    reads the API keys file again (api/main.py), and none is restarted."""

    def __init__(self, config: Config, sockets: list[socket.socket], *, forwards_sighup: bool) -> None:
        super().__init__(config, sockets)
        self.forwards_sighup = forwards_sighup

    def handle_hup(self) -> None:
        if not self.forwards_sighup:  # no keys file: a process would take SIGHUP's default, and end
            return
        for process in self.processes:
            if process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGHUP)


def serve_in_processes(settings: Settings, options: dict[str, Any]) -> None:
    """Serve with `settings.gateway_processes` processes until SIGTERM or SIGINT; StartupError when
    one could not start (it logged why)."""
    metrics_dir = tempfile.mkdtemp(prefix="asyncinfer-gateway-metrics-")
    os.environ[SHARED_DIR_VARIABLE] = metrics_dir
    os.environ[_SUPERVISOR_PID] = str(os.getpid())
    for field, variable in _PASSED_ON.items():
        os.environ[variable] = str(getattr(settings, field))
    config = Config("api.processes:gateway_process_app", factory=True, host=settings.host, port=settings.port,
                    workers=settings.gateway_processes, **options)
    try:
        supervisor = GatewaySupervisor(config, [config.bind_socket()], forwards_sighup=bool(settings.api_keys_file))
        supervisor.run()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        raise StartupError("a gateway process did not start (its log says why)")


def gateway_process_app() -> FastAPI:
    """The app of one of the processes (uvicorn calls this in each, after it set up its loggers)."""
    from api.main import create_app, prepare_gateway_process

    end_with_parent(int(os.environ[_SUPERVISOR_PID]))  # killed, the supervisor leaves no process serving
    settings = get_settings()
    prepare_gateway_process(settings, logging.getLevelName(logging.getLogger("uvicorn.error").getEffectiveLevel()))
    metrics_dir = shared_dir()
    if metrics_dir is not None:
        forget_dead_processes(metrics_dir)
    return create_app(settings, readiness_probes=mesh_probes(settings))


def mesh_probes(settings: Settings) -> dict[str, Callable[[], None]]:
    """/readyz asks the mesh agent too, as a gateway alone does with its registration."""
    if settings.mesh != "consul":
        return {}
    from shared.mesh import agent_probe

    return {"consul": agent_probe(settings)}
