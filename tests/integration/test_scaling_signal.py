"""The autoscaling signal on the gateway's /metrics, from real processes and a real Redis: it counts
the work workers hold (not only the queue's list), follows a step of load up and down, and says
when work waits with no worker to do it.

One gateway serves this module's tests; the first runs it without a worker and starts one, the
others start one when none runs (each test also passes alone). Each forward pass sleeps 3 s first,
and a worker waits 1 s of quiet before it starts a batch, so the jobs of one submit land in one
batch and stay unacknowledged long enough to scrape.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from cli.pipeline import LocalPipeline
from cli.processes import free_port, wait_until
from shared.constants import ADMISSION_RESERVATIONS_KEY, UNACKED_KEY
from shared.presence import announce, withdraw
from shared.queue_names import model_queues
from shared.scaling import ScalingPolicy, WorkCounts, desired_workers
from shared.work_in_redis import count_work, count_work_by_model
from tests.support import images
from tests.support.http import scrape_metrics
from tests.support.pipeline import pipeline_env
from workers.presence import PresenceBeacon

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

POLICY = ScalingPolicy(target_per_worker=3, min_workers=1, max_workers=4)
ENV = {
    "ASYNCINFER_SCALE_TARGET_JOBS_PER_WORKER": str(POLICY.target_per_worker),
    "ASYNCINFER_SCALE_MIN_WORKERS": str(POLICY.min_workers),
    "ASYNCINFER_SCALE_MAX_WORKERS": str(POLICY.max_workers),
    "ASYNCINFER_FAULT_INFERENCE_DELAY_S": "3",
    "ASYNCINFER_MAX_BATCH_SIZE": "8",
    "ASYNCINFER_BATCH_IDLE_MS": "1000",
    "ASYNCINFER_MAX_BATCH_WAIT_MS": "2000",
    "ASYNCINFER_WORKER_PRESENCE_TTL_S": "3",
}
# Databases of this module's own (conftest's make_pipeline takes 1–15 in turn and flushes the one it
# takes; no other module's pipeline runs while this module's tests do).
PIPELINE_DB, COUNTS_DB = 14, 15
SIGNAL = (
    "asyncinfer_queue_backlog",
    "asyncinfer_jobs_unacknowledged",
    "asyncinfer_jobs_outstanding",
    "asyncinfer_workers_live",
    "asyncinfer_workers_desired",
    "asyncinfer_queue_wait_predicted_seconds",
    "asyncinfer_backlog_without_capacity",
    "asyncinfer_drain_rate_jobs_per_second",
)


@pytest.fixture(scope="module")
def gateway(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPipeline]:
    """The gateway alone (tests start the worker); stopped with its workers at the module's end."""
    url = f"{redis_url}/{PIPELINE_DB}"
    redis.Redis.from_url(url).flushdb()
    workdir: Path = tmp_path_factory.mktemp("scaling")
    pipeline = LocalPipeline(env=pipeline_env(url, workdir, **ENV), workdir=workdir, port=free_port())
    pipeline.start(workers=0, gateway=True)
    yield pipeline
    pipeline.stop()


@pytest.fixture
def with_a_worker(gateway: LocalPipeline) -> LocalPipeline:
    """The gateway with one live worker and nothing outstanding."""
    if not any(worker.poll() is None for worker in gateway.workers):
        gateway.start_worker()
    wait_for_signal(gateway, lambda s: s["asyncinfer_workers_live"] == 1, 30, "the worker to count as live")
    wait_for_signal(gateway, lambda s: s["asyncinfer_jobs_outstanding"] == 0, 60, "earlier jobs to finish")
    return gateway


def signal(pipeline: LocalPipeline) -> dict[str, float]:
    samples = scrape_metrics(f"{pipeline.url}/metrics")
    return {name: samples[(name, ())] for name in SIGNAL}


def wait_for_signal(pipeline: LocalPipeline, holds: Callable[[dict[str, float]], bool], timeout_s: float,
                    what: str) -> dict[str, float]:
    """The first scraped signal for which `holds` is true."""
    def scrape_if_it_holds() -> dict[str, float] | None:
        scraped = signal(pipeline)
        return scraped if holds(scraped) else None

    return wait_until(scrape_if_it_holds, timeout_s, what, 0.1)


