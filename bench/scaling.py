"""Scaling: saturated throughput with 1, 2 and 3 workers on this host (the cores split between
them, and for comparison each worker with every core), and one step of load served by a fixed
worker versus the local autoscaler (cli/autoscale.py, 0..N workers).

For the step load, each job's queue wait is measured from its document (started_at − created_at)
and compared with the gateway's `asyncinfer_queue_wait_predicted_seconds` sampled just before the
job was accepted; worker-seconds are the live workers (their presence entries) summed over time.
"""

from __future__ import annotations

import asyncio
import math
import random
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
import redis
from prometheus_client.parser import text_string_to_metric_families

from bench.client import Connection
from bench.e2e import load_summary
from bench.imageset import BenchImage
from bench.load import closed_loop
from bench.services import Services
from bench.stats import latency_summary_ms, percentile
from cli.autoscale import threads_per_worker
from cli.pipeline import LocalPipeline
from cli.processes import Supervisor, free_port, wait_until
from shared.config import Settings
from shared.jobs import parse_rfc3339
from shared.store import open_store
from shared.work_in_redis import count_work

SAMPLE_S = 0.5
# The autoscaler's windows for the benchmark (production: 30 s and 120 s), so that one run shows a
# scale-in and a return to zero within a couple of minutes.
BENCH_SCALING: dict[str, Any] = {"ASYNCINFER_SCALE_TARGET_JOBS_PER_WORKER": "16", "ASYNCINFER_SCALE_DOWN_AFTER_S": "5",
                 "ASYNCINFER_SCALE_TO_ZERO_AFTER_S": "10"}


def measure_worker_counts(services: Services, images: list[BenchImage], *, counts: tuple[int, ...], clients: int,
                          duration_s: float, warmup_s: float) -> list[dict[str, Any]]:
    """Saturated images/s with N workers: threads split between them (what the autoscaler does) and,
    for N > 1, each with every core (oversubscribed)."""
    rows = []
    for workers in counts:
        for split in (True, False) if workers > 1 else (True,):
            threads = threads_per_worker(workers) if split else 0  # 0: one per core
            pipeline = services.pipeline(workers=workers, ASYNCINFER_INTRA_OP_THREADS=str(threads))
            try:
                result = asyncio.run(closed_loop("127.0.0.1", pipeline.port, images, clients=clients,
                                                 duration_s=duration_s, warmup_s=warmup_s))
            finally:
                pipeline.stop()
            rows.append({"workers": workers, "threads_per_worker": threads or threads_per_worker(1),
                         **load_summary(result)})
    return rows


@dataclass
class Submitted:
    job_id: str
    submitted_at: float  # unix time
    latency_s: float  # submit to the terminal event


async def step_load(port: int, images: list[BenchImage], phases: list[tuple[float, float]],
                    seed: int = 0) -> list[Submitted]:
    """Poisson arrivals at each phase's rate (jobs/s) for its duration; every job followed to its end."""
    rng = random.Random(seed)
    done: list[Submitted] = []

    async def one(image: BenchImage) -> None:
        conn = await Connection.open("127.0.0.1", port)
        try:
            started = time.time()
            _, doc = await conn.post("/v1/jobs", image.data, image.content_type, expect=202)
            _, arrived = await conn.follow_until_terminal(f"/v1/jobs/{doc['id']}/events")
            done.append(Submitted(doc["id"], started, arrived - started))
        finally:
            conn.close()

    tasks = []
    step = 0
    for duration_s, rate in phases:
        end = time.monotonic() + duration_s
        while rate and time.monotonic() < end:
            tasks.append(asyncio.create_task(one(images[step % len(images)])))
            step += 1
            await asyncio.sleep(rng.expovariate(rate))
        await asyncio.sleep(max(0.0, end - time.monotonic()))
    await asyncio.gather(*tasks)
    return done


