"""Fair shares between tenants, on real processes: one tenant's burst does not starve another's single
jobs (lanes taken in turn, shared/queue_names.py), and a tenant at its limit of open jobs is refused
alone (api/admission/tenant_limits.py)."""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

import httpx
import pytest
import redis

from api.admission.tenant_limits import TenantLimits, open_jobs_key
from cli.processes import wait_until
from shared.jobs import parse_rfc3339
from shared.queue_names import lane_of
from tests.conftest import PipelineFactory
from tests.support import images
from tests.support.http import post_job, wait_terminal
from tests.support.models import builtin

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

KEYS = {"key-a": "tenant-a", "key-b": "tenant-b"}
API_KEYS = ",".join(f"{key}:{tenant}" for key, tenant in KEYS.items())
BURST = 500  # tenant A's jobs kept queued while B's are measured
# Enough headroom that A's lane seldom needs a top-up while B is measured: a top-up is 50 uploads
# for the gateway to decode on these 2 cores, which would measure A's uploads, not the queue order.
HEADROOM, TOP_UP_BELOW = 600, 50
# Tenant B's, one after the other, on the idle system and then under A's burst: a p95 is the 15th
# slowest, not the 5th, so one scheduling hiccup of the shared machine does not decide it.
SINGLE_JOBS = 300


def accepted_to_terminal_s(doc: dict[str, Any]) -> float:
    return (parse_rfc3339(doc["finished_at"]) - parse_rfc3339(doc["created_at"])).total_seconds()


def single_jobs(client: httpx.Client, count: int, seed: int) -> list[float]:
    """Tenant B's jobs (`client` holds B's key) one at a time, each waited for; their accepted → terminal
    seconds."""
    seconds = []
    for i in range(count):
        response = post_job(client, images.jpeg(seed=seed + i))
        assert response.status_code == 202, response.text
        doc = wait_terminal(client, response.json()["id"])
        assert doc["status"] == "succeeded", doc
        seconds.append(accepted_to_terminal_s(doc))
    return seconds


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


class Burst:
    """Tenant A keeps at least BURST jobs waiting in its lane: it queues BURST + HEADROOM, then tops up
    with a batch whenever fewer than BURST + TOP_UP_BELOW wait."""

    def __init__(self, url: str, redis_url: str) -> None:
        self.url = url
        self.lane = builtin().queue_for("tenant-a")
        self.redis = redis.Redis.from_url(redis_url)
        self.submitted = 0
        self.fewest_waiting: int | None = None
        self._measuring = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def waiting(self) -> int:
        return int(self.redis.llen(self.lane))

    def start(self) -> None:
        self._thread.start()
        wait_until(lambda: self.waiting() >= BURST + HEADROOM, 120, f"tenant A to have {BURST + HEADROOM} jobs waiting")

    def measuring(self) -> None:
        self._measuring = True

    def _run(self) -> None:
        image = images.jpeg(width=64, height=64, seed=7)
        with httpx.Client(base_url=self.url, timeout=60, headers={"X-API-Key": "key-a"}) as client:
            while not self._stop.is_set():
                waiting = self.waiting()
                if self._measuring:
                    self.fewest_waiting = waiting if self.fewest_waiting is None else min(self.fewest_waiting, waiting)
                if waiting < BURST + (TOP_UP_BELOW if self._measuring else HEADROOM):
                    files = [("files", (f"a{i}.jpg", image, "image/jpeg")) for i in range(50)]
                    response = client.post("/v1/batches", files=files)
                    assert response.status_code == 202, response.text
                    self.submitted += 50
                else:
                    self._stop.wait(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)


