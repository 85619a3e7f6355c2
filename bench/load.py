"""Load patterns: closed-loop clients (throughput at saturation, light load) and open-loop
Poisson arrivals (latency at a fixed fraction of saturation)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bench.client import Connection, submit_and_wait
from bench.imageset import BenchImage

# uvicorn closes a keep-alive connection idle for 5 s; reuse only younger ones.
IDLE_REUSE_S = 3.0

# One request: send this image over this connection, return its latency in seconds.
Operation = Callable[[Connection, BenchImage], Awaitable[float]]


@dataclass
class LoadResult:
    latencies_s: list[float] = field(default_factory=list)
    completed_at: list[float] = field(default_factory=list)  # time.monotonic() of each completion
    errors: list[str] = field(default_factory=list)
    window_s: float = 0.0
    total_completed: int = 0  # warm-up and tail included: what CPU time is divided by

    def record(self, latency_s: float) -> None:
        self.latencies_s.append(latency_s)
        self.completed_at.append(time.monotonic())

    @property
    def throughput_per_s(self) -> float:
        return len(self.latencies_s) / self.window_s if self.window_s else float("nan")

    def throughput_bins_per_s(self, bin_s: float = 2.0) -> list[float]:
        """Completions per second in consecutive bins of the window: the spread of the rate."""
        if not self.completed_at or not self.window_s:
            return []
        start = min(self.completed_at)
        bins = [0] * max(1, int(self.window_s // bin_s))
        for done in self.completed_at:
            index = int((done - start) // bin_s)
            if index < len(bins):
                bins[index] += 1
        return [count / bin_s for count in bins]


async def end_to_end(conn: Connection, image: BenchImage) -> float:
    latency_s, final = await submit_and_wait(conn, image.data, image.content_type)
    if final != "succeeded":
        raise RuntimeError(f"job ended {final}")
    return latency_s


def measured_window(started: float, warmup_s: float, duration_s: float, result: LoadResult) -> LoadResult:
    """Keep only what completed after the warm-up, inside the window."""
    begin, end = started + warmup_s, started + warmup_s + duration_s
    kept = LoadResult(errors=result.errors, window_s=duration_s, total_completed=len(result.latencies_s))
    for latency_s, done in zip(result.latencies_s, result.completed_at, strict=True):
        if begin <= done <= end:
            kept.latencies_s.append(latency_s)
            kept.completed_at.append(done)
    return kept


async def closed_loop(
    host: str, port: int, images: list[BenchImage], *, clients: int, duration_s: float,
    warmup_s: float = 2.0, operation: Operation = end_to_end,
) -> LoadResult:
    """`clients` connections, each sending its next request as soon as the last one ended."""
    result = LoadResult()
    started = time.monotonic()
    stop_at = started + warmup_s + duration_s

    async def client(index: int) -> None:
        conn = await Connection.open(host, port)
        try:
            step = index
            while time.monotonic() < stop_at:
                image = images[step % len(images)]
                step += clients
                try:
                    result.record(await operation(conn, image))
                except Exception as e:
                    result.errors.append(f"{type(e).__name__}: {e}")
                    conn.close()
                    conn = await Connection.open(host, port)
        finally:
            conn.close()

    await asyncio.gather(*(client(i) for i in range(clients)))
    return measured_window(started, warmup_s, duration_s, result)


async def open_loop(
    host: str, port: int, images: list[BenchImage], *, rate_per_s: float, duration_s: float,
    warmup_s: float = 2.0, operation: Operation = end_to_end, seed: int = 0,
) -> LoadResult:
    """Requests arrive as a Poisson process at `rate_per_s`, whatever the answers' speed, over a
    pool of reusable connections (opened as needed)."""
    rng = random.Random(seed)
    result = LoadResult()
    idle: list[tuple[float, Connection]] = []  # (idle since, connection), newest last
    tasks: set[asyncio.Task[None]] = set()

    async def connection() -> Connection:
        while idle:
            since, conn = idle.pop()
            if time.monotonic() - since < IDLE_REUSE_S:
                return conn
            conn.close()
        return await Connection.open(host, port)

    async def one(image: BenchImage) -> None:
        conn = await connection()
        try:
            result.record(await operation(conn, image))
            idle.append((time.monotonic(), conn))
        except Exception as e:
            result.errors.append(f"{type(e).__name__}: {e}")
            conn.close()

    started = time.monotonic()
    next_at, step = started, 0
    while next_at < started + warmup_s + duration_s:
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        task = asyncio.create_task(one(images[step % len(images)]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        step += 1
        next_at += rng.expovariate(rate_per_s)
    if tasks:
        await asyncio.wait(tasks, timeout=120)
    for _, conn in idle:
        conn.close()
    return measured_window(started, warmup_s, duration_s, result)
