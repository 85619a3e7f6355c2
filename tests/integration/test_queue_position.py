"""A queued job's place in line and its estimated start, on real processes: in its document while
queued and as `position` events on its stream (api/following/queue_position.py)."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from datetime import datetime
from itertools import pairwise
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from asyncinfer_client import AsyncClient, Position
from shared.jobs import parse_rfc3339
from tests.conftest import PipelineFactory
from tests.support import images
from tests.support.http import post_job, stream_events

pytestmark = pytest.mark.integration

KEYS = {"key-a": "tenant-a", "key-b": "tenant-b"}
API_KEYS = ",".join(f"{key}:{tenant}" for key, tenant in KEYS.items())
QUEUED = 50
BATCH = 4
# Jobs queued at once and run first, so the drain rate is measured (on a worker with a backlog) when
# the 50 are queued. After jobs one at a time, the rate measured is theirs, and the first estimates
# are long: see the README.
WARM_UP = 8


def test_a_queued_jobs_document_says_how_many_wait_before_it_across_the_tenants_lanes(
        make_pipeline: PipelineFactory) -> None:
    pipeline = make_pipeline(workers=0, ASYNCINFER_API_KEYS=API_KEYS)
    with httpx.Client(base_url=pipeline.url, timeout=30, headers={"X-API-Key": "key-a"}) as a, \
            httpx.Client(base_url=pipeline.url, timeout=30, headers={"X-API-Key": "key-b"}) as b:
        a_jobs = [post_job(a, images.jpeg(seed=i)).json()["id"] for i in range(3)]
        b_job = post_job(b, images.jpeg(seed=10)).json()["id"]

        positions = {job_id: a.get(f"/v1/jobs/{job_id}").json()["position"] for job_id in a_jobs}
        b_position = b.get(f"/v1/jobs/{b_job}").json()["position"]
        # The stream sends the same reading first.
        stream = stream_events(a, f"/v1/jobs/{a_jobs[2]}/events", positions=True, limit=2)

    # Workers take the lanes in turn: B's job is next to A's first, A's third waits for two of A's and B's.
    assert [positions[job_id]["ahead"] for job_id in a_jobs] == [0, 2, 3]
    assert b_position["ahead"] == 0
    assert positions[a_jobs[0]]["estimated_start_at"] is None  # nothing has finished: no rate to tell
    assert [name for name, _, _ in stream] == ["status", "position"]
    assert stream[1][2]["ahead"] == 3


def test_fifty_queued_jobs_positions_only_fall_reach_zero_before_they_run_and_their_start_estimates_hold(
        make_pipeline: PipelineFactory) -> None:
    # One worker, batches of 4 each taking at least 0.5 s: the 50 take several seconds to drain.
    pipeline = make_pipeline(ASYNCINFER_MAX_BATCH_SIZE=str(BATCH), ASYNCINFER_FAULT_INFERENCE_DELAY_S="0.5",
                             ASYNCINFER_POSITION_INTERVAL_S="0.25")
    heard: dict[str, list[Position]] = {}

    async def queue_and_follow() -> list[dict[str, Any]]:
        async with AsyncClient(pipeline.url, max_connections=QUEUED + 4) as gateway:
            warm_up = await gateway.submit_batch([images.jpeg(seed=100 + i) for i in range(WARM_UP)])
            await asyncio.gather(*(gateway.wait(member["id"], timeout_s=120) for member in warm_up["jobs"]))
            batch = await gateway.submit_batch([images.jpeg(seed=200 + i) for i in range(QUEUED)])  # queued at once
            job_ids = [member["id"] for member in batch["jobs"]]
            heard.update({job_id: [] for job_id in job_ids})
            jobs = await asyncio.gather(*(gateway.wait(job_id, timeout_s=180,
                                                       on_position=lambda job, p: heard[job].append(p))
                                          for job_id in job_ids))
        return [job.doc for job in jobs]

    docs = asyncio.run(queue_and_follow())

    first_errors: list[float] = []  # each job's first estimate
    errors: list[float] = []  # every estimate heard
    for doc in docs:
        job_id = str(doc["id"])
        assert doc["status"] == "succeeded", doc
        aheads = [p.ahead for p in heard[job_id]]
        if not aheads:  # the first batch's jobs may be running before their stream opens
            continue
        assert aheads == sorted(aheads, reverse=True), f"job {job_id}'s position went up: {aheads}"
        assert aheads[-1] == 0, f"job {job_id} started with {aheads[-1]} ahead"
        # The last reading before it started (a quarter second before at most) had at most the
        # worker's batch and the next one ahead: the count tracks the line, not only its end.
        measured = [p.ahead for p in heard[job_id] if p.drain_per_s is not None]
        assert not measured or measured[-1] <= 2 * BATCH, f"job {job_id}: {measured[-1]} ahead at its last reading"
        started = parse_rfc3339(str(doc["started_at"]))
        job_errors = [eta_error(p, started) for p in heard[job_id]
                      if p.ahead > 0 and p.estimated_start_at is not None and _seconds(p.measured_at, started) > 0.5]
        errors += job_errors
        first_errors += job_errors[:1]

    followed = [positions for positions in heard.values() if positions]
    first_aheads = [positions[0].ahead for positions in followed]
    print(f"\n{QUEUED} jobs, one worker, batches of 4: first position {min(first_aheads)}..{max(first_aheads)} ahead; "
          f"{sum(map(len, followed))} positions heard by {len(followed)} jobs; ETA error (predicted / actual wait - 1) "
          f"of every estimate: {_summary(errors)}; of each job's first: {_summary(first_errors)}")
    assert len(followed) >= QUEUED - 8, f"only {len(followed)} jobs heard a position"
    assert len(first_errors) >= QUEUED // 2, f"only {len(first_errors)} jobs had an estimate while a wait was ahead"
    assert -0.5 <= statistics.median(errors) <= 0.5


def test_positions_on_one_stream_are_at_least_the_interval_apart_while_the_line_moves_faster(
        make_pipeline: PipelineFactory) -> None:
    # Batches of 2 every 0.2 s or so: the count ahead falls several times a second, positions once a second.
    pipeline = make_pipeline(ASYNCINFER_MAX_BATCH_SIZE="2", ASYNCINFER_FAULT_INFERENCE_DELAY_S="0.2",
                             ASYNCINFER_POSITION_INTERVAL_S="1.0")
    heard: list[tuple[float, int]] = []  # (when it arrived, ahead)
    with httpx.Client(base_url=pipeline.url, timeout=30) as client:
        job_ids = [post_job(client, images.jpeg(seed=300 + i)).json()["id"] for i in range(30)]
        with connect_sse(client, "GET", f"/v1/jobs/{job_ids[-1]}/events") as source:
            for sse in source.iter_sse():
                if sse.event == "position":
                    heard.append((time.monotonic(), int(json.loads(sse.data)["ahead"])))

    # The last position (0 ahead, sent just before `running`) is not a periodic reading: it may come at once.
    readings = [(at, ahead) for at, ahead in heard if ahead > 0]
    assert len(readings) >= 2, heard
    gaps = [later[0] - earlier[0] for earlier, later in pairwise(readings)]
    assert min(gaps) >= 0.9, f"positions {gaps} s apart, ASYNCINFER_POSITION_INTERVAL_S is 1.0"
    # The line moved more than once between two readings: the interval, not the line, set their pace.
    assert max(earlier[1] - later[1] for earlier, later in pairwise(readings)) > 2, heard


def eta_error(position: Position, started: datetime) -> float:
    """How far off the estimated wait was, as a share of the wait there was."""
    actual_s = _seconds(position.measured_at, started)
    return (_seconds(position.measured_at, position.estimated_start_at) - actual_s) / actual_s


def _seconds(start: datetime, end: datetime | None) -> float:
    assert end is not None
    return (end - start).total_seconds()


def _summary(values: list[float]) -> str:
    low, _, high = statistics.quantiles(values, n=4)
    return (f"{len(values)} estimates, median {statistics.median(values):+.0%}, quartiles {low:+.0%}..{high:+.0%}, "
            f"range {min(values):+.0%}..{max(values):+.0%}")
