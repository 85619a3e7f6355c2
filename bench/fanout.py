"""SSE fan-out: K subscribers on one gateway process, spread over jobs that then finish; how
long each terminal event takes to arrive, and what the gateway's memory does.

The jobs are finished by a separate process (`python -m bench.fanout finish …`) through the
real JobLifecycle (store write, then the Redis event), at a steady rate, so the subscribers'
event loop and the finisher never share a GIL or a clock other than the wall clock.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.client import Connection
from bench.imageset import BenchImage
from bench.profiling import Profiler
from bench.services import Services, cpu_s, rss_mb
from bench.stats import latency_summary_ms
from cli.processes import REPO_ROOT
from shared.jobs import TERMINAL

CONNECT_CONCURRENCY = 200  # connections opened at once: stays under the listen backlog


async def subscribe(host: str, port: int, job_id: str, ready: asyncio.Event, arrivals: list[float]) -> None:
    """Open a job's stream, set `ready` once the first (current-state) event came (or the
    stream failed), then wait for the terminal one."""
    try:
        await _subscribe(host, port, job_id, ready, arrivals)
    finally:
        ready.set()


# Only a terminal event's document has this status anywhere in it (its history included), so
# the subscriber looks for these bytes instead of parsing every event: with thousands of streams
# on two cores, a parsing client would be measuring itself.
TERMINAL_MARKERS = tuple(f'"{status.value}"'.encode() for status in TERMINAL)


async def _subscribe(host: str, port: int, job_id: str, ready: asyncio.Event, arrivals: list[float]) -> None:
    conn = await Connection.open(host, port)
    try:
        conn.writer.write(f"GET /v1/jobs/{job_id}/events HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        status, _ = await conn._head()
        if status != 200:
            raise RuntimeError(f"subscription answered {status}")
        tail = b""
        while data := await conn.reader.read(65536):
            if not ready.is_set() and b"data:" in tail + data:
                ready.set()
                tail = b""
                continue
            if any(marker in tail + data for marker in TERMINAL_MARKERS):
                arrivals.append(time.time())
                return
            tail = data[-16:]  # a marker split across two reads
    finally:
        conn.close()


async def run_subscribers(
    host: str, port: int, job_ids: list[str], count: int, start_finisher: Any
) -> list[tuple[str, float]]:
    """`count` subscribers over `job_ids` round robin; once all are connected, `start_finisher()`
    and wait for every terminal event. Returns (job id, arrival time) pairs."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    arrivals: dict[int, list[float]] = {i: [] for i in range(count)}
    readies = [asyncio.Event() for _ in range(count)]

    async def one(index: int) -> None:
        async with gate:
            job_id = job_ids[index % len(job_ids)]
            task = asyncio.create_task(subscribe(host, port, job_id, readies[index], arrivals[index]))
            await readies[index].wait()
        await task

    tasks = [asyncio.create_task(one(i)) for i in range(count)]
    await asyncio.wait_for(asyncio.gather(*(ready.wait() for ready in readies)), timeout=300)
    finisher = start_finisher()
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=300)
    finisher.wait(60)
    return [(job_ids[i % len(job_ids)], arrivals[i][0]) for i in range(count) if arrivals[i]]


async def submit_jobs(host: str, port: int, image: BenchImage, count: int) -> list[str]:
    conn = await Connection.open(host, port)
    try:
        ids = []
        for _ in range(count):
            _, doc = await conn.post("/v1/jobs", image.data, image.content_type, expect=202)
            ids.append(doc["id"])
        return ids
    finally:
        conn.close()