def submit_batch(client: httpx.Client, count: int, seed: int) -> str:
    files = [("files", (f"{i}.jpg", images.jpeg(seed=seed + i), "image/jpeg")) for i in range(count)]
    response = client.post("/v1/batches", files=files)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def batch_done(client: httpx.Client, batch_id: str) -> bool:
    return bool(client.get(f"/v1/batches/{batch_id}").json()["status"] == "done")


def test_work_waiting_with_no_worker_is_backlog_without_capacity(gateway: LocalPipeline) -> None:
    """Zero workers and two jobs: scale from zero. Once a worker runs it counts, and the flag clears."""
    with httpx.Client(base_url=gateway.url, timeout=60) as client:
        batch_id = submit_batch(client, 2, seed=2100)
        stranded = signal(gateway)
        gateway.start_worker()
        live = wait_for_signal(gateway, lambda s: s["asyncinfer_workers_live"] == 1, 30, "the worker to count as live")
        wait_until(lambda: batch_done(client, batch_id), 60, "the two jobs to finish")
        after = signal(gateway)

    print(f"no worker: {stranded}\nworker live: {live}\nafter: {after}")
    assert stranded["asyncinfer_workers_live"] == 0
    assert stranded["asyncinfer_jobs_outstanding"] == 2 and stranded["asyncinfer_queue_backlog"] == 2
    assert stranded["asyncinfer_backlog_without_capacity"] == 1
    assert stranded["asyncinfer_workers_desired"] == 1  # ceil(2 / 3)
    assert stranded["asyncinfer_queue_wait_predicted_seconds"] == math.inf
    assert live["asyncinfer_backlog_without_capacity"] == 0
    assert after["asyncinfer_jobs_outstanding"] == 0 and after["asyncinfer_backlog_without_capacity"] == 0
    assert after["asyncinfer_workers_live"] == 1
    assert after["asyncinfer_queue_wait_predicted_seconds"] == 0


def test_a_busy_pool_whose_list_is_empty_is_not_scaled_in(with_a_worker: LocalPipeline) -> None:
    """Five jobs, fewer than a batch: the worker holds them all (buffered, then in a 3 s forward pass),
    so the list is empty. KEDA's list scaler sees 0 and would scale in; the signal wants 2 workers."""
    pipeline = with_a_worker
    with httpx.Client(base_url=pipeline.url, timeout=60) as client:
        batch_id = submit_batch(client, 5, seed=2110)
        busy = wait_for_signal(pipeline, lambda s: s["asyncinfer_jobs_unacknowledged"] == 5, 5,
                               "the worker to hold all five jobs")
        held = [signal(pipeline) for _ in range(5)]  # while the batch waits and runs
        wait_until(lambda: batch_done(client, batch_id), 60, "the five jobs to finish")
        idle = signal(pipeline)

    print(f"busy: {busy}\nidle: {idle}")
    assert busy["asyncinfer_queue_backlog"] == 0
    assert busy["asyncinfer_jobs_outstanding"] == 5
    assert busy["asyncinfer_workers_desired"] == 2  # ceil(5 / 3); the list alone would say the minimum, 1
    assert busy["asyncinfer_workers_live"] == 1 and busy["asyncinfer_backlog_without_capacity"] == 0
    assert all(s["asyncinfer_workers_desired"] == 2 for s in held if s["asyncinfer_jobs_outstanding"] == 5)
    assert idle["asyncinfer_jobs_outstanding"] == 0 and idle["asyncinfer_workers_desired"] == POLICY.min_workers


