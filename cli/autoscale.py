"""The local autoscaler: worker processes on this host that follow the backlog.

Each tick it reads the autoscaling signal the gateways export (shared/scaling.py, from Redis
directly, so it needs no gateway) and moves the pool towards the desired count: up at once, down
only once the desired count stayed lower for `scale_down_after_s`, to zero only once nothing was
outstanding for `scale_to_zero_after_s`. A worker chosen to go gets SIGTERM, which drains it (it
finishes and acknowledges what it holds, then exits); it no longer counts while it drains.

Workers die with the autoscaler (PR_SET_PDEATHSIG): one killed with SIGKILL leaves no orphans, and
its replacement starts a pool of its own; the jobs the old workers held are acknowledged by their
drain or handed out again by Redis.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
from prometheus_client import Counter, Gauge, start_http_server

from cli.pipeline import LocalPipeline
from cli.processes import EXIT_STARTUP
from shared.config import Settings
from shared.errors import StartupError
from shared.logs import configure_logging
from shared.scaling import ScalingPolicy, desired_workers
from shared.work_in_redis import count_work

log = logging.getLogger("asyncinfer.autoscale")

DESIRED = Gauge("asyncinfer_autoscaler_workers_desired", "Workers the signal asks for, within the bounds")
TARGET = Gauge("asyncinfer_autoscaler_workers_target", "Workers the autoscaler keeps: the desired count, stabilised")
ACTUAL = Gauge("asyncinfer_autoscaler_workers_actual", "Workers running and not draining")
DRAINING = Gauge("asyncinfer_autoscaler_workers_draining", "Workers told to stop, still finishing their batch")
LAST_SCALE = Gauge("asyncinfer_autoscaler_last_scale_timestamp_seconds", "Unix time of the last scale event")
SCALE_EVENTS = Counter("asyncinfer_autoscaler_scale_events_total", "Workers started or drained", ["direction"])


class WorkerStartFailed(StartupError):
    """A worker exited with a start-up error: starting more would fail the same way."""


@dataclass
class Bounds:
    min_workers: int
    max_workers: int
    scale_down_after_s: float
    scale_to_zero_after_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Bounds:
        return cls(settings.scale_min_workers, settings.scale_max_workers, settings.scale_down_after_s,
                   settings.scale_to_zero_after_s)


def parse_workers(text: str) -> tuple[int, int]:
    """`MIN..MAX` or `N` (a fixed pool): ValueError with a one-line reason otherwise."""
    low, _, high = text.partition("..")
    try:
        bounds = (int(low), int(high or low))
    except ValueError:
        raise ValueError(f"--workers {text!r}: use MIN..MAX (for example 0..3) or a number") from None
    if bounds[0] < 0 or bounds[1] < max(1, bounds[0]):
        raise ValueError(f"--workers {text!r}: need 0 <= MIN <= MAX and MAX >= 1")
    return bounds


@dataclass
class Stabiliser:
    """Turns the desired count of each tick into the count to keep: HPA-like, the highest desired
    count seen over the scale-down window (over the longer idle period when that is zero)."""

    bounds: Bounds
    started_at: float
    _seen: deque[tuple[float, int]] = field(default_factory=deque)

    def target(self, now: float, desired: int, current: int) -> int:
        desired = max(self.bounds.min_workers, min(self.bounds.max_workers, desired))
        self._seen.append((now, desired))
        longest = max(self.bounds.scale_down_after_s, self.bounds.scale_to_zero_after_s)
        while self._seen and self._seen[0][0] < now - longest:
            self._seen.popleft()
        if desired >= current:
            return desired  # up at once (or stay)
        keep = self._highest_since(now - self.bounds.scale_down_after_s)
        if keep == 0:
            keep = self._highest_since(now - self.bounds.scale_to_zero_after_s)
            window = self.bounds.scale_to_zero_after_s
        else:
            window = self.bounds.scale_down_after_s
        if now - self.started_at < window:
            return current  # not watched for a whole window yet: too soon to tell
        return min(current, keep)

    def _highest_since(self, since: float) -> int:
        return max(count for at, count in self._seen if at >= since)


def threads_per_worker(workers: int) -> int:
    """Intra-op threads for a worker when `workers` share this host: the cores split between them."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