class Sampler:
    """Every SAMPLE_S: live workers (from Redis) and the gateway's predicted queue wait."""

    def __init__(self, pipeline: LocalPipeline) -> None:
        self.url = pipeline.url
        self.redis = redis.Redis.from_url(pipeline.env["ASYNCINFER_REDIS_URL"])
        self.queues = Settings().catalogue().queues()
        self.samples: list[tuple[float, int, float]] = []  # (unix time, live workers, predicted wait s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            live = count_work(self.redis, self.queues).live_workers
            predicted = gauge(f"{self.url}/metrics", "asyncinfer_queue_wait_predicted_seconds")
            self.samples.append((time.time(), live, predicted))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def worker_seconds(self) -> float:
        return sum(live for _, live, _ in self.samples) * SAMPLE_S

    def predicted_before(self, at: float) -> float | None:
        before = [predicted for when, _, predicted in self.samples if when <= at]
        return before[-1] if before else None


def summarise_step(pipeline: LocalPipeline, sampler: Sampler, done: list[Submitted]) -> dict[str, Any]:
    store = open_store(Settings(store=pipeline.env["ASYNCINFER_STORE"], redis_url=pipeline.env["ASYNCINFER_REDIS_URL"]))
    docs = {doc["id"]: doc for doc in store.get_jobs([job.job_id for job in done])}
    errors = []
    for doc in docs.values():
        created = parse_rfc3339(doc["created_at"]).timestamp()
        measured = parse_rfc3339(doc["started_at"]).timestamp() - created
        predicted = sampler.predicted_before(created)
        if predicted is not None and math.isfinite(predicted):
            errors.append(abs(predicted - measured))
    return {
        "jobs": len(done),
        "succeeded": sum(doc["status"] == "succeeded" for doc in docs.values()),
        "latency_ms": latency_summary_ms([job.latency_s for job in done]),
        "worker_seconds": sampler.worker_seconds(),
        "max_live_workers": max((live for _, live, _ in sampler.samples), default=0),
        "predicted_wait_error_s": {"median": statistics.median(errors) if errors else float("nan"),
                                   "p90": percentile(errors, 90), "n": len(errors)},
    }


def measure_step(services: Services, images: list[BenchImage], *, phases: list[tuple[float, float]],
                 max_workers: int) -> dict[str, Any]:
    """The same step of load on one fixed worker, then on the autoscaler's 0..max_workers."""
    results: dict[str, Any] = {"phases": phases, "max_workers": max_workers, "scaling_env": BENCH_SCALING}
    fixed = services.pipeline(workers=1, **BENCH_SCALING)
    try:
        sampler = Sampler(fixed)
        done = asyncio.run(step_load(fixed.port, images, phases))
        sampler.stop()
        results["fixed"] = summarise_step(fixed, sampler, done)
    finally:
        fixed.stop()

    scaled = services.pipeline(workers=0, **BENCH_SCALING)
    supervisor, metrics_port = Supervisor(scaled.workdir), free_port()
    supervisor.start_asyncinfer("autoscaler", "autoscale", "--workers", f"0..{max_workers}",
                                env={**scaled.env, "ASYNCINFER_AUTOSCALER_METRICS_PORT": str(metrics_port)})
    try:
        wait_until(lambda: _autoscaler_target(metrics_port) == 0, 60, "the autoscaler at zero",
                   failed=supervisor.exited)
        sampler = Sampler(scaled)
        done = asyncio.run(step_load(scaled.port, images, phases))
        sampler.stop()
        results["autoscaled"] = summarise_step(scaled, sampler, done)
        # The first job of the burst found no worker: its latency is the cold start.
        results["autoscaled"]["cold_start_s"] = min(done, key=lambda job: job.submitted_at).latency_s
    finally:
        supervisor.stop()
        scaled.stop()
    return results


def gauge(url: str, name: str) -> float:
    """One unlabelled gauge from a Prometheus /metrics page."""
    text = httpx.get(url, timeout=5).text
    return next(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
                if sample.name == name and not sample.labels)


def _autoscaler_target(port: int) -> float | None:
    try:
        return gauge(f"http://127.0.0.1:{port}/metrics", "asyncinfer_autoscaler_workers_target")
    except (httpx.HTTPError, StopIteration):
        return None
