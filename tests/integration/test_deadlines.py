"""Deadlines and admission by predicted wait, on real processes: a job that cannot start in time is
refused with a Retry-After computed from the measured drain rate, one that was accepted but not
started in time ends `cancelled` (timeout), and concurrent submits never overshoot the backlog."""

from __future__ import annotations

import math
import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis

from cli.processes import wait_until
from tests.conftest import PipelineFactory
from tests.support import images
from tests.support.http import post_job, submit, wait_terminal
from tests.support.models import waiting_jobs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_concurrent_submits_cannot_overshoot_the_backlog_limit(make_pipeline: PipelineFactory) -> None:
    pipeline = make_pipeline(workers=0, ASYNCINFER_BACKLOG_LIMIT="5")
    payloads = [images.jpeg(seed=1600 + i) for i in range(16)]
    with httpx.Client(base_url=pipeline.url, timeout=60) as client, ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda data: post_job(client, data), payloads))

    statuses = sorted(response.status_code for response in answers)
    assert statuses == [202] * 5 + [429] * 11
    assert waiting_jobs(redis.Redis.from_url(pipeline.env["ASYNCINFER_REDIS_URL"])) == 5


def test_a_job_not_started_by_its_deadline_ends_cancelled_with_timeout(make_pipeline: PipelineFactory) -> None:
    """No worker runs: the gateway's recovery pass ends it; a worker started later skips it."""
    pipeline = make_pipeline(workers=0, ASYNCINFER_RECOVERY_INTERVAL_S="0.5")
    with httpx.Client(base_url=pipeline.url, timeout=30) as client:
        accepted = post_job(client, images.jpeg(seed=1620), deadline_s=1)
        assert accepted.status_code == 202 and accepted.json()["params"]["deadline_s"] == 1
        started = time.monotonic()
        doc = wait_terminal(client, accepted.json()["id"], timeout_s=30)
        ended_after_s = time.monotonic() - started

        pipeline.start_worker()
        on_time = submit(client, images.jpeg(seed=1621), deadline_s=60)
        assert wait_terminal(client, on_time["id"])["status"] == "succeeded"
        again = client.get(f"/v1/jobs/{doc['id']}").json()

    print(f"ended {ended_after_s:.1f} s after its 1 s deadline's start")
    assert (doc["status"], doc["error"]["code"], doc["attempts"]) == ("cancelled", "timeout", 0)
    assert ended_after_s < 5  # the deadline plus a couple of half-second passes
    assert again == doc  # the worker took its message and left it as it was


def test_a_job_that_cannot_start_in_time_is_refused_with_a_retry_after_from_the_drain_rate(
    make_pipeline: PipelineFactory,
) -> None:
    # About four jobs a second: one at a time, each a quarter of a second.
    pipeline = make_pipeline(workers=1, ASYNCINFER_MAX_BATCH_SIZE="1", ASYNCINFER_FAULT_INFERENCE_DELAY_S="0.25")
    with httpx.Client(base_url=pipeline.url, timeout=60) as client:
        files = [("files", (f"{i}.jpg", images.jpeg(seed=1630 + i), "image/jpeg")) for i in range(40)]
        batch = client.post("/v1/batches", files=files).json()

        def finished() -> int:
            return int(client.get(f"/v1/batches/{batch['id']}").json()["counts"]["succeeded"])

        wait_until(lambda: finished() >= 8, 60, "8 jobs to finish, so the drain rate is measured")
        refused = post_job(client, images.jpeg(seed=1680), deadline_s=1)
        accepted = post_job(client, images.jpeg(seed=1681), deadline_s=600)

    assert refused.status_code == 429, refused.text
    assert refused.json()["title"] == "The job could not start within its deadline"
    found = re.search(r"([\d,]+) jobs are ahead, draining at ([\d.]+) jobs/s", refused.json()["detail"])
    assert found, refused.json()["detail"]
    ahead, rate = int(found.group(1).replace(",", "")), float(found.group(2))
    expected_s = math.ceil((ahead - rate * 1) / rate)
    print(f"{ahead} ahead at {rate} jobs/s: Retry-After {refused.headers['retry-after']} (expected {expected_s})")
    assert 1 <= rate <= 10
    assert abs(int(refused.headers["retry-after"]) - expected_s) <= 1  # the rate is printed rounded
    assert accepted.status_code == 202
