"""Submit rate: jobs per second the gateway accepts (validate, preprocess, store, enqueue) with
inference paused, i.e. no worker running."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.client import Connection
from bench.e2e import CpuMeter, load_summary
from bench.imageset import BenchImage
from bench.load import closed_loop
from bench.services import Services


async def submit_only(conn: Connection, image: BenchImage) -> float:
    started = time.time()
    await conn.post("/v1/jobs", image.data, image.content_type, expect=202)
    return time.time() - started


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
