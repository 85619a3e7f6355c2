"""Helpers for the end-to-end measurements (bench/paired.py runs them): per-process CPU, batch
sizes from worker logs, load summaries; and the naive design driven by the same clients."""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from typing import Any

from bench.client import Connection
from bench.imageset import BenchImage
from bench.load import LoadResult, closed_loop
from bench.services import cpu_s
from bench.stats import latency_summary_ms, spread
from cli.pipeline import LocalPipeline

_BATCH_LOG = re.compile(r"batch of (\d+): (\d+) inferred in ([\d.]+) ms")


def load_summary(result: LoadResult, jobs_per_request: int = 1) -> dict[str, Any]:
    """Images (jobs) per second count each request as `jobs_per_request` of them; latencies are per request."""
    return {
        "images_per_s": result.throughput_per_s * jobs_per_request,
        "images_per_s_bins": spread([rate * jobs_per_request for rate in result.throughput_bins_per_s()]),
        "latency_ms": latency_summary_ms(result.latencies_s),
        "errors": len(result.errors),
        "first_errors": result.errors[:3],
    }


def batch_sizes_from_logs(pipeline: LocalPipeline) -> dict[str, float]:
    """How full the workers' batches were, from their `batch of N` log lines."""
    sizes, inference_ms = [], []
    for index in range(len(pipeline.workers)):
        for match in _BATCH_LOG.finditer(pipeline.logs(f"worker{index}")):
            sizes.append(int(match.group(1)))
            inference_ms.append(float(match.group(3)))
    if not sizes:
        return {"batches": 0}
    return {
        "batches": len(sizes),
        "mean_batch_size": statistics.fmean(sizes),
        "median_inference_ms": statistics.median(inference_ms),
    }


class CpuMeter:
    """CPU milliseconds per image of each process (and of this client), summed over one or
    more load phases (the rounds of bench/paired.py), each between resume() and pause()."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._start: dict[str, float] = {}
        self._spent_s: dict[str, float] = {}
        self._images = 0

    def _now(self) -> dict[str, float]:
        now = {name: cpu_s(pid) for name, pid in self.pids.items()}
        now["clients"] = time.process_time()
        return now

    def resume(self) -> None:
        self._start = self._now()

    def pause(self, images: int) -> None:
        end = self._now()
        for name in end:
            self._spent_s[name] = self._spent_s.get(name, 0.0) + end[name] - self._start[name]
        self._images += images

    def totals(self) -> dict[str, float]:
        spent = {name: s * 1000 / max(1, self._images) for name, s in self._spent_s.items()}
        spent["total"] = sum(spent.values())
        return spent


def pipeline_pids(pipeline: LocalPipeline, redis_pid: int) -> dict[str, int]:
    assert pipeline.gateway is not None
    pids = {"gateway": pipeline.gateway.pid, "redis": redis_pid}
    pids.update({f"worker{i}": worker.pid for i, worker in enumerate(pipeline.workers)})
    return pids


async def classify_naively(conn: Connection, image: BenchImage) -> float:
    started = time.time()
    await conn.post("/classify", image.data, image.content_type, expect=200)
    return time.time() - started


async def measure_naive(
    port: int, images: list[BenchImage], *, clients: int, duration_s: float, warmup_s: float
) -> dict[str, Any]:
    result = await closed_loop(
        "127.0.0.1", port, images, clients=clients, duration_s=duration_s, warmup_s=warmup_s,
        operation=classify_naively,
    )
    return {"clients": clients, "saturation": load_summary(result)}


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)
