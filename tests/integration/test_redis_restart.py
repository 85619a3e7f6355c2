"""Redis killed (SIGKILL) and restarted from its append-only file, under real processes: every job
accepted before the crash ends, and once Redis is back the worker takes full batches again
within seconds (before the fix it drained one job per second until it was restarted)."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import httpx
import pytest

from cli.pipeline import LocalPipeline
from cli.processes import free_port
from cli.redis_server import start_redis
from tests.support import images
from tests.support.http import wait_terminal
from tests.support.pipeline import pipeline_env

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

BATCH_SIZE = 16
_BATCH_LINE = re.compile(r"batch of (\d+):")


def batch_sizes(pipeline: LocalPipeline, after_line: int = 0) -> list[int]:
    lines = pipeline.logs("worker0").splitlines()[after_line:]
    return [int(found.group(1)) for line in lines if (found := _BATCH_LINE.search(line))]


def post_batch(client: httpx.Client, count: int, seed: int) -> list[str]:
    files = [("files", (f"{i}.jpg", images.jpeg(seed=seed + i), "image/jpeg")) for i in range(count)]
    response = client.post("/v1/batches", files=files)
    assert response.status_code == 202, response.text
    return [job["id"] for job in response.json()["jobs"]]


def test_after_a_redis_restart_no_job_is_lost_and_batches_are_full_again(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    redis_dir = tmp_path / "redis"
    redis_server = start_redis(url, redis_dir)
    pipeline = LocalPipeline(
        env=pipeline_env(url, tmp_path, ASYNCINFER_MAX_BATCH_SIZE=str(BATCH_SIZE), ASYNCINFER_MAX_BATCH_WAIT_MS="20",
                         ASYNCINFER_RECOVERY_INTERVAL_S="1", ASYNCINFER_RECOVERY_GRACE_S="2"),
        port=free_port(), workdir=tmp_path)
    try:
        pipeline.start(workers=1)
        with httpx.Client(base_url=pipeline.url, timeout=30) as client:
            before_crash = post_batch(client, 24, seed=1400)
            redis_server.send_signal(signal.SIGKILL)  # mid-run: some jobs queued, some in the worker
            redis_server.wait(10)
            redis_server = start_redis(url, redis_dir)  # same port, same append-only file
            for job_id in before_crash:
                assert wait_terminal(client, job_id, timeout_s=90)["status"] == "succeeded"

            log_line = len(pipeline.logs("worker0").splitlines())
            started = time.monotonic()
            after_restart = post_batch(client, 48, seed=1500)
            docs = [wait_terminal(client, job_id, timeout_s=60) for job_id in after_restart]
            drained_s = time.monotonic() - started
    finally:
        pipeline.stop()
        redis_server.terminate()
        redis_server.wait(10)

    sizes = batch_sizes(pipeline, log_line)
    print(f"after the restart: 48 jobs in {drained_s:.1f} s, batch sizes {sizes}")
    assert {doc["status"] for doc in docs} == {"succeeded"}
    assert max(sizes) == BATCH_SIZE and sum(sizes) / len(sizes) >= 4, sizes
    assert drained_s < 30  # at one job per second it took 48 s or more
