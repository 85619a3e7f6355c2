"""Submit rate: jobs per second the gateway accepts (validate, preprocess, store, enqueue) with
inference paused, i.e. no worker running."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from bench.client import Connection
from bench.e2e import CpuMeter, load_summary
from bench.imageset import BenchImage, encode, photo_like
from bench.load import closed_loop
from bench.services import Services
from shared.models.catalogue import Catalogue
from shared.preprocessing import decode, pack_pixels


async def submit_only(conn: Connection, image: BenchImage) -> float:
    started = time.time()
    await conn.post("/v1/jobs", image.data, image.content_type, expect=202)
    return time.time() - started


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
    services: Services, images: list[BenchImage], *, clients: int, duration_s: float, warmup_s: float
) -> dict[str, Any]:
    pipeline = services.pipeline(workers=0)
    try:
        assert pipeline.gateway is not None
        meter = CpuMeter({"gateway": pipeline.gateway.pid, "redis": services.redis.pid})
        meter.resume()
        result = asyncio.run(closed_loop(
            "127.0.0.1", pipeline.port, images, clients=clients, duration_s=duration_s, warmup_s=warmup_s,
            operation=submit_only,
        ))
        meter.pause(result.total_completed)
        return {
            "clients": clients,
            **load_summary(result),
            "cpu_ms_per_job": meter.totals(),
        }
    finally:
        pipeline.stop()