def test_desired_workers_follow_a_step_of_load_up_and_down(with_a_worker: LocalPipeline) -> None:
    """Idle: the minimum. A step of 11 jobs: ceil(11 / 3) = 4 (also the maximum). As batches finish
    it falls with what is left, and back to the minimum once all are done."""
    pipeline = with_a_worker
    with httpx.Client(base_url=pipeline.url, timeout=60) as client:
        before = signal(pipeline)
        batch_id = submit_batch(client, 11, seed=2120)
        samples = []
        started = time.monotonic()
        while not batch_done(client, batch_id):
            samples.append(signal(pipeline))
            assert time.monotonic() - started < 60, "the step did not drain within 60 s"
            time.sleep(0.2)
        after = signal(pipeline)

    steps = [(int(s["asyncinfer_jobs_outstanding"]), int(s["asyncinfer_workers_desired"])) for s in samples]
    print(f"(outstanding, desired) while draining: {steps}")
    assert before["asyncinfer_workers_desired"] == POLICY.min_workers
    assert steps[0] == (11, 4)
    for outstanding, desired in steps:
        assert desired == desired_workers(outstanding, POLICY)
        assert desired == max(1, min(4, math.ceil(outstanding / 3)))
    desired_seen = [desired for _, desired in steps]
    assert desired_seen == sorted(desired_seen, reverse=True)  # never up again while draining
    assert 4 in desired_seen and 1 in desired_seen  # 3 left (one batch of 8 done): 1 worker
    assert after["asyncinfer_jobs_outstanding"] == 0 and after["asyncinfer_workers_desired"] == POLICY.min_workers
    assert after["asyncinfer_drain_rate_jobs_per_second"] > 0  # 11 jobs finished within the window
    # Once the first batch finished, the rate is measured: the wait is what is left over that rate.
    measured = [s for s in samples if s["asyncinfer_drain_rate_jobs_per_second"] > 0
                and s["asyncinfer_jobs_outstanding"] > 0]
    assert measured, "no sample with a measured rate while jobs were left"
    for s in measured:
        expected_s = s["asyncinfer_jobs_outstanding"] / s["asyncinfer_drain_rate_jobs_per_second"]
        assert s["asyncinfer_queue_wait_predicted_seconds"] == pytest.approx(expected_s)
    print(f"predicted waits: {[round(s['asyncinfer_queue_wait_predicted_seconds'], 2) for s in measured]}")


def test_counts_read_the_list_the_unacked_hash_reservations_and_presence(redis_url: str) -> None:
    """count_work against Redis itself: each place work sits, stale reservations and lapsed workers left
    out, and each model's work told apart from another's."""
    client = redis.Redis.from_url(f"{redis_url}/{COUNTS_DB}")
    client.flushdb()
    mine = {"mobilenet_v2@1": model_queues("mobilenet_v2", "1")}
    other = {"mobilenet_v3_small@1": model_queues("mobilenet_v3_small", "1")}
    try:
        client.rpush(mine["mobilenet_v2@1"][0], *[f"message {i}" for i in range(3)])
        client.rpush(mine["mobilenet_v2@1"][-1], "message 3")  # another tenant's lane
        client.rpush(other["mobilenet_v3_small@1"][0], "message 4", "message 5")
        # kombu's unacked entries: [message, exchange, routing key].
        client.hset(UNACKED_KEY, mapping={f"tag{i}": json.dumps([{}, "", mine["mobilenet_v2@1"][i % 2]]) for i in range(6)})
        client.hset(UNACKED_KEY, "tag9", json.dumps([{}, "", other["mobilenet_v3_small@1"][0]]))
        now = time.time()
        client.zadd(ADMISSION_RESERVATIONS_KEY, {"a:3": now, "b:250": now - 60})  # b: a crashed gateway's
        announce(client, "mobilenet_v2@1/brief", ttl_s=0.5)
        announce(client, "mobilenet_v2@1/steady", ttl_s=30)
        announce(client, "mobilenet_v3_small@1/other", ttl_s=30)
        assert count_work(client, mine) == WorkCounts(waiting=4, unacknowledged=6, admitting=3, live_workers=2)
        assert count_work(client, other) == WorkCounts(waiting=2, unacknowledged=1, admitting=3, live_workers=1)
        assert count_work(client, {**mine, **other}).outstanding == 6 + 7 + 3
        assert count_work_by_model(client, {**mine, **other}) == {
            "mobilenet_v2@1": WorkCounts(waiting=4, unacknowledged=6, admitting=3, live_workers=2),
            "mobilenet_v3_small@1": WorkCounts(waiting=2, unacknowledged=1, admitting=3, live_workers=1),
        }
        time.sleep(0.6)
        assert count_work(client, mine).live_workers == 1
        withdraw(client, "mobilenet_v2@1/steady")
        assert count_work(client, mine) == WorkCounts(waiting=4, unacknowledged=6, admitting=3, live_workers=0)
        assert count_work(client, mine).outstanding == 13

        beacon = PresenceBeacon(client, "mobilenet_v2@1/worker9@test/1/abc", ttl_s=0.6)
        beacon.start()
        wait_until(lambda: count_work(client, mine).live_workers == 1, 2, "the beacon's first refresh")
        time.sleep(1.0)  # longer than its time to live: the refreshes keep it current
        assert count_work(client, mine).live_workers == 1
        beacon.stop()
        assert count_work(client, mine).live_workers == 0  # withdrawn at once, not after the TTL
    finally:
        client.flushdb()
        client.close()
