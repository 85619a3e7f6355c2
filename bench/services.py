"""Real processes for the benchmark: one Redis for the run, then gateways and workers started
the way the integration tests start them (tests/pipeline.py), each configuration on a clean
Redis database and its own SQLite store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import redis

from shared.launcher import wait_healthy
from shared.redis_server import start_redis
from tests.pipeline import ROOT, Pipeline, free_port, pipeline_env

# The integration tests shorten the visibility timeout to test redelivery; a benchmark keeps the
# production default, and lifts the backlog limit so that a paused worker never turns submits
# into 429s.
BENCH_ENV = {"ASYNCINFER_VISIBILITY_TIMEOUT_S": "60", "ASYNCINFER_BACKLOG_LIMIT": "1000000"}
# The tests' small batches and long batch wait are theirs; the benchmark runs the defaults.
TEST_ONLY_ENV = ("ASYNCINFER_MAX_BATCH_SIZE", "ASYNCINFER_MAX_BATCH_WAIT_MS")


class Services:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.redis_base = f"redis://127.0.0.1:{free_port()}"
        self.redis = start_redis(f"{self.redis_base}/0", workdir / "redis")
        self._runs = 0

    def pipeline(self, *, workers: int, gateway: bool = True, **env: str) -> Pipeline:
        """A fresh store and Redis database; the gateway and `workers` workers, all ready."""
        self._runs += 1
        url = f"{self.redis_base}/{self._runs % 15 + 1}"
        redis.Redis.from_url(url).flushdb()
        workdir = self.workdir / f"run{self._runs}"
        workdir.mkdir(parents=True)
        full_env = pipeline_env(url, workdir)
        for name in TEST_ONLY_ENV:
            full_env.pop(name, None)
        full_env.update({**BENCH_ENV, **env})
        pipeline = Pipeline(env=full_env, workdir=workdir, port=free_port())
        pipeline.start(workers=workers, gateway=gateway)
        return pipeline

    def naive_server(self, **env: str) -> tuple[subprocess.Popen[bytes], int]:
        """The naive design (bench/naive.py) under uvicorn, ready to answer."""
        port = free_port()
        full_env = {**os.environ, "ASYNCINFER_WEIGHTS": "random", "TF_CPP_MIN_LOG_LEVEL": "2", **env}
        log = open(self.workdir / "naive.log", "ab")  # noqa: SIM115 - the child keeps its own copy
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "bench.naive:app", "--port", str(port), "--log-level", "warning"],
            env=full_env, cwd=ROOT, stdout=log, stderr=log,
        )
        log.close()
        if not wait_healthy(f"http://127.0.0.1:{port}", process, timeout_s=180):
            raise RuntimeError(f"the naive server did not answer:\n{(self.workdir / 'naive.log').read_text()}")
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