def test_one_tenants_burst_does_not_starve_anothers_single_jobs(make_pipeline: PipelineFactory) -> None:
    """While tenant A keeps 500 jobs queued, tenant B's single jobs finish with p95 at most twice
    their p95 on the idle system: one worker, batch size 1 (a job waits for the batch in flight, then
    runs in the next; see the README on how the batch size bounds this)."""
    assert lane_of("tenant-a") != lane_of("tenant-b"), "the test's tenants must not share a lane"
    pipeline = make_pipeline(ASYNCINFER_API_KEYS=API_KEYS, ASYNCINFER_MAX_BATCH_SIZE="1")
    with httpx.Client(base_url=pipeline.url, timeout=60, headers={"X-API-Key": "key-b"}) as client:
        single_jobs(client, 3, seed=100)  # warm-up: the first forward passes are slower
        idle = single_jobs(client, SINGLE_JOBS, seed=200)

        burst = Burst(pipeline.url, pipeline.env["ASYNCINFER_REDIS_URL"])
        burst.start()
        burst.measuring()
        try:
            loaded = single_jobs(client, SINGLE_JOBS, seed=300)
        finally:
            burst.stop()
    idle_p95, loaded_p95 = p95(idle), p95(loaded)
    print(f"tenant B accepted→terminal, {SINGLE_JOBS} jobs each: idle median {statistics.median(idle) * 1000:.0f} ms, "
          f"p95 {idle_p95 * 1000:.0f} ms; with tenant A's {BURST} queued (never fewer than {burst.fewest_waiting}, "
          f"{burst.submitted} submitted): median {statistics.median(loaded) * 1000:.0f} ms, p95 "
          f"{loaded_p95 * 1000:.0f} ms, ratio {loaded_p95 / idle_p95:.2f}; first come, first served, each would "
          f"have waited behind about {burst.fewest_waiting} of A's jobs")
    assert burst.fewest_waiting is not None and burst.fewest_waiting >= BURST - 50, "A's burst ran dry"
    assert loaded_p95 <= 2 * idle_p95


def test_a_tenant_at_its_limit_is_refused_alone_until_its_jobs_end(make_pipeline: PipelineFactory) -> None:
    """Tenant A may have 5 jobs open: its sixth gets 429 with a Retry-After, tenant B's are accepted
    meanwhile up to B's own limit, and once A's jobs end (a worker starts) A is accepted again."""
    pipeline = make_pipeline(workers=0, ASYNCINFER_API_KEYS=API_KEYS, ASYNCINFER_TENANT_MAX_OUTSTANDING="5",
                             ASYNCINFER_TENANT_LIMITS="tenant-b:10", ASYNCINFER_RECOVERY_INTERVAL_S="0.5")
    a, b = {"X-API-Key": "key-a"}, {"X-API-Key": "key-b"}
    with httpx.Client(base_url=pipeline.url, timeout=60, headers=a) as client:
        accepted = [post_job(client, images.jpeg(seed=i), headers=a) for i in range(5)]
        assert [r.status_code for r in accepted] == [202] * 5
        refused = post_job(client, images.jpeg(seed=5), headers=a)
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert int(refused.headers["Retry-After"]) >= 1
        assert "tenant-a" in refused.json()["detail"] and "limit is 5" in refused.json()["detail"]
        files = [("files", (f"{i}.jpg", images.jpeg(seed=10 + i), "image/jpeg")) for i in range(2)]
        assert client.post("/v1/batches", files=files, headers=a).status_code == 429  # a batch counts whole
        # Tenant B has a limit of its own, 10, counted apart from A's: all 10 accepted while A is refused.
        for i in range(10):
            assert post_job(client, images.jpeg(seed=20 + i), headers=b).status_code == 202
        refused_b = post_job(client, images.jpeg(seed=19), headers=b)
        assert refused_b.status_code == 429 and int(refused_b.headers["Retry-After"]) >= 1
        assert "tenant-b" in refused_b.json()["detail"] and "limit is 10" in refused_b.json()["detail"]
        assert post_job(client, images.jpeg(seed=5), headers=a).status_code == 429

        pipeline.start_worker()
        for response in accepted:
            assert wait_terminal(client, response.json()["id"])["status"] == "succeeded"
        limits = TenantLimits(redis.Redis.from_url(pipeline.env["ASYNCINFER_REDIS_URL"]), lambda tenant: 5)
        wait_until(lambda: limits.open_count("tenant-a") == 0, 30, "tenant A's ended jobs to stop counting")
        again = post_job(client, images.jpeg(seed=30), headers=a)
        assert again.status_code == 202, again.text
        assert wait_terminal(client, again.json()["id"])["status"] == "succeeded"

        # Jobs that ended while no gateway heard their events (here: written in by hand, admitted a
        # minute ago) would hold A at its limit; recovery drops them.
        limits.client.zadd(open_jobs_key("tenant-a"), {f"unheard-{i}": time.time() - 60 for i in range(5)})
        assert post_job(client, images.jpeg(seed=31), headers=a).status_code == 429
        wait_until(lambda: limits.open_count("tenant-a") == 0, 30, "recovery to drop the jobs that ended unheard")
        assert post_job(client, images.jpeg(seed=32), headers=a).status_code == 202
