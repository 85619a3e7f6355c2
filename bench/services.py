"""Real processes for the benchmark: one Redis for the run, then gateways and workers started by
the product's own LocalPipeline (cli/pipeline.py) with production defaults, each configuration on a
clean Redis database and its own SQLite store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import redis

from cli.pipeline import LocalPipeline
from cli.processes import REPO_ROOT, Supervisor, free_port, http_ok
from cli.redis_server import start_redis

# Production defaults but two: random weights (the same compute as ImageNet's, which cannot be
# downloaded here), and no backlog limit, so that a paused worker never turns submits into 429s.
BENCH_ENV = {"ASYNCINFER_WEIGHTS": "random", "ASYNCINFER_BACKLOG_LIMIT": "1000000", "TF_CPP_MIN_LOG_LEVEL": "2"}


def bench_env(redis_url: str, workdir: Path, **overrides: str) -> dict[str, str]:
    """This environment without any ASYNCINFER_* setting of its own, plus the run's Redis and store."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ASYNCINFER_")}
    env.update(BENCH_ENV, ASYNCINFER_REDIS_URL=redis_url, ASYNCINFER_STORE=f"sqlite:///{workdir / 'jobs.db'}")
    env.update(overrides)
    return env


class Services:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.redis_base = f"redis://127.0.0.1:{free_port()}"
        self.redis = start_redis(f"{self.redis_base}/0", workdir / "redis")
        self._runs = 0

    def pipeline(self, *, workers: int, gateway: bool = True, **env: str) -> LocalPipeline:
        """A fresh store and Redis database; the gateway and `workers` workers, all ready."""
        self._runs += 1
        url = f"{self.redis_base}/{self._runs % 15 + 1}"
        redis.Redis.from_url(url).flushdb()
        workdir = self.workdir / f"run{self._runs}"
        workdir.mkdir(parents=True)
        pipeline = LocalPipeline(env=bench_env(url, workdir, **env), workdir=workdir, port=free_port())
        pipeline.start(workers=workers, gateway=gateway)
        return pipeline

    def naive_server(self, **env: str) -> tuple[subprocess.Popen[bytes], int]:
        """The naive design (bench/naive.py) under uvicorn, ready to answer."""
        port = free_port()
        supervisor = Supervisor(self.workdir, cwd=REPO_ROOT)
        command = [sys.executable, "-m", "uvicorn", "bench.naive:app", "--port", str(port), "--log-level", "warning"]
        process = supervisor.start("naive", command, env={**os.environ, **BENCH_ENV, **env})
        supervisor.wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 180, "the naive server")
        return process, port

    def stop(self) -> None:
        self.redis.terminate()
        self.redis.wait(10)


def rss_mb(pid: int) -> tuple[float, float]:
    """Resident memory now and at its peak (VmHWM), in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


_CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """CPU time (user + system, every thread) a process has used so far. Less disturbed by
    the other tenants of a shared machine than wall-clock rates."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS_PER_S
