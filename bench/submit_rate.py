"""Submit rate: jobs per second the gateway accepts (validate, preprocess, store, enqueue) with
inference paused, i.e. no worker running."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from typing import Any

from bench.client import Connection
from bench.e2e import CpuMeter, load_summary
from bench.imageset import BenchImage, encode, photo_like
from bench.load import Operation, closed_loop
from bench.profiling import Profiler
from bench.services import Services
from bench.stats import spread
from cli.processes import child_pids
from shared.models.catalogue import Catalogue
from shared.preprocessing import decode, pack_pixels


async def submit_only(conn: Connection, image: BenchImage) -> float:
    started = time.time()
    await conn.post("/v1/jobs", image.data, image.content_type, expect=202)
    return time.time() - started


def batch_submitter(image: BenchImage, size: int) -> Operation:
    """An operation that POSTs `size` copies of `image` to /v1/batches as one multipart body."""
    boundary = uuid.uuid4().hex
    part = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{image.name}\"\r\n"
            f"Content-Type: {image.content_type}\r\n\r\n").encode() + image.data + b"\r\n"
    body = part * size + f"--{boundary}--\r\n".encode()

    async def submit_batch(conn: Connection, _: BenchImage) -> float:
        started = time.time()
        await conn.post("/v1/batches", body, f"multipart/form-data; boundary={boundary}", expect=202)
        return time.time() - started

    return submit_batch


def small_image() -> BenchImage:
    """One photo-like JPEG at the default model's own size: decoding it costs little, so the gateway's CPU
    per job is mostly admission (HTTP, checks, store, queue)."""
    return BenchImage("small_224x224.jpeg", encode(photo_like(224, 224, 99), "JPEG"), "image/jpeg", 224, 224)


def preprocess_cpu_ms(image: BenchImage, repeats: int = 50) -> float:
    """CPU ms to decode and preprocess `image` for the default model, in this process (the median of
    `repeats`): what the gateway spends on it besides admission."""
    spec = Catalogue.discover(default_model="mobilenet_v2").resolve("mobilenet_v2")
    spent = []
    for _ in range(repeats):
        started = time.process_time()
        pack_pixels(decode(image.data, spec.input))
        spent.append((time.process_time() - started) * 1000)
    return statistics.median(spent)


def measure_submit_rate(
    services: Services, images: list[BenchImage], *, clients: int, duration_s: float, warmup_s: float,
    gateway_processes: int = 1, profiler: Profiler | None = None, phase: str = "submit",
    operation: Operation = submit_only, jobs_per_request: int = 1,
) -> dict[str, Any]:
    """Jobs per second and CPU per job; with `jobs_per_request` > 1 (an `operation` that posts
    batches), requests per second times that."""
    pipeline = services.pipeline(workers=0, ASYNCINFER_GATEWAY_PROCESSES=str(gateway_processes))
    try:
        assert pipeline.gateway is not None
        # With several processes, the supervisor and each process it started, as one "gateway".
        gateway_pids = {f"gateway{index}": pid
                        for index, pid in enumerate([pipeline.gateway.pid, *child_pids(pipeline.gateway.pid)])}
        meter = CpuMeter({"redis": services.redis.pid, **gateway_pids})
        meter.resume()
        if profiler:
            profiler.start(phase, gateway_pids, duration_s + warmup_s)
        result = asyncio.run(closed_loop(
            "127.0.0.1", pipeline.port, images, clients=clients, duration_s=duration_s, warmup_s=warmup_s,
            operation=operation,
        ))
        meter.pause(result.total_completed * jobs_per_request)
        cpu = meter.totals()
        cpu["gateway"] = sum(cpu.pop(name) for name in gateway_pids)
        return {
            "clients": clients,
            "gateway_processes": gateway_processes,
            "jobs_per_request": jobs_per_request,
            **load_summary(result, jobs_per_request),
            "cpu_ms_per_job": cpu,
        }
    finally:
        pipeline.stop()


def measure_gateway_processes(
    services: Services, images: list[BenchImage], *, counts: tuple[int, ...], rounds: int, clients: int,
    duration_s: float, warmup_s: float,
) -> dict[str, Any]:
    """The submit rate with each number of gateway processes, in alternating rounds (the order
    reversed every other round); the ratio of each count to the first, per round."""
    by_count: dict[int, list[dict[str, Any]]] = {count: [] for count in counts}
    for index in range(rounds):
        for count in counts if index % 2 == 0 else tuple(reversed(counts)):
            by_count[count].append(measure_submit_rate(services, images, clients=clients, duration_s=duration_s,
                                                       warmup_s=warmup_s, gateway_processes=count))
    first = by_count[counts[0]]
    return {
        "clients": clients,
        "rows": [{
            "gateway_processes": count,
            "jobs_per_s": spread([row["images_per_s"] for row in rows]),
            "p99_ms": spread([row["latency_ms"]["p99"] for row in rows]),
            "cpu_ms_per_job": spread([row["cpu_ms_per_job"]["gateway"] for row in rows]),
            "over_first": spread([row["images_per_s"] / base["images_per_s"]
                                  for row, base in zip(rows, first, strict=True)]),
        } for count, rows in by_count.items()],
    }
