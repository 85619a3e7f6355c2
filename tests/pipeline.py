"""Real processes for integration tests: Redis, the gateway and Celery workers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(*keep: str) -> dict[str, str]:
    """This process's environment without the project's settings (ASYNCINFER_*), except `keep`."""
    return {key: value for key, value in os.environ.items() if not key.startswith("ASYNCINFER_") or key in keep}


def wait_until(predicate, timeout_s: float, what: str, interval_s: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")


@dataclass
class Pipeline:
    """A gateway and workers sharing one store and one Redis database."""

    env: dict[str, str]
    workdir: Path
    port: int
    gateway: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with open(self.workdir / f"{name}.log", "ab") as log:  # the child keeps its own copy
            return subprocess.Popen(
                [sys.executable, "-m", "shared", *args], env=self.env, cwd=ROOT, stdout=log, stderr=log
            )

    def start_gateway(self) -> None:
        self.gateway = self._spawn("gateway", "api", "--port", str(self.port))

        def healthy() -> bool:
            assert self.gateway is not None and self.gateway.poll() is None, self.logs("gateway")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, 30, "the gateway")

    def start(self, *, workers: int, gateway: bool) -> None:
        """Start workers and the gateway side by side, then wait for the workers to consume;
        everything started is stopped again if any part fails."""
        try:
            for _ in range(workers):
                self.start_worker(wait_ready=False)
            if gateway:
                self.start_gateway()
            for worker in self.workers:
                self.wait_worker_ready(worker)
        except BaseException:
            self.stop()
            raise

    def start_worker(self, wait_ready: bool = True) -> subprocess.Popen[bytes]:
        name = f"worker{len(self.workers)}"
        worker = self._spawn(name, "worker", "--hostname", f"{name}@%h")
        self.workers.append(worker)
        if wait_ready:
            self.wait_worker_ready(worker)
        return worker

    def wait_worker_ready(self, worker: subprocess.Popen[bytes]) -> None:
        name = f"worker{self.workers.index(worker)}"

        def ready() -> bool:
            assert worker.poll() is None, self.logs(name)
            return "ready." in self.logs(name)

        wait_until(ready, 120, f"{name} to consume", interval_s=0.25)

    def kill_worker(self, worker: subprocess.Popen[bytes]) -> None:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)

    def logs(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        for process in [*self.workers, self.gateway]:
            if process is not None and process.poll() is None:
                process.terminate()
        for process in [*self.workers, self.gateway]:
            if process is not None:
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()


def pipeline_env(redis_url: str, workdir: Path, **overrides: str) -> dict[str, str]:
    env = clean_env()
    env.update(
        {
            "ASYNCINFER_REDIS_URL": redis_url,
            "ASYNCINFER_STORE": f"sqlite:///{workdir / 'jobs.db'}",
            "ASYNCINFER_WEIGHTS": "random",
            "ASYNCINFER_VISIBILITY_TIMEOUT_S": "6",
            "ASYNCINFER_MAX_BATCH_SIZE": "8",
            "ASYNCINFER_MAX_BATCH_WAIT_MS": "50",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides)
    return env