@dataclass
class Pool:
    """The worker processes of one LocalPipeline: running ones, and those told to drain."""

    pipeline: LocalPipeline
    intra_op_threads: int  # 0: follow the pool's size (threads_per_worker)
    running: list[subprocess.Popen[bytes]] = field(default_factory=list)
    draining: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def reap(self) -> None:
        """Forget workers that exited: drained ones as expected, others (a crash, a time-out) are
        replaced by the next scaling decision. A start-up error stops the autoscaler."""
        for worker in [w for w in self.running if w.poll() is not None]:
            self.running.remove(worker)
            if worker.returncode == EXIT_STARTUP:
                raise WorkerStartFailed(f"a worker exited with a start-up error; its log: {self.log_of(worker)}")
            log.warning("worker pid %d exited with code %s; replacing it", worker.pid, worker.returncode)
        self.draining = [w for w in self.draining if w.poll() is None]

    def log_of(self, worker: subprocess.Popen[bytes]) -> str:
        path = self.pipeline.supervisor.log_path(f"worker{self.pipeline.workers.index(worker)}")
        return str(path) if path else "this terminal"

    def grow(self, to: int) -> None:
        threads = self.intra_op_threads or threads_per_worker(to)
        while len(self.running) < to:
            self.pipeline.env["ASYNCINFER_INTRA_OP_THREADS"] = str(threads)
            self.running.append(self.pipeline.start_worker(wait_ready=False))
            SCALE_EVENTS.labels("up").inc()

    def shrink(self, to: int) -> None:
        while len(self.running) > to:
            worker = self.running.pop()  # the newest: the oldest have warmed up
            worker.send_signal(signal.SIGTERM)  # a warm shutdown: it drains, then exits
            self.draining.append(worker)
            SCALE_EVENTS.labels("down").inc()


def run_autoscaler(settings: Settings, pipeline: LocalPipeline, bounds: Bounds,
                   on_first_ready: Callable[[], None] | None = None) -> int:
    """Scale `pipeline`'s workers until interrupted (the caller stops the pipeline). `on_first_ready`
    is called once, as soon as one of its workers has its model loaded and consumes."""
    # Decisions are log lines: in <workdir>/autoscaler.log like the other services' (else this terminal).
    log_file = pipeline.workdir / "autoscaler.log" if pipeline.workdir else None
    configure_logging("INFO", settings.log_format, log_file)
    if settings.autoscaler_metrics_port is not None:
        start_http_server(settings.autoscaler_metrics_port, addr="127.0.0.1")
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
    # One pool per model version: its own queue, its own workers (ASYNCINFER_MODEL names it).
    spec = settings.catalogue().worker_model(settings.model)
    pool_queue = {spec.ref: spec.queues}
    policy = ScalingPolicy(settings.scale_target_jobs_per_worker, bounds.min_workers, bounds.max_workers)
    stabiliser = Stabiliser(bounds, started_at=time.monotonic())
    pool = Pool(pipeline, settings.intra_op_threads)
    outstanding = 0
    log.info("autoscaling workers of %s %d..%d, %d outstanding jobs per worker", spec.ref, bounds.min_workers,
             bounds.max_workers, policy.target_per_worker)
    while True:
        stopped = pipeline.supervisor.exited(ignore=pipeline.workers)
        if stopped:
            log.error("%s; stopping", stopped)
            return 1
        pool.reap()
        if on_first_ready is not None and any(pipeline.worker_ready(w) for w in pool.running):
            on_first_ready()
            on_first_ready = None
        try:
            outstanding = count_work(client, pool_queue).outstanding
        except redis.RedisError as e:
            log.warning("Redis does not answer (%s); keeping %d workers", e, len(pool.running))
        desired = desired_workers(outstanding, policy)
        target = stabiliser.target(time.monotonic(), desired, len(pool.running))
        before = len(pool.running)
        if target != before:
            if target > before:
                pool.grow(target)
            else:
                pool.shrink(target)
            LAST_SCALE.set(time.time())
            log.info("autoscale: %d → %d workers (%d jobs outstanding, %d desired)", before, target, outstanding,
                     desired)
        DESIRED.set(desired)
        TARGET.set(target)
        ACTUAL.set(len(pool.running))
        DRAINING.set(len(pool.draining))
        time.sleep(settings.autoscaler_interval_s)