def measure_fanout(
    services: Services, image: BenchImage, *, subscribers: int, jobs: int, finish_rate_per_s: float,
    profiler: Profiler | None = None,
) -> dict[str, Any]:
    pipeline = services.pipeline(workers=0)
    try:
        assert pipeline.gateway is not None
        host, port = "127.0.0.1", pipeline.port
        job_ids = asyncio.run(submit_jobs(host, port, image, jobs))
        rss_idle_mb, _ = rss_mb(pipeline.gateway.pid)
        finished_file = pipeline.workdir / "finished.json"
        connected: dict[str, float] = {}

        def start_finisher() -> subprocess.Popen[bytes]:
            assert pipeline.gateway is not None
            connected["rss_mb"] = rss_mb(pipeline.gateway.pid)[0]
            connected["cpu_s"], connected["client_cpu_s"] = cpu_s(pipeline.gateway.pid), time.process_time()
            connected["at"] = time.monotonic()
            if profiler:
                phase = f"fanout{subscribers}-{subscribers // jobs}perjob"
                profiler.start(phase, {"gateway": pipeline.gateway.pid}, jobs / finish_rate_per_s + 2)
            (pipeline.workdir / "jobs.json").write_text(json.dumps(job_ids))
            return subprocess.Popen(
                [sys.executable, "-m", "bench.fanout", "finish", "--jobs", str(pipeline.workdir / "jobs.json"),
                 "--rate", str(finish_rate_per_s), "--out", str(finished_file)],
                env=pipeline.env, cwd=REPO_ROOT,
            )

        arrivals = asyncio.run(run_subscribers(host, port, job_ids, subscribers, start_finisher))
        phase_s = time.monotonic() - connected["at"]
        gateway_busy = (cpu_s(pipeline.gateway.pid) - connected["cpu_s"]) / phase_s
        client_busy = (time.process_time() - connected["client_cpu_s"]) / phase_s
        finished_at = json.loads(finished_file.read_text())
        delays_s = [arrived - finished_at[job_id] for job_id, arrived in arrivals]
        _, rss_peak_mb = rss_mb(pipeline.gateway.pid)
        return {
            "subscribers": subscribers,
            "jobs": jobs,
            "finish_rate_per_s": finish_rate_per_s,
            "delivered": len(arrivals),
            "delivery_ms": latency_summary_ms(delays_s),
            "max_delivery_ms": max(delays_s) * 1000 if delays_s else float("nan"),
            "gateway_rss_mb": {"idle": rss_idle_mb, "connected": connected["rss_mb"], "peak": rss_peak_mb},
            # Cores busy while the jobs finished: the gateway is one event loop, so near 1.0 it is the bottleneck.
            "cores_busy": {"gateway": gateway_busy, "subscribers": client_busy},
        }
    finally:
        pipeline.stop()


def finish_main(args: argparse.Namespace) -> None:
    """The finisher process: begin and succeed each job through the real lifecycle, at a steady
    rate, noting the wall-clock time just before each terminal write."""
    import redis

    from shared.config import Settings
    from shared.events import EventPublisher
    from shared.lifecycle import JobLifecycle
    from shared.store import open_store

    settings = Settings()
    publisher = EventPublisher(redis.Redis.from_url(settings.redis_url))
    lifecycle = JobLifecycle(open_store(settings), publisher, max_attempts=settings.max_attempts)
    model = {"name": settings.default_model.split("@")[0], "weights": "random", "backend": "bench", "device": "cpu"}
    result = {"predictions": [], "batch_size": 1, "inference_ms": 0.0}
    finished: dict[str, float] = {}
    next_at = time.monotonic()
    for job_id in json.loads(Path(args.jobs).read_text()):
        time.sleep(max(0.0, next_at - time.monotonic()))
        next_at += 1 / args.rate
        lifecycle.begin(job_id)
        finished[job_id] = time.time()
        lifecycle.succeed(job_id, result=result, model=model)
    Path(args.out).write_text(json.dumps(finished))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    finish = commands.add_parser("finish")
    finish.add_argument("--jobs", required=True)
    finish.add_argument("--rate", type=float, required=True)
    finish.add_argument("--out", required=True)
    arguments = parser.parse_args()
    finish_main(arguments)
