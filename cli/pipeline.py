"""The gateway and workers of one pipeline, as local processes with one environment.

`asyncinfer up`, the local autoscaler, the tests' fixtures and the benchmark start theirs with
`LocalPipeline`, each with its own settings in `env`.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from cli.processes import Supervisor, http_ok, wait_until

GATEWAY_START_S = 60.0
# A worker imports TensorFlow and builds and warms up its model before it consumes.
WORKER_START_S = 120.0
# Celery's line once the worker consumes its queues: "celery@host ready."
WORKER_READY_LINE = "ready."


@dataclass
class LocalPipeline:
    """A gateway and workers with one environment (one Redis, one store).

    With a `workdir`, each process logs to `<workdir>/<name>.log` (worker0, worker1, …, gateway)
    and a worker counts as ready once its log says so; without one, they share this terminal.
    """

    env: dict[str, str]
    port: int
    workdir: Path | None = None
    host: str = "127.0.0.1"
    # SIGTERM to every process started here when this one dies without stopping them (SIGKILL).
    die_with_parent: bool = False
    gateway: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    supervisor: Supervisor = field(init=False)

    def __post_init__(self) -> None:
        self.supervisor = Supervisor(self.workdir, children_die_with_it=self.die_with_parent)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def logs(self, name: str) -> str:
        return self.supervisor.logs(name)

    def start(self, *, workers: int = 1, gateway: bool = True, wait_workers: bool = True) -> None:
        """Start workers and the gateway side by side, then wait for the workers to consume;
        everything started is stopped again if any part fails."""
        try:
            for _ in range(workers):
                self.start_worker(wait_ready=False)
            if gateway:
                self.start_gateway()
            if wait_workers:
                for worker in self.workers:
                    self.wait_worker_ready(worker)
        except BaseException:
            self.stop()
            raise

    def start_gateway(self) -> subprocess.Popen[bytes]:
        gateway = self.supervisor.start_asyncinfer("gateway", "api", "--host", self.host, "--port", str(self.port),
                                                   env=self.env)
        self.gateway = gateway
        wait_until(lambda: http_ok(f"{self.url}/healthz"), GATEWAY_START_S, "the gateway",
                   failed=lambda: self.supervisor.gone("gateway", gateway))
        return gateway

    def start_worker(self, wait_ready: bool = True, model: str | None = None,
                     env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """A worker of `model` (name or name@version; None: the settings' model) that
        `Supervisor.watch` (asyncinfer up) starts again when it exits: after an inference time-out
        (workers/time_limit.py) or a crash. `env`: its own environment (default: the pipeline's)."""
        name = f"worker{len(self.workers)}"
        model_args = ("--model", model) if model else ()
        worker = self.supervisor.start_asyncinfer(name, "worker", "--hostname", f"{name}@%h", *model_args,
                                                  env=self.env if env is None else env, restart=True)
        self.workers.append(worker)
        if wait_ready:
            self.wait_worker_ready(worker)
        return worker

    def worker_ready(self, worker: subprocess.Popen[bytes]) -> bool:
        """Whether `worker` has its model loaded and consumes (always True without a `workdir`:
        its output goes to the terminal, nothing to read readiness from)."""
        return self.workdir is None or WORKER_READY_LINE in self.logs(f"worker{self.workers.index(worker)}")

    def wait_worker_ready(self, worker: subprocess.Popen[bytes]) -> None:
        name = f"worker{self.workers.index(worker)}"
        wait_until(lambda: self.worker_ready(worker), WORKER_START_S, f"{name} to consume", 0.25,
                   failed=lambda: self.supervisor.gone(name, worker))

    def kill_worker(self, worker: subprocess.Popen[bytes]) -> None:
        worker.kill()
        worker.wait(10)

    def stop(self) -> None:
        self.supervisor.stop(grace_s=20)
